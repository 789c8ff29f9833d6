//! `/proc/<pid>/cmdline`: the arguments joined, every byte kept (hostile names stay lossless).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = detector::engine::sweep::cmdline_text(data);
});
