//! `/etc/ld.so.preload`: as the sweep reads the file, and as the live path reads the loader's
//! copy sent by the kernel.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = detector::capture::names::lossless(data);
    let _ = detector::engine::rules::preload_file::parse(&text);
    let _ = detector::capture::decode::list_names(data);
});
