//! `/proc/<pid>/maps`: the executable mappings of files, read as the sweep reads them.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let maps = detector::capture::names::lossless(data);
    for m in detector::engine::sweep::executable_files(&maps) {
        assert!(m.path.starts_with('/'));
    }
});
