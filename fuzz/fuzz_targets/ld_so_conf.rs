//! `/etc/ld.so.conf` and `/etc/ld.so.conf.d/*.conf`: the directories they name.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for dir in detector::engine::watch::places::conf_dirs(&text) {
        assert!(dir.starts_with('/'));
    }
});
