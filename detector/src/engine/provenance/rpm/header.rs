//! rpm's package header, as its database stores it (the `blob` of the `Packages` table): the
//! number of index entries and the size of the data store (big-endian u32 each), the entries
//! (tag, type, offset into the data store, count: four big-endian u32), then the data store.
//! Only the types this reader asks for are decoded; every offset and count is checked against
//! the blob, so a damaged header is an error, never a read out of bounds.
//!
//! Where a tag occurs more than once (an entry of the signed region and one added at install),
//! the last entry is the one taken, as rpm does.

/// Tags read (rpmtag.h).
pub const NAME: u32 = 1000;
pub const VERSION: u32 = 1001;
pub const RELEASE: u32 = 1002;
pub const ARCH: u32 = 1022;
pub const FILESTATES: u32 = 1029;
pub const FILEMODES: u32 = 1030;
pub const FILEDIGESTS: u32 = 1035;
pub const FILELINKTOS: u32 = 1036;
pub const FILEFLAGS: u32 = 1037;
pub const DIRINDEXES: u32 = 1116;
pub const BASENAMES: u32 = 1117;
pub const DIRNAMES: u32 = 1118;
pub const FILEDIGESTALGO: u32 = 5011;

/// Entry types (rpmTagType).
const CHAR: u32 = 1;
const INT8: u32 = 2;
const INT16: u32 = 3;
const INT32: u32 = 4;
const STRING: u32 = 6;
const BIN: u32 = 7;
const STRING_ARRAY: u32 = 8;
const I18NSTRING: u32 = 9;

/// Entries a header may have at most (rpm's own limit, `HEADER_TAGS_MAX`).
const ENTRIES_MAX: usize = 0x0000_ffff;
/// Data store size at most (rpm's `HEADER_DATA_MAX`: 256 MiB).
const DATA_MAX: usize = 0x0fff_ffff;

#[derive(Debug, Clone, Copy)]
struct Entry {
    tag: u32,
    kind: u32,
    offset: usize,
    count: usize,
}

/// A parsed header: the entries, and the data store they point into.
pub struct Header<'a> {
    entries: Vec<Entry>,
    data: &'a [u8],
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

impl<'a> Header<'a> {
    /// Parses the header in `blob`; an error says what is wrong with it.
    pub fn parse(blob: &'a [u8]) -> Result<Header<'a>, String> {
        let il = be32(blob, 0).ok_or("shorter than its preamble")? as usize;
        let dl = be32(blob, 4).ok_or("shorter than its preamble")? as usize;
        if il == 0 || il > ENTRIES_MAX || dl > DATA_MAX {
            return Err(format!("{il} entries, {dl} data bytes: out of range"));
        }
        let data_at = 8 + il * 16;
        let data = blob
            .get(data_at..data_at + dl)
            .ok_or_else(|| format!("{} bytes, {} announced", blob.len(), data_at + dl))?;
        let mut entries = Vec::with_capacity(il);
        for i in 0..il {
            let at = 8 + i * 16;
            let field = |k: usize| be32(blob, at + 4 * k).unwrap_or(0);
            let e = Entry {
                tag: field(0),
                kind: field(1),
                offset: field(2) as usize,
                count: field(3) as usize,
            };
            if e.offset > dl {
                return Err(format!("tag {}: offset {} past the data", e.tag, e.offset));
            }
            entries.push(e);
        }
        Ok(Header { entries, data })
    }

    fn entry(&self, tag: u32) -> Option<&Entry> {
        self.entries.iter().rev().find(|e| e.tag == tag)
    }

    /// `count` NUL-terminated strings from `offset`.
    fn strings_at(&self, e: &Entry) -> Result<Vec<&'a str>, String> {
        let mut out = Vec::with_capacity(e.count.min(self.data.len()));
        let mut at = e.offset;
        for _ in 0..e.count {
            let rest = self.data.get(at..).unwrap_or_default();
            let len = rest
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(|| format!("tag {}: a string runs past the data", e.tag))?;
            let s = std::str::from_utf8(&rest[..len])
                .map_err(|_| format!("tag {}: a string is not UTF-8", e.tag))?;
            out.push(s);
            at += len + 1;
        }
        Ok(out)
    }

    /// A STRING (or the first of an I18NSTRING) tag; `None` when absent.
    pub fn string(&self, tag: u32) -> Result<Option<&'a str>, String> {
        let Some(e) = self.entry(tag) else {
            return Ok(None);
        };
        match e.kind {
            STRING | I18NSTRING | STRING_ARRAY => {
                Ok(self.strings_at(&Entry { count: 1, ..*e })?.pop())
            }
            k => Err(format!("tag {tag}: type {k}, not a string")),
        }
    }

    /// A STRING_ARRAY tag; empty when absent.
    pub fn strings(&self, tag: u32) -> Result<Vec<&'a str>, String> {
        match self.entry(tag) {
            None => Ok(Vec::new()),
            Some(e) if matches!(e.kind, STRING_ARRAY | I18NSTRING) => self.strings_at(e),
            Some(e) => Err(format!("tag {tag}: type {}, not a string array", e.kind)),
        }
    }

    /// The fixed-size items of `e`, `size` bytes each.
    fn items(&self, e: &Entry, size: usize) -> Result<&'a [u8], String> {
        let len = e
            .count
            .checked_mul(size)
            .ok_or_else(|| format!("tag {}: count {} out of range", e.tag, e.count))?;
        self.data
            .get(e.offset..e.offset + len)
            .ok_or_else(|| format!("tag {}: {} items run past the data", e.tag, e.count))
    }

    /// An integer tag (CHAR, INT8, INT16 or INT32) as u32 values; empty when absent.
    pub fn numbers(&self, tag: u32) -> Result<Vec<u32>, String> {
        let Some(e) = self.entry(tag) else {
            return Ok(Vec::new());
        };
        Ok(match e.kind {
            CHAR | INT8 | BIN => self.items(e, 1)?.iter().map(|&b| b as u32).collect(),
            INT16 => self
                .items(e, 2)?
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]) as u32)
                .collect(),
            INT32 => self
                .items(e, 4)?
                .chunks_exact(4)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            k => return Err(format!("tag {tag}: type {k}, not an integer")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header rpm 4.18 wrote into its sqlite database when installing a package built with
    /// rpmbuild (`detector-hello-1.0-1.x86_64`: a gcc-built library, a symbolic link to it, a
    /// `%config(noreplace)` file, and the build-id directory and link rpmbuild adds).
    const HELLO: &[u8] = include_bytes!("../fixtures/detector-hello.header");

    #[test]
    fn a_header_rpm_wrote() {
        let h = Header::parse(HELLO).unwrap();
        assert_eq!(h.string(NAME).unwrap(), Some("detector-hello"));
        assert_eq!(h.string(VERSION).unwrap(), Some("1.0"));
        assert_eq!(h.string(RELEASE).unwrap(), Some("1"));
        assert_eq!(h.string(ARCH).unwrap(), Some("x86_64"));
        assert_eq!(h.numbers(FILEDIGESTALGO).unwrap(), [8]);
        let dirs = h.strings(DIRNAMES).unwrap();
        let names = h.strings(BASENAMES).unwrap();
        let index = h.numbers(DIRINDEXES).unwrap();
        let paths: Vec<String> = names
            .iter()
            .zip(&index)
            .map(|(n, &d)| format!("{}{n}", dirs[d as usize]))
            .collect();
        assert_eq!(
            paths,
            [
                "/etc/hello.conf",
                "/usr/lib/.build-id",
                "/usr/lib/.build-id/68",
                "/usr/lib/.build-id/68/0be5dff0ff8e1b709add0c6ff4863e53b01504",
                "/usr/lib64/libhello.so",
                "/usr/lib64/libhello.so.1",
            ]
        );
        let digests = h.strings(FILEDIGESTS).unwrap();
        assert_eq!(
            digests[0],
            "8d0d4c8a1e6ab75ae2f81abf1e1e66ce1ab7be53c7b8f245a41907fc45b3a801"
        );
        assert_eq!(
            digests[5],
            "4ce15d1c41d9fdf4e45b595ebc28f5794be21ccb9a3d079c30d8e3f9622af58a"
        );
        assert_eq!(digests[4], "", "a symbolic link has no digest");
        // %config(noreplace) (1 | 16); the build-id entries are artifacts (4096).
        assert_eq!(h.numbers(FILEFLAGS).unwrap(), [17, 4096, 4096, 4096, 0, 0]);
        assert_eq!(
            h.numbers(FILEMODES).unwrap(),
            [0o100644, 0o40755, 0o40755, 0o120777, 0o120777, 0o100755]
        );
        assert_eq!(h.strings(FILELINKTOS).unwrap()[4], "libhello.so.1");
        assert_eq!(h.numbers(FILESTATES).unwrap(), [0; 6]);
    }

    #[test]
    fn damaged_headers_are_errors() {
        assert!(Header::parse(&[]).is_err());
        assert!(Header::parse(&HELLO[..7]).is_err());
        assert!(Header::parse(&HELLO[..HELLO.len() - 1]).is_err());
        // Every truncation and every single-byte change parses or fails, never panics.
        for cut in (0..HELLO.len()).step_by(7) {
            let _ = Header::parse(&HELLO[..cut]);
        }
        for at in 0..HELLO.len() {
            let mut b = HELLO.to_vec();
            b[at] ^= 0xff;
            if let Ok(h) = Header::parse(&b) {
                for tag in [NAME, BASENAMES, DIRNAMES, FILEDIGESTS, FILELINKTOS] {
                    let _ = h.string(tag);
                    let _ = h.strings(tag);
                }
                for tag in [DIRINDEXES, FILEMODES, FILEFLAGS, FILESTATES] {
                    let _ = h.numbers(tag);
                }
            }
        }
        // A count far past the data.
        let mut b = HELLO.to_vec();
        b[8 + 12..8 + 16].copy_from_slice(&u32::MAX.to_be_bytes());
        let h = Header::parse(&b).unwrap();
        let tag = be32(&b, 8).unwrap();
        assert!(h.numbers(tag).is_err() || h.strings(tag).is_err());
    }
}
