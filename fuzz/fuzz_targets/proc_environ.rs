//! `/proc/<pid>/environ`: the last occurrence of each loader variable, and the libraries its
//! value names (whole, and as a truncated head and tail).
#![no_main]
use detector_common::LoaderVar;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for var in [LoaderVar::LdPreload, LoaderVar::LdAudit] {
        if let Some((value, _n)) = detector::engine::loader_vars::last_value(data, var.name()) {
            let value = detector::capture::names::lossless(value);
            let _ = detector::engine::loader_vars::split_list(var, &value);
            let mid = value.len() / 2;
            let cut = (0..=mid)
                .rev()
                .find(|&i| value.is_char_boundary(i))
                .unwrap_or(0);
            let _ =
                detector::engine::loader_vars::split_truncated(var, &value[..cut], &value[cut..]);
        }
    }
});
