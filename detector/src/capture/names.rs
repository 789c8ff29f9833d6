//! Names from the kernel and /proc (paths, command lines, environment values) as strings that
//! keep every byte: valid UTF-8 stays as it is, a byte that is not part of valid UTF-8 becomes
//! `\xNN` and a backslash becomes `\\`, so that [`bytes`] gives back exactly what the kernel saw.
//! Control characters stay in the string (JSON escapes them; the text view shows them escaped,
//! [`visible`]).
use std::{ffi::OsString, os::unix::ffi::OsStringExt as _, path::PathBuf};

/// `raw` as a string that [`bytes`] turns back into `raw`.
pub fn lossless(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    for chunk in raw.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// The bytes a [`lossless`] string stands for. A backslash not followed by `\` or `xNN` stands
/// for itself.
pub fn bytes(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            if b.get(i + 1) == Some(&b'\\') {
                out.push(b'\\');
                i += 2;
                continue;
            }
            if b.get(i + 1) == Some(&b'x') {
                let hex = b
                    .get(i + 2..i + 4)
                    .and_then(|h| std::str::from_utf8(h).ok());
                if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// The file a [`lossless`] path names.
pub fn path(s: &str) -> PathBuf {
    PathBuf::from(OsString::from_vec(bytes(s)))
}

/// `s` with control characters shown as escapes (`\n`, `\t`, `\u{1b}`), for one-line text.
pub fn visible(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_comes_back() {
        let hostile: &[&[u8]] = &[
            b"/tmp/plain.so",
            b"/tmp/new\nline\ttab \"quote\" back\\slash.so",
            b"/tmp/\xff\xfe not utf-8 \xc3.so",
            b"/tmp/looks-escaped-\\x41-\\\\.so",
            "/tmp/ünïcödé-✓.so".as_bytes(),
            &[b'a'; 4096],
        ];
        for raw in hostile {
            let s = lossless(raw);
            assert_eq!(bytes(&s), *raw, "{s}");
        }
        assert_eq!(lossless(b"/tmp/\xff.so"), "/tmp/\\xff.so");
        assert_eq!(lossless(b"a\\b"), "a\\\\b");
        assert_eq!(lossless("/usr/lib/ünï.so".as_bytes()), "/usr/lib/ünï.so");
    }

    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(visible("a\nb\tc\u{1b}[31m"), "a\\nb\\tc\\u{1b}[31m");
        assert_eq!(visible("plain"), "plain");
        assert!(!visible("x\r\n").contains('\n'));
    }
}
