//! The configuration file (`/etc/detector/detector.toml`): any text parses or gives a one-line
//! error.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match detector::config::parse(&text, "detector.toml") {
        Ok(_) => {}
        Err(e) => assert!(!e.contains('\n'), "a multi-line error: {e:?}"),
    }
});
