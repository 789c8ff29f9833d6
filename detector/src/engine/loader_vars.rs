//! How glibc's dynamic loader reads its variables, for user space: list splitting and the
//! last-occurrence rule (used on /proc environ blocks and on values captured in the kernel).
use detector_common::LoaderVar;

/// Splits a loader variable's value into the libraries it names, as ld.so does:
/// LD_PRELOAD on spaces and colons, LD_AUDIT on colons. Empty entries are skipped.
pub fn split_list(var: LoaderVar, value: &str) -> Vec<String> {
    let seps: &[char] = match var {
        LoaderVar::LdPreload => &[' ', ':'],
        LoaderVar::LdAudit | LoaderVar::LdLibraryPath => &[':'],
    };
    value
        .split(seps)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Libraries of a value that was captured only in part (`head` ... `tail`): the last entry of
/// the head and the first of the tail may be cut, so they are dropped; the rest are whole.
pub fn split_truncated(var: LoaderVar, head: &str, tail: &str) -> Vec<String> {
    let is_sep = |c: char| c == ':' || (c == ' ' && var == LoaderVar::LdPreload);
    let mut libs = split_list(var, head);
    if !head.ends_with(is_sep) {
        libs.pop();
    }
    let mut rest = split_list(var, tail);
    if !tail.starts_with(is_sep) && !rest.is_empty() {
        rest.remove(0);
    }
    libs.extend(rest);
    libs
}

/// The value of `name` in a NUL-separated environment block, honouring last-wins, with the
/// number of occurrences.
pub fn last_value<'a>(environ: &'a [u8], name: &str) -> Option<(&'a [u8], usize)> {
    let mut found = None;
    let mut count = 0;
    for entry in environ.split(|&b| b == 0) {
        if let Some(rest) = entry.strip_prefix(name.as_bytes()) {
            if let Some(value) = rest.strip_prefix(b"=") {
                found = Some(value);
                count += 1;
            }
        }
    }
    found.map(|v| (v, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preload_splits_on_space_and_colon() {
        assert_eq!(
            split_list(LoaderVar::LdPreload, "/a.so:/b.so /c.so"),
            ["/a.so", "/b.so", "/c.so"]
        );
        assert_eq!(split_list(LoaderVar::LdPreload, "::  /a.so::"), ["/a.so"]);
        assert!(split_list(LoaderVar::LdPreload, "").is_empty());
    }

    #[test]
    fn audit_splits_on_colon_only() {
        assert_eq!(
            split_list(LoaderVar::LdAudit, "/a b.so:/c.so"),
            ["/a b.so", "/c.so"]
        );
    }

    #[test]
    fn truncated_values_drop_cut_entries() {
        let libs = split_truncated(
            LoaderVar::LdPreload,
            "/one.so:/two.so:/thr",
            "ee.so:/evil.so",
        );
        assert_eq!(libs, ["/one.so", "/two.so", "/evil.so"]);
        // Cut exactly at separators: nothing is dropped.
        let libs = split_truncated(LoaderVar::LdPreload, "/one.so:", "::/evil.so");
        assert_eq!(libs, ["/one.so", "/evil.so"]);
    }

    #[test]
    fn last_occurrence_wins() {
        let env = b"A=1\0LD_PRELOAD=/first.so\0B=2\0LD_PRELOAD=/second.so\0LD_PRELOADX=no\0";
        assert_eq!(last_value(env, "LD_PRELOAD"), Some((&b"/second.so"[..], 2)));
        assert_eq!(last_value(env, "LD_AUDIT"), None);
        assert_eq!(last_value(b"LD_AUDIT=\0", "LD_AUDIT"), Some((&b""[..], 1)));
    }
}
