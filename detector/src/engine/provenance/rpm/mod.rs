//! rpm's package database in its sqlite form (`rpmdb.sqlite`: RHEL 9, Fedora 33 and later,
//! under `/usr/lib/sysimage/rpm` or `/var/lib/rpm`). Each installed package is a header in the
//! `Packages` table ([`header`]); rpm's own `Basenames` table (file name → package, file index)
//! finds the headers that may list a path, and the answer always comes from the header itself:
//! the path (`DIRNAMES[DIRINDEXES[i]]` + `BASENAMES[i]`), its digest (`FILEDIGESTS`, of the
//! algorithm `FILEDIGESTALGO` names, MD5 when absent), `FILEFLAGS` (a `%config` file: a
//! mismatch is `conffile_modified`), `FILEMODES` (a directory is not a file; a path the package
//! installed as something other than a regular file is not its file any more) and `FILESTATES`
//! (a file the package did not install — replaced by another package's, excluded, of the other
//! architecture — is not its own); a symbolic link is the package's only while it leads where
//! the package's `FILELINKTOS` says (a repointed link is `symlink_not_from_package`). A missing `Basenames` row makes a file look unpackaged,
//! never vouched for. Nothing is indexed in memory; the database is opened read-only.
//!
//! Packages are named as `rpm -q` prints them: `name-version-release.arch`.
//!
//! The Berkeley DB `Packages` file of RHEL 7 and 8 is not read.
pub mod header;

use std::{
    collections::HashMap,
    fs, io,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::Mutex,
};

use md5::Md5;
use rusqlite::{Connection, OpenFlags, OptionalExtension as _};
use sha1::Sha1;
use sha2::{Sha224, Sha256, Sha384, Sha512};

use super::{
    PackageDb, Provenance, CHECKSUM_SKIPPED, CONFFILE_MODIFIED, MODIFIED_SINCE_PACKAGE,
    NOT_FROM_PACKAGE, NO_PACKAGE_CHECKSUM, SYMLINK_NOT_FROM_PACKAGE,
};
use header::Header;

/// Where rpm keeps its sqlite database, relative to the root; the first that exists is read.
pub const DB_PATHS: &[&str] = &[
    "usr/lib/sysimage/rpm/rpmdb.sqlite",
    "var/lib/rpm/rpmdb.sqlite",
];
/// Top-level directories that merged-`/usr` systems make links to `usr/<dir>`.
const MERGED_DIRS: &[&str] = &["bin", "sbin", "lib", "lib64"];
/// Most answers kept; past it the cache is emptied.
const CACHE_CAPACITY: usize = 4096;
/// `FILEFLAGS` bit of a `%config` file.
const RPMFILE_CONFIG: u32 = 1;
/// `FILESTATES` of a file the package installed.
const STATE_NORMAL: u32 = 0;
const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;
const S_IFLNK: u32 = 0o120000;

/// rpm's database under a filesystem root (`/` on the running machine). Paths given to
/// [`PackageDb::provenance`] are absolute paths inside that root; symbolic links are resolved
/// by the kernel, so under another root an absolute link target leads outside it (an error).
pub struct Rpm {
    root: PathBuf,
    db: PathBuf,
    aliases: Vec<&'static str>,
    hash_budget: u64,
    conn: Mutex<Option<Connection>>,
    cache: Mutex<HashMap<PathBuf, (Version, Provenance)>>,
}

/// (device, inode, mtime s, mtime ns, size) of the file, and inode of the path itself (a link).
type Version = (u64, u64, i64, i64, u64, u64);

/// One package's record of one file.
struct Listed {
    package: String,
    digest: String,
    algo: u32,
    flags: u32,
    mode: u32,
    /// A symbolic link's target (`FILELINKTOS`).
    link_to: String,
}

impl Rpm {
    /// The database under `root`, when there is one; nothing is opened before the first query.
    pub fn new(root: &Path) -> Option<Self> {
        let db = Self::database(root)?;
        let aliases = MERGED_DIRS
            .iter()
            .copied()
            .filter(|d| {
                fs::read_link(root.join(d))
                    .is_ok_and(|t| t == Path::new("usr").join(d) || t == Path::new("/usr").join(d))
            })
            .collect();
        Some(Rpm {
            root: root.to_owned(),
            db,
            aliases,
            hash_budget: crate::engine::enrich::elf::DEFAULT_HASH_BUDGET,
            conn: Mutex::new(None),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The sqlite database file under `root`, if any. A `var/lib/rpm` that is an absolute
    /// symbolic link is not followed: under another root it leads outside it.
    pub fn database(root: &Path) -> Option<PathBuf> {
        if fs::read_link(root.join("var/lib/rpm")).is_ok_and(|t| t.is_absolute())
            && root != Path::new("/")
        {
            return Some(root.join(DB_PATHS[0])).filter(|p| p.is_file());
        }
        DB_PATHS.iter().map(|p| root.join(p)).find(|p| p.is_file())
    }

    /// Files over `budget` bytes are not hashed (`checksum_skipped`).
    pub fn with_hash_budget(mut self, budget: u64) -> Self {
        self.hash_budget = budget;
        self
    }

    /// Runs `f` on the open database (opened read-only on first use).
    fn with_conn<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> io::Result<T> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if conn.is_none() {
            let c = Connection::open_with_flags(
                &self.db,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|e| io::Error::other(format!("{}: {e}", self.db.display())))?;
            c.busy_timeout(std::time::Duration::from_millis(500))
                .map_err(io::Error::other)?;
            *conn = Some(c);
        }
        let c = conn.as_ref().expect("opened above");
        f(c).map_err(|e| io::Error::other(format!("{}: {e}", self.db.display())))
    }

    /// `path` with a merged-`/usr` alias prefix (`/lib64/...`) replaced by its target.
    fn normalise(&self, path: &str) -> String {
        for d in &self.aliases {
            if let Some(rest) = path.strip_prefix('/').and_then(|p| p.strip_prefix(d)) {
                if rest.is_empty() || rest.starts_with('/') {
                    return format!("/usr/{d}{rest}");
                }
            }
        }
        path.to_owned()
    }

    /// Every package's record of the file at `path` (normalised), its directories excluded.
    fn listed(&self, path: &str) -> io::Result<Vec<Listed>> {
        let Some((_, name)) = path.rsplit_once('/').filter(|(_, n)| !n.is_empty()) else {
            return Ok(Vec::new());
        };
        let rows: Vec<(i64, i64)> = self.with_conn(|c| {
            let mut st = c.prepare_cached("SELECT hnum, idx FROM Basenames WHERE key = ?1")?;
            let rows = st.query_map([name], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })?;
        let mut out = Vec::new();
        for (hnum, idx) in rows {
            let blob: Option<Vec<u8>> = self.with_conn(|c| {
                c.prepare_cached("SELECT blob FROM Packages WHERE hnum = ?1")?
                    .query_row([hnum], |r| r.get(0))
                    .optional()
            })?;
            let Some(blob) = blob else { continue };
            let bad = |e: String| io::Error::other(format!("rpm header {hnum}: {e}"));
            let h = Header::parse(&blob).map_err(bad)?;
            if let Some(l) = self.record(&h, idx as usize, path).map_err(bad)? {
                out.push(l);
            }
        }
        Ok(out)
    }

    /// The header's record of its file `i`, when that file is `path` and the package installed
    /// it as a file.
    fn record(&self, h: &Header, i: usize, path: &str) -> Result<Option<Listed>, String> {
        let names = h.strings(header::BASENAMES)?;
        let dirs = h.strings(header::DIRNAMES)?;
        let dir_of = h.numbers(header::DIRINDEXES)?;
        let (Some(name), Some(&d)) = (names.get(i), dir_of.get(i)) else {
            return Ok(None);
        };
        let Some(dir) = dirs.get(d as usize) else {
            return Err(format!("file {i}: directory {d} of {}", dirs.len()));
        };
        if self.normalise(&format!("{dir}{name}")) != path {
            return Ok(None);
        }
        let states = h.numbers(header::FILESTATES)?;
        if states.get(i).is_some_and(|&s| s != STATE_NORMAL) {
            return Ok(None);
        }
        let mode = h.numbers(header::FILEMODES)?.get(i).copied().unwrap_or(0);
        if mode & S_IFMT == S_IFDIR {
            return Ok(None);
        }
        let digest = h
            .strings(header::FILEDIGESTS)?
            .get(i)
            .map(|d| d.to_ascii_lowercase())
            .unwrap_or_default();
        let algo = h
            .numbers(header::FILEDIGESTALGO)?
            .first()
            .copied()
            .unwrap_or(1);
        let flags = h.numbers(header::FILEFLAGS)?.get(i).copied().unwrap_or(0);
        let link_to = h
            .strings(header::FILELINKTOS)?
            .get(i)
            .map(|t| t.to_string())
            .unwrap_or_default();
        let package = match (
            h.string(header::NAME)?,
            h.string(header::VERSION)?,
            h.string(header::RELEASE)?,
        ) {
            (Some(n), Some(v), Some(r)) => match h.string(header::ARCH)? {
                Some(a) => format!("{n}-{v}-{r}.{a}"),
                None => format!("{n}-{v}-{r}"),
            },
            _ => return Err("no name, version or release".into()),
        };
        Ok(Some(Listed {
            package,
            digest,
            algo,
            flags,
            mode,
            link_to,
        }))
    }

    /// Provenance of `path` (inside the root); the checksum is taken of the bytes at `bytes`
    /// when given, else of the file.
    fn answer(&self, path: &Path, bytes: Option<&Path>) -> io::Result<Provenance> {
        let rel = path
            .strip_prefix("/")
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "the path is not absolute"))?;
        let full = self.root.join(rel);
        let meta = fs::metadata(bytes.unwrap_or(&full))?;
        let link_meta = fs::symlink_metadata(&full)?;
        let version = (
            meta.dev(),
            meta.ino(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.size(),
            link_meta.ino(),
        );
        if let Some((v, p)) = self.cache.lock().unwrap().get(&full) {
            if *v == version {
                return Ok(p.clone());
            }
        }
        // Resolved as a process with that root resolves it (the root may be another mount
        // namespace's, which `fs::canonicalize` would leave for the daemon's).
        let inside = path
            .to_str()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path is not UTF-8"))?;
        let target = crate::engine::provenance::resolve_in(&self.root, inside, false)?;
        let target = self.normalise(&target);
        // The path with its directories resolved but not its last component: the link itself.
        let link = link_meta
            .file_type()
            .is_symlink()
            .then(|| crate::engine::provenance::resolve_in(&self.root, inside, true).ok())
            .flatten()
            .map(|l| self.normalise(&l));
        let read_at = match bytes {
            Some(b) => b.to_owned(),
            None => self.root.join(&target[1..]),
        };
        let mut p = self.check(&target, &read_at)?;
        if let Some(link) = link.filter(|l| *l != target) {
            // The package that installed the link, leading where it leads now.
            let now = fs::read_link(&full)?;
            p.symlink_package = self
                .listed(&link)?
                .into_iter()
                .find(|l| l.mode & S_IFMT == S_IFLNK && Path::new(&l.link_to) == now)
                .map(|l| l.package);
            if p.symlink_package.is_none() {
                p.verified = false;
                p.reasons.push(SYMLINK_NOT_FROM_PACKAGE);
            }
        }
        let mut cache = self.cache.lock().unwrap();
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(full, (version, p.clone()));
        Ok(p)
    }

    /// Provenance of the file at `path` (normalised, no links), read at `full`.
    fn check(&self, path: &str, full: &Path) -> io::Result<Provenance> {
        let owners = self.listed(path)?;
        if owners.is_empty() {
            return Ok(Provenance {
                reasons: vec![NOT_FROM_PACKAGE],
                ..Default::default()
            });
        }
        let mut sums: HashMap<u32, Option<String>> = HashMap::new();
        let mut first: Option<Provenance> = None;
        for l in owners {
            let conffile = l.flags & RPMFILE_CONFIG != 0;
            let reason = if l.mode & S_IFMT != S_IFREG && l.mode != 0 {
                // Installed as a link or a device: a regular file there is not the package's.
                Some(MODIFIED_SINCE_PACKAGE)
            } else if l.digest.is_empty() {
                Some(NO_PACKAGE_CHECKSUM)
            } else {
                let actual = match sums.get(&l.algo) {
                    Some(s) => s.clone(),
                    None => {
                        let s = digest_file(full, l.algo, self.hash_budget)?;
                        sums.insert(l.algo, s.clone());
                        s
                    }
                };
                match actual {
                    None => Some(CHECKSUM_SKIPPED),
                    Some(a) if a == l.digest => None,
                    Some(_) if conffile => Some(CONFFILE_MODIFIED),
                    Some(_) => Some(MODIFIED_SINCE_PACKAGE),
                }
            };
            let p = Provenance {
                package: Some(l.package),
                verified: reason.is_none(),
                reasons: reason.into_iter().collect(),
                symlink_package: None,
            };
            if p.verified {
                return Ok(p);
            }
            first.get_or_insert(p);
        }
        Ok(first.expect("at least one owner"))
    }
}

impl PackageDb for Rpm {
    fn provenance(&self, path: &Path) -> io::Result<Provenance> {
        self.answer(path, None)
    }

    fn provenance_of_bytes(&self, path: &Path, bytes: &Path) -> io::Result<Provenance> {
        self.answer(path, Some(bytes))
    }

    fn warm(&self) {
        let count = self.with_conn(|c| {
            c.query_row("SELECT count(*) FROM Packages", [], |r| r.get::<_, i64>(0))
        });
        match count {
            Ok(n) => log::info!("rpm database {}: {n} packages", self.db.display()),
            Err(e) => log::warn!("rpm database: {e}"),
        }
    }
}

/// The digest of the file's bytes in rpm's `algo` (PGPHASHALGO: 1 MD5, 2 SHA-1, 8 SHA-256,
/// 9 SHA-384, 10 SHA-512, 11 SHA-224), lowercase hex; `None` when there are more than `budget`
/// bytes. Another algorithm is an error.
fn digest_file(path: &Path, algo: u32, budget: u64) -> io::Result<Option<String>> {
    match algo {
        1 => super::digest_file::<Md5>(path, budget),
        2 => super::digest_file::<Sha1>(path, budget),
        8 => super::digest_file::<Sha256>(path, budget),
        9 => super::digest_file::<Sha384>(path, budget),
        10 => super::digest_file::<Sha512>(path, budget),
        11 => super::digest_file::<Sha224>(path, budget),
        a => Err(io::Error::other(format!(
            "file digest algorithm {a} is not read"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::sync::atomic::{AtomicU32, Ordering};

    const HELLO: &[u8] = include_bytes!("../fixtures/detector-hello.header");
    /// The library the header's package installed at /usr/lib64/libhello.so.1.
    const LIBHELLO: &[u8] = include_bytes!("../fixtures/libhello.so.1");

    /// A filesystem root with an rpm database holding the fixture's package, as rpm lays it
    /// out (the `Packages` table and the `Basenames` index), removed on drop.
    struct FakeRoot(PathBuf);

    impl FakeRoot {
        fn new(db_dir: &str) -> Self {
            static N: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "detector-rpm-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(dir.join(db_dir)).unwrap();
            let c = Connection::open(dir.join(db_dir).join("rpmdb.sqlite")).unwrap();
            c.execute_batch(
                "CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL);
                 CREATE TABLE Basenames (key TEXT NOT NULL, hnum INTEGER NOT NULL, idx INTEGER NOT NULL);",
            )
            .unwrap();
            c.execute("INSERT INTO Packages (hnum, blob) VALUES (1, ?1)", [HELLO])
                .unwrap();
            let h = Header::parse(HELLO).unwrap();
            for (i, name) in h.strings(header::BASENAMES).unwrap().iter().enumerate() {
                c.execute(
                    "INSERT INTO Basenames VALUES (?1, 1, ?2)",
                    rusqlite::params![name, i as i64],
                )
                .unwrap();
            }
            let root = FakeRoot(dir);
            root.write("/usr/lib64/libhello.so.1", LIBHELLO);
            symlink("libhello.so.1", root.0.join("usr/lib64/libhello.so")).unwrap();
            root.write("/etc/hello.conf", b"conf\n");
            root
        }

        fn write(&self, path: &str, contents: &[u8]) {
            let p = self.0.join(path.trim_start_matches('/'));
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, contents).unwrap();
        }

        fn rpm(&self) -> Rpm {
            Rpm::new(&self.0).expect("the database")
        }
    }

    impl Drop for FakeRoot {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const PKG: &str = "detector-hello-1.0-1.x86_64";

    fn ask(db: &Rpm, path: &str) -> Provenance {
        db.provenance(Path::new(path)).unwrap()
    }

    fn verified() -> Provenance {
        Provenance {
            package: Some(PKG.into()),
            verified: true,
            ..Default::default()
        }
    }

    fn not_verified(pkg: Option<&str>, reasons: &[&'static str]) -> Provenance {
        Provenance {
            package: pkg.map(Into::into),
            verified: false,
            reasons: reasons.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn packaged_modified_and_unpackaged() {
        let root = FakeRoot::new("var/lib/rpm");
        let db = root.rpm();
        assert_eq!(ask(&db, "/usr/lib64/libhello.so.1"), verified());
        assert_eq!(ask(&db, "/etc/hello.conf"), verified());
        root.write("/usr/lib/libevil.so", b"evil");
        assert_eq!(
            ask(&db, "/usr/lib/libevil.so"),
            not_verified(None, &[NOT_FROM_PACKAGE])
        );
        // A directory the package lists is not a file of it.
        fs::create_dir_all(root.0.join("usr/lib/.build-id")).unwrap();
        assert_eq!(
            ask(&db, "/usr/lib/.build-id"),
            not_verified(None, &[NOT_FROM_PACKAGE])
        );
        let mut lib = LIBHELLO.to_vec();
        lib.push(0);
        root.write("/usr/lib64/libhello.so.1", &lib);
        assert_eq!(
            ask(&db, "/usr/lib64/libhello.so.1"),
            not_verified(Some(PKG), &[MODIFIED_SINCE_PACKAGE])
        );
        root.write("/etc/hello.conf", b"edited\n");
        assert_eq!(
            ask(&db, "/etc/hello.conf"),
            not_verified(Some(PKG), &[CONFFILE_MODIFIED])
        );
        assert!(db.provenance(Path::new("/usr/lib64/missing.so")).is_err());
        assert!(db.provenance(Path::new("usr/lib64/libhello.so.1")).is_err());
    }

    #[test]
    fn symbolic_links_and_merged_usr() {
        let root = FakeRoot::new("usr/lib/sysimage/rpm");
        symlink("usr/lib64", root.0.join("lib64")).unwrap();
        let db = root.rpm();
        assert_eq!(
            ask(&db, "/usr/lib64/libhello.so"),
            Provenance {
                symlink_package: Some(PKG.into()),
                ..verified()
            }
        );
        assert_eq!(ask(&db, "/lib64/libhello.so.1"), verified());
        symlink("libhello.so.1", root.0.join("usr/lib64/libhello.so.9")).unwrap();
        assert_eq!(
            ask(&db, "/usr/lib64/libhello.so.9"),
            not_verified(Some(PKG), &[SYMLINK_NOT_FROM_PACKAGE])
        );
        // A listed link repointed to another file of the package is not the package's link.
        fs::remove_file(root.0.join("usr/lib64/libhello.so.9")).unwrap();
        fs::remove_file(root.0.join("usr/lib64/libhello.so")).unwrap();
        symlink("../../etc/hello.conf", root.0.join("usr/lib64/libhello.so")).unwrap();
        assert_eq!(
            ask(&db, "/usr/lib64/libhello.so"),
            not_verified(Some(PKG), &[SYMLINK_NOT_FROM_PACKAGE])
        );
        // Where the package installed a link, a regular file is not the package's.
        fs::remove_file(root.0.join("usr/lib64/libhello.so")).unwrap();
        root.write("/usr/lib64/libhello.so", LIBHELLO);
        assert_eq!(
            ask(&db, "/usr/lib64/libhello.so"),
            not_verified(Some(PKG), &[MODIFIED_SINCE_PACKAGE])
        );
    }

    #[test]
    fn the_hash_budget_and_a_damaged_database() {
        let root = FakeRoot::new("var/lib/rpm");
        let db = root.rpm().with_hash_budget(8);
        assert_eq!(
            ask(&db, "/usr/lib64/libhello.so.1"),
            not_verified(Some(PKG), &[CHECKSUM_SKIPPED])
        );
        let c = Connection::open(root.0.join("var/lib/rpm/rpmdb.sqlite")).unwrap();
        c.execute("UPDATE Packages SET blob = x'0000' WHERE hnum = 1", [])
            .unwrap();
        let e = root
            .rpm()
            .provenance(Path::new("/etc/hello.conf"))
            .unwrap_err();
        assert!(e.to_string().contains("rpm header 1"), "{e}");
        fs::write(root.0.join("var/lib/rpm/rpmdb.sqlite"), b"not a database").unwrap();
        assert!(root.rpm().provenance(Path::new("/etc/hello.conf")).is_err());
        assert!(Rpm::new(Path::new("/nonexistent-root")).is_none());
    }
}
