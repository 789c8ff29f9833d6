//! `/etc/pam.d/*` lines: the module each names.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        let _ = detector::engine::rules::unsafe_pam_module::pam_module(line);
    }
});
