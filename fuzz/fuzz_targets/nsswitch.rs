//! `/etc/nsswitch.conf` lines: the services (NSS modules) each names.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        let _ = detector::engine::rules::unverified_object::nss_services(line).count();
    }
});
