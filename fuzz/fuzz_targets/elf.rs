//! ELF analysis of a library file (hooks, constructors, soname): any bytes give facts or a
//! parse error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = detector::engine::enrich::elf::analyze_bytes(data);
});
