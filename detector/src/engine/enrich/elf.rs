//! Library analysis: SHA-256, interposed credential APIs, constructors.
//!
//! [`analyze`] reads a shared object once, hashes it and lists the credential-handling
//! functions it *defines* in its dynamic symbol table: a library that defines `read`,
//! `pam_sm_authenticate` or `SSL_read` and is preloaded ahead of the real one interposes it.
//! [`ElfCache`] keeps the result per file identity so that every alert about the same
//! library does not re-read it.
//!
//! Files are streamed, never held whole in memory: the hash reads 64 KiB at a time, up to a
//! byte budget (a bigger file is not hashed and `hash_skipped` says why), and the ELF parser
//! reads only the headers and tables it needs through a read cache. A 250 MB library costs
//! the same memory as a 25 KB one.
//!
//! Nothing here panics on bad input: unreadable or non-ELF files give an [`ElfFacts`] whose
//! `error` says why in one line.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use object::read::elf::{Dyn as _, ElfFile, FileHeader, ProgramHeader as _, SectionHeader as _};
use object::{
    elf, Object as _, ObjectSection as _, ObjectSymbol as _, ReadCache, ReadRef, SymbolKind,
    SymbolSection,
};
use sha2::{Digest as _, Sha256};

/// Most bytes the daemon hashes per file version: hashing is the one cost that grows with a
/// file's size (SHA-256 runs at about 1 GB/s here), and an attacker chooses the size.
pub const DEFAULT_HASH_BUDGET: u64 = 64 * 1024 * 1024;

/// Hashing budget of `detector analyze`, which a person runs on files of their choice.
pub const NO_BUDGET: u64 = u64::MAX;

/// Read size of the streaming hash.
const CHUNK: usize = 64 * 1024;

/// Default number of entries for an [`ElfCache`].
pub const DEFAULT_CACHE_CAPACITY: usize = 1024;

/// Functions through which credentials pass: a library that defines one of these (and is
/// loaded ahead of the real provider) can see passwords, keys or session plaintext.
/// Sorted, so it can be searched with `binary_search`.
pub const CREDENTIAL_APIS: &[&str] = &[
    // OpenSSL / GnuTLS: session plaintext.
    "SSL_read",
    "SSL_read_ex",
    "SSL_write",
    "SSL_write_ex",
    // libc: crypt, terminal and password-database access, I/O.
    "crypt",
    "crypt_r",
    "crypt_ra",
    "crypt_rn",
    "execve",
    "fgets",
    "getpass",
    "getpwnam",
    "getpwnam_r",
    "getpwuid",
    "getpwuid_r",
    "getspnam",
    "getspnam_r",
    "gnutls_record_recv",
    "gnutls_record_send",
    // libssh2.
    "libssh2_userauth_keyboard_interactive_ex",
    "libssh2_userauth_password_ex",
    "open",
    "openat",
    // PAM: applications (libpam) and modules (pam_sm_*).
    "pam_acct_mgmt",
    "pam_authenticate",
    "pam_get_authtok",
    "pam_get_item",
    "pam_get_user",
    "pam_open_session",
    "pam_set_item",
    "pam_sm_authenticate",
    "pam_sm_chauthtok",
    "pam_sm_setcred",
    "read",
    "readv",
    "recv",
    "recvfrom",
    "recvmsg",
    // libssh.
    "ssh_userauth_kbdint_setanswer",
    "ssh_userauth_password",
    "strcmp",
    "strncmp",
    "write",
];

/// What [`analyze`] found out about one file.
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq, Eq)]
pub struct ElfFacts {
    /// Lower-case hex SHA-256 of the file's bytes; `None` when they could not be read.
    pub sha256: Option<String>,
    /// Names from [`CREDENTIAL_APIS`] that the file defines as dynamic functions; sorted,
    /// deduplicated.
    pub hooks: Vec<String>,
    /// The file has load-time code of its own: more than the one `.init_array`/`DT_INIT_ARRAY`
    /// entry the C runtime adds (`frame_dummy`), a `DT_PREINIT_ARRAY`, or `.ctors` entries
    /// beyond its two sentinels. `DT_INIT` (`_init`, from crti) does not count.
    pub constructors: bool,
    /// One-line reason the file could not be read or (fully) parsed.
    pub error: Option<String>,
    /// Why `sha256` is missing although the file was read: it is over the hashing budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash_skipped: Option<String>,
}

impl ElfFacts {
    fn failed(reason: impl Into<String>) -> Self {
        ElfFacts {
            error: Some(one_line(&reason.into())),
            ..ElfFacts::default()
        }
    }
}

/// Hashes `path` (whatever its size) and looks for interposed credential APIs and constructors.
pub fn analyze(path: &Path) -> ElfFacts {
    analyze_within(path, NO_BUDGET)
}

/// As [`analyze`], hashing the file only when it is at most `hash_budget` bytes.
pub fn analyze_within(path: &Path, hash_budget: u64) -> ElfFacts {
    match open(path) {
        Ok((file, meta)) => analyze_open(file, &meta, hash_budget, &AtomicBool::new(false)),
        Err(reason) => ElfFacts::failed(reason),
    }
}

/// The metadata a cache looks a file version up by; facts saying why when it cannot be had.
pub fn stat(path: &Path) -> Result<std::fs::Metadata, ElfFacts> {
    std::fs::metadata(path)
        .map_err(|e| ElfFacts::failed(format!("cannot stat {}: {e}", path.display())))
}

/// As [`analyze_within`], with the metadata of the file version that was read (`None` when
/// it could not be read), to cache the facts under. Setting `cancel` stops the hash at its
/// next chunk.
pub fn analyze_versioned(
    path: &Path,
    hash_budget: u64,
    cancel: &AtomicBool,
) -> (ElfFacts, Option<std::fs::Metadata>) {
    match open(path) {
        Ok((file, meta)) => {
            let facts = analyze_open(file, &meta, hash_budget, cancel);
            let read = facts.sha256.is_some() || facts.hash_skipped.is_some();
            (facts, read.then_some(meta))
        }
        Err(reason) => (ElfFacts::failed(reason), None),
    }
}

/// Opens without blocking on FIFOs and returns the metadata of what was opened.
fn open(path: &Path) -> Result<(File, std::fs::Metadata), String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot stat {}: {e}", path.display()))?;
    Ok((file, meta))
}

fn analyze_open(
    mut file: File,
    meta: &std::fs::Metadata,
    hash_budget: u64,
    cancel: &AtomicBool,
) -> ElfFacts {
    if !meta.is_file() {
        return ElfFacts::failed("not a regular file");
    }
    let mut facts = ElfFacts::default();
    if meta.len() > hash_budget {
        facts.hash_skipped = Some(over_budget(meta.len(), hash_budget));
    } else {
        match hash_stream(&mut file, hash_budget, cancel) {
            Ok(Some(sha)) => facts.sha256 = Some(sha),
            // The file grew between fstat and the read.
            Ok(None) => facts.hash_skipped = Some(over_budget(hash_budget + 1, hash_budget)),
            Err(e) => return ElfFacts::failed(format!("read failed: {e}")),
        }
        if let Err(e) = file.seek(SeekFrom::Start(0)) {
            return ElfFacts::failed(format!("read failed: {e}"));
        }
    }
    let cache = ReadCache::new(file);
    parse(&cache, &mut facts);
    facts
}

fn over_budget(size: u64, budget: u64) -> String {
    format!("the file is {size} bytes, over the {budget}-byte hashing budget")
}

/// SHA-256 of the file's bytes read `CHUNK` at a time; `None` when there are more than `budget`.
fn hash_stream(
    file: &mut File,
    budget: u64,
    cancel: &AtomicBool,
) -> std::io::Result<Option<String>> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("cancelled"));
        }
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        total += n as u64;
        if total > budget {
            return Ok(None);
        }
        hasher.update(&buf[..n]);
    }
    Ok(Some(hex(&hasher.finalize())))
}

/// Hashes and parses file contents already in memory (the unit tests and the fuzz targets: the
/// daemon reads files through a cache instead, with the same `parse`).
#[cfg(any(test, fuzzing))]
pub fn analyze_bytes(data: &[u8]) -> ElfFacts {
    let mut facts = ElfFacts {
        sha256: Some(hex(&Sha256::digest(data))),
        ..ElfFacts::default()
    };
    parse(data, &mut facts);
    facts
}

/// Hooks, constructors and parse errors, read through `data` (bytes in memory or a read cache
/// over the file).
fn parse<'data, R: ReadRef<'data>>(data: R, facts: &mut ElfFacts) {
    if data.read_bytes_at(0, elf::ELFMAG.len() as u64) != Ok(&elf::ELFMAG[..]) {
        facts.error = Some("not an ELF file".to_owned());
        return;
    }
    let parsed = match object::FileKind::parse(data) {
        Ok(object::FileKind::Elf32) => {
            ElfFile::<elf::FileHeader32<object::Endianness>, R>::parse(data).map(|f| inspect(&f))
        }
        Ok(object::FileKind::Elf64) => {
            ElfFile::<elf::FileHeader64<object::Endianness>, R>::parse(data).map(|f| inspect(&f))
        }
        Ok(_) => {
            facts.error = Some("not an ELF file".to_owned());
            return;
        }
        Err(e) => Err(e),
    };
    match parsed {
        Ok((hooks, constructors, error)) => {
            facts.hooks = hooks;
            facts.constructors = constructors;
            facts.error = error.map(|e| one_line(&e));
        }
        Err(e) => facts.error = Some(one_line(&format!("invalid ELF: {e}"))),
    }
}

/// Hooks, constructors and a soft error (the dynamic table could not be read).
fn inspect<'data, Elf: FileHeader<Endian = object::Endianness>, R: ReadRef<'data>>(
    file: &ElfFile<'data, Elf, R>,
) -> (Vec<String>, bool, Option<String>) {
    let mut hooks: Vec<String> = file
        .dynamic_symbols()
        .filter(|sym| {
            sym.kind() == SymbolKind::Text
                && !sym.is_local()
                && matches!(sym.section(), SymbolSection::Section(_))
        })
        .filter_map(|sym| sym.name().ok())
        .filter(|name| CREDENTIAL_APIS.contains(name))
        .map(str::to_owned)
        .collect();
    hooks.sort_unstable();
    hooks.dedup();
    // The real provider defines its own API: libc defines read(), libpam pam_authenticate().
    if let Some(soname) = soname(file) {
        hooks.retain(|api| provider(api) != soname_base(&soname));
    }

    let (dynamic_ctors, error) = match dynamic_constructors(file) {
        Ok(found) => (found, None),
        Err(e) => (false, Some(format!("invalid ELF dynamic table: {e}"))),
    };
    let constructors = dynamic_ctors || section_constructors(file);
    (hooks, constructors, error)
}

/// The library that really provides a credential API (a soname without ".so..."); `pam_sm_*`
/// are implemented by every PAM module, so by none in particular.
fn provider(api: &str) -> &'static str {
    if api.starts_with("SSL_") {
        "libssl"
    } else if api.starts_with("gnutls_") {
        "libgnutls"
    } else if api.starts_with("libssh2_") {
        "libssh2"
    } else if api.starts_with("ssh_") {
        "libssh"
    } else if api.starts_with("pam_sm_") {
        ""
    } else if api.starts_with("pam_") {
        "libpam"
    } else if api.starts_with("crypt") {
        "libcrypt"
    } else {
        "libc"
    }
}

fn soname_base(soname: &str) -> &str {
    soname.split(".so").next().unwrap_or(soname)
}

/// `DT_SONAME`, from the `.dynstr` section.
fn soname<'data, Elf: FileHeader<Endian = object::Endianness>, R: ReadRef<'data>>(
    file: &ElfFile<'data, Elf, R>,
) -> Option<String> {
    let endian = file.endian();
    let (entries, _) = file
        .elf_section_table()
        .dynamic(endian, file.data())
        .ok()??;
    let offset = entries.iter().find_map(|e| {
        let tag: u64 = e.d_tag(endian).into();
        (tag == u64::from(elf::DT_SONAME)).then(|| e.d_val(endian).into())
    })?;
    let dynstr = file.section_by_name(".dynstr")?.data().ok()?;
    let rest = dynstr.get(usize::try_from(offset).ok()?..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// A `DT_INIT_ARRAY` longer than the C runtime's one entry, or a non-empty `DT_PREINIT_ARRAY`.
/// Reads `PT_DYNAMIC` (present even when the section headers were stripped), else `SHT_DYNAMIC`.
fn dynamic_constructors<'data, Elf: FileHeader<Endian = object::Endianness>, R: ReadRef<'data>>(
    file: &ElfFile<'data, Elf, R>,
) -> object::Result<bool> {
    let endian = file.endian();
    let data = file.data();
    let mut entries = None;
    for segment in file.elf_program_headers() {
        if let Some(dynamic) = segment.dynamic(endian, data)? {
            entries = Some(dynamic);
            break;
        }
    }
    if entries.is_none() {
        entries = file
            .elf_section_table()
            .dynamic(endian, data)?
            .map(|(d, _)| d);
    }
    let Some(entries) = entries else {
        return Ok(false);
    };
    let (mut init_array, mut init_array_size) = (false, 0u64);
    let (mut preinit_array, mut preinit_array_size) = (false, 0u64);
    for entry in entries {
        let tag: u64 = entry.d_tag(endian).into();
        let val: u64 = entry.d_val(endian).into();
        match u32::try_from(tag) {
            Ok(elf::DT_NULL) => break,
            Ok(elf::DT_INIT_ARRAY) => init_array = true,
            Ok(elf::DT_INIT_ARRAYSZ) => init_array_size = val,
            Ok(elf::DT_PREINIT_ARRAY) => preinit_array = true,
            Ok(elf::DT_PREINIT_ARRAYSZ) => preinit_array_size = val,
            _ => {}
        }
    }
    let word = if file.is_64() { 8 } else { 4 };
    Ok((init_array && init_array_size > word) || (preinit_array && preinit_array_size > 0))
}

/// A non-empty `SHT_INIT_ARRAY`/`SHT_PREINIT_ARRAY`/`.init_array` or `.ctors` section.
fn section_constructors<'data, Elf: FileHeader<Endian = object::Endianness>, R: ReadRef<'data>>(
    file: &ElfFile<'data, Elf, R>,
) -> bool {
    let endian = file.endian();
    let word: u64 = if file.is_64() { 8 } else { 4 };
    let by_type = file.elf_section_table().iter().any(|header| {
        matches!(
            header.sh_type(endian),
            elf::SHT_INIT_ARRAY | elf::SHT_PREINIT_ARRAY
        ) && header.sh_size(endian).into() > word
    });
    by_type
        || file.sections().any(|section| match section.name() {
            Ok(".init_array") => section.size() > word,
            Ok(".ctors") => section.size() > 2 * word,
            _ => false,
        })
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Identity of a file on disk: device and inode.
type FileId = (u64, u64);

/// Version of a file's contents: mtime (seconds, nanoseconds) and size.
type FileVersion = (i64, i64, u64);

fn identity(meta: &std::fs::Metadata) -> (FileId, FileVersion) {
    (
        (meta.dev(), meta.ino()),
        (meta.mtime(), meta.mtime_nsec(), meta.size()),
    )
}

/// Bounded cache of [`analyze`] results keyed by (dev, inode, mtime, size).
///
/// One entry per (dev, inode): a file whose mtime or size changed is re-analysed and its
/// entry replaced. When full, the entry inserted longest ago is evicted.
#[derive(Debug)]
pub struct ElfCache {
    capacity: usize,
    entries: HashMap<FileId, (FileVersion, ElfFacts)>,
    /// Insertion order, oldest first; holds exactly the keys of `entries`.
    order: VecDeque<FileId>,
    /// Number of files actually read (for tests).
    analyses: u64,
    hash_budget: u64,
}

impl ElfCache {
    /// A cache holding at most `capacity` files (at least one).
    pub fn new(capacity: usize, hash_budget: u64) -> Self {
        let capacity = capacity.max(1);
        ElfCache {
            hash_budget,
            capacity,
            entries: HashMap::with_capacity(capacity.min(4096)),
            order: VecDeque::with_capacity(capacity.min(4096)),
            analyses: 0,
        }
    }

    /// Facts for `path`: cached when the file's (dev, inode, mtime, size) is unchanged,
    /// else analysed now. A path that cannot be stat'ed gives facts with an error.
    pub fn get(&mut self, path: &Path) -> ElfFacts {
        let meta = match stat(path) {
            Ok(meta) => meta,
            Err(failed) => return failed,
        };
        if let Some(facts) = self.cached(&meta) {
            return facts;
        }
        self.analyses += 1;
        let (facts, read) = analyze_versioned(path, self.hash_budget, &AtomicBool::new(false));
        if let Some(meta) = read {
            self.insert_for(&meta, facts.clone());
        }
        facts
    }

    /// The facts of this version of the file, when it was analysed before.
    pub fn cached(&self, meta: &std::fs::Metadata) -> Option<ElfFacts> {
        let (id, version) = identity(meta);
        self.entries
            .get(&id)
            .filter(|(cached, _)| *cached == version)
            .map(|(_, facts)| facts.clone())
    }

    /// Keeps the facts of the file version `meta` describes.
    pub fn insert_for(&mut self, meta: &std::fs::Metadata, facts: ElfFacts) {
        let (id, version) = identity(meta);
        self.insert(id, version, facts);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn insert(&mut self, id: FileId, version: FileVersion, facts: ElfFacts) {
        if self.entries.insert(id, (version, facts)).is_some() {
            // Replaced a stale version: it becomes the newest entry.
            if let Some(pos) = self.order.iter().position(|k| *k == id) {
                self.order.remove(pos);
            }
        }
        self.order.push_back(id);
        while self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.entries.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::process::Command;

    /// A scratch directory removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "detector-elf-{name}-{}-{:?}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos()
            ));
            std::fs::create_dir_all(&dir).expect("create temp dir");
            TempDir(dir)
        }

        fn path(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn gcc_shared(source: &Path, out: &Path) {
        let output = Command::new("gcc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(out)
            .arg(source)
            .arg("-ldl")
            .output()
            .expect("gcc must be installed to run the elf tests");
        assert!(
            output.status.success(),
            "gcc failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn read_hook_source() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/read_hook.c")
    }

    fn sha256sum(path: &Path) -> String {
        let output = Command::new("sha256sum")
            .arg(path)
            .output()
            .expect("run sha256sum");
        assert!(output.status.success());
        String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .next()
            .expect("sha256sum output")
            .to_owned()
    }

    const CTOR_SOURCE: &str = r"
#include <stddef.h>
static int armed;
__attribute__((constructor)) static void arm(void) { armed = 1; }
int pam_sm_authenticate(void *pamh, int flags, int argc, const char **argv) {
    (void)pamh; (void)flags; (void)argc; (void)argv; return armed ? 0 : 1;
}
int SSL_read(void *ssl, void *buf, int num) { (void)ssl; (void)buf; return num; }
int not_a_credential_api(void) { return 2; }
";

    #[test]
    fn credential_api_list_is_sorted_and_unique() {
        assert!(CREDENTIAL_APIS.windows(2).all(|w| w[0] < w[1]));
        for name in [
            "read",
            "write",
            "getpass",
            "crypt",
            "getpwnam",
            "getspnam",
            "fgets",
            "strcmp",
            "pam_authenticate",
            "pam_sm_authenticate",
            "SSL_read",
            "SSL_write",
            "gnutls_record_recv",
            "ssh_userauth_password",
        ] {
            assert!(CREDENTIAL_APIS.binary_search(&name).is_ok(), "{name}");
        }
    }

    #[test]
    fn read_hook_fixture() {
        let tmp = TempDir::new("read-hook");
        let so = tmp.path("x.so");
        gcc_shared(&read_hook_source(), &so);
        let facts = analyze(&so);
        assert_eq!(facts.error, None);
        assert_eq!(facts.hooks, vec!["read".to_owned()]);
        // No constructor of its own (the C runtime's frame_dummy and _init do not count).
        assert!(!facts.constructors);
        let sha = facts.sha256.expect("sha256");
        assert_eq!(sha.len(), 64);
        assert!(sha
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(sha, sha256sum(&so));
    }

    #[test]
    fn constructor_pam_and_ssl() {
        let tmp = TempDir::new("ctor");
        let src = tmp.path("evil.c");
        std::fs::write(&src, CTOR_SOURCE).expect("write source");
        let so = tmp.path("evil.so");
        gcc_shared(&src, &so);
        let facts = analyze(&so);
        assert_eq!(facts.error, None);
        assert!(facts.constructors);
        assert_eq!(
            facts.hooks,
            vec!["SSL_read".to_owned(), "pam_sm_authenticate".to_owned()]
        );
    }

    #[test]
    fn libc_parses() {
        let Some(libc) = [
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
        ]
        .iter()
        .map(Path::new)
        .find(|p| p.exists()) else {
            eprintln!("no x86_64 libc.so.6 found; skipping");
            return;
        };
        let facts = analyze(libc);
        assert_eq!(facts.error, None, "{facts:?}");
        assert!(facts.sha256.is_some());
        // libc provides these itself (its soname says so): not hooks.
        assert!(facts.hooks.is_empty(), "{:?}", facts.hooks);
    }

    #[test]
    fn text_file_is_an_error_not_a_panic() {
        let tmp = TempDir::new("text");
        let txt = tmp.path("notes.txt");
        std::fs::write(&txt, "just some text\nover two lines\n").expect("write");
        let facts = analyze(&txt);
        assert_eq!(facts.error.as_deref(), Some("not an ELF file"));
        assert_eq!(facts.sha256.as_deref().map(str::len), Some(64));
        assert!(facts.hooks.is_empty());
        assert!(!facts.constructors);
    }

    #[test]
    fn bad_inputs_never_panic() {
        let tmp = TempDir::new("bad");
        // Missing file: error, no hash.
        let facts = analyze(&tmp.path("missing.so"));
        assert!(facts.error.is_some());
        assert_eq!(facts.sha256, None);
        // Directory: error.
        assert!(analyze(&tmp.0).error.is_some());
        // Empty file and truncated ELF headers/images: error with a hash, no panic.
        let good = tmp.path("good.so");
        gcc_shared(&read_hook_source(), &good);
        let bytes = std::fs::read(&good).expect("read so");
        for len in [0, 4, 16, 63, 64, 200, bytes.len() / 2] {
            let facts = analyze_bytes(&bytes[..len]);
            assert!(facts.sha256.is_some());
            assert!(facts.error.is_some() || len > 64, "len {len}: {facts:?}");
            if let Some(e) = &facts.error {
                assert!(!e.contains('\n'));
            }
        }
        // Corrupted bytes everywhere after the ident: whatever happens, no panic.
        for step in [7usize, 13, 31] {
            let mut corrupt = bytes.clone();
            for i in (16..corrupt.len()).step_by(step) {
                corrupt[i] ^= 0xa5;
            }
            let _ = analyze_bytes(&corrupt);
        }
        // Hashing budget: over it, the file is analysed but not hashed, and says why.
        let (file, meta) = open(&good).expect("open");
        let facts = analyze_open(file, &meta, 100, &AtomicBool::new(false));
        assert_eq!(facts.sha256, None);
        assert!(facts
            .hash_skipped
            .as_deref()
            .is_some_and(|e| e.contains("over the 100-byte hashing budget")));
        assert_eq!(facts.error, None);
        assert_eq!(facts.hooks, vec!["read".to_owned()]);
    }

    #[test]
    fn cache_hits_and_reanalyses_after_change() {
        let tmp = TempDir::new("cache");
        let so = tmp.path("lib.so");
        gcc_shared(&read_hook_source(), &so);
        let mut cache = ElfCache::new(DEFAULT_CACHE_CAPACITY, NO_BUDGET);

        let first = cache.get(&so);
        let second = cache.get(&so);
        assert_eq!(first, second);
        assert_eq!(first.hooks, vec!["read".to_owned()]);
        assert_eq!(cache.analyses, 1);
        assert_eq!(cache.len(), 1);

        // Rewrite in place (same inode) with different contents and a different size.
        std::fs::write(&so, "no longer an ELF object").expect("rewrite");
        let third = cache.get(&so);
        assert_eq!(cache.analyses, 2);
        assert_ne!(third.sha256, first.sha256);
        assert_eq!(third.error.as_deref(), Some("not an ELF file"));
        assert!(third.hooks.is_empty());
        assert_eq!(cache.get(&so), third);
        assert_eq!(cache.analyses, 2);
        assert_eq!(cache.len(), 1);

        // Stat failure.
        let missing = cache.get(&tmp.path("missing.so"));
        assert!(missing.error.is_some());
        assert_eq!(missing.sha256, None);
    }

    #[test]
    fn cache_evicts_oldest() {
        let tmp = TempDir::new("evict");
        let paths: Vec<PathBuf> = (0..3)
            .map(|i| {
                let p = tmp.path(&format!("f{i}"));
                std::fs::write(&p, format!("file number {i}")).expect("write");
                p
            })
            .collect();
        let mut cache = ElfCache::new(2, NO_BUDGET);
        cache.get(&paths[0]);
        cache.get(&paths[1]);
        cache.get(&paths[2]); // evicts f0
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.analyses, 3);
        cache.get(&paths[2]);
        cache.get(&paths[1]);
        assert_eq!(cache.analyses, 3);
        cache.get(&paths[0]); // re-read; evicts f1
        assert_eq!(cache.analyses, 4);
        cache.get(&paths[2]);
        assert_eq!(cache.analyses, 4);
        cache.get(&paths[1]);
        assert_eq!(cache.analyses, 5);
    }
}
