//! Ring-buffer records as the kernel programs send them: any bytes decode to an event or an
//! error, and a decoded event serialises (`detector events` writes it as JSON).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = detector::capture::decode::decode(data) {
        let _ = format!("{event:?}");
        let _ = event.kind();
    }
});
