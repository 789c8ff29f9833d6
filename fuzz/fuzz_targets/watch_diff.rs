//! A watched text configuration's change (pam.d, ld.so.conf, nsswitch.conf, ld.so.preload):
//! the lines added and removed between two versions, read as the watch reads them. The input
//! is the old version, a NUL byte, the new version.
#![no_main]
use libfuzzer_sys::fuzz_target;

fn lines(b: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(b)
        .lines()
        .map(str::to_owned)
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let (old, new) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let (old, new) = (lines(old), lines(new));
    let d = detector::engine::watch::diff::lines(&old, &new, 64);
    let _ = format!("{d:?}");
});
