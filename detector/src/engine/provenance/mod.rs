//! Package provenance: which package owns a file, and whether the file's bytes still match what
//! the package database recorded for it. [`PackageDb`] is the interface; [`dpkg::Dpkg`] reads
//! Debian's database, [`rpm::Rpm`] rpm's sqlite database. [`Kind::of`] says which a root has,
//! [`system`] opens the running machine's.
pub mod dpkg;
pub mod rpm;
pub mod verifier;

use std::{
    io,
    path::{Path, PathBuf},
    sync::Arc,
};

use serde::Serialize;

/// No package lists the file.
pub const NOT_FROM_PACKAGE: &str = "not_from_package";
/// The file's checksum differs from the one its package recorded.
pub const MODIFIED_SINCE_PACKAGE: &str = "modified_since_package";
/// A package lists the file but recorded no checksum for it.
pub const NO_PACKAGE_CHECKSUM: &str = "no_package_checksum";
/// The file is one of its package's configuration files, and differs from the packaged version
/// (administrators edit these; the package manager keeps the edit on upgrade).
pub const CONFFILE_MODIFIED: &str = "conffile_modified";
/// The file is larger than the hashing budget, so its checksum was not compared.
pub const CHECKSUM_SKIPPED: &str = "checksum_skipped";
/// The path asked about is a symbolic link that no package lists (its target may be owned).
pub const SYMLINK_NOT_FROM_PACKAGE: &str = "symlink_not_from_package";

/// The root has no package database this build reads.
pub const NO_PACKAGE_DATABASE: &str = "no_package_database";
/// The database could not answer for the file (it cannot be read, or leads outside the root).
pub const PROVENANCE_UNKNOWN: &str = "provenance_unknown";

/// What the package database says about one file.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Provenance {
    /// The package that installed the file (for a symbolic link: the file it resolves to), as the
    /// database names it (dpkg: `name:arch` for multi-arch packages).
    pub package: Option<String>,
    /// The file is listed by `package` and its bytes match the package's checksum (and, for a
    /// symbolic link, the link itself is listed by a package).
    pub verified: bool,
    /// Why it is not verified (empty when it is).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<&'static str>,
    /// When the path asked about is a symbolic link: the package that lists the link.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symlink_package: Option<String>,
}

/// A package database that can answer for a file. `path` is absolute; symbolic links in it are
/// followed, and the file they lead to is the one checked.
pub trait PackageDb: Send + Sync {
    /// Provenance of the file at `path`; an error when the file cannot be looked at (missing,
    /// unreadable) or the database cannot be read.
    fn provenance(&self, path: &Path) -> io::Result<Provenance>;

    /// Provenance of the file at `path`, its checksum taken of the bytes at `bytes` (the same
    /// file read another way: `/proc/<pid>/map_files/<range>`, or through `/proc/<pid>/root`).
    fn provenance_of_bytes(&self, path: &Path, bytes: &Path) -> io::Result<Provenance>;

    /// Reads now what the first answer would otherwise wait for (an index of the database).
    fn warm(&self) {}
}

/// The kind of package database a filesystem root has. dpkg's is taken when there is one (a
/// Debian system with rpm installed keeps an rpm database of foreign packages beside it), else
/// rpm's sqlite database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dpkg,
    Rpm,
}

impl Kind {
    /// The database `root` has, if any this build reads.
    pub fn of(root: &Path) -> Option<Kind> {
        if dpkg::Dpkg::present(root) {
            Some(Kind::Dpkg)
        } else if rpm::Rpm::database(root).is_some() {
            Some(Kind::Rpm)
        } else {
            None
        }
    }

    /// The files whose modification shows that the package manager changed the database under
    /// `root`, each with whether it must exist (dpkg: `status` and `info/`; rpm: the sqlite
    /// file and its write-ahead log, which a committed transaction writes first).
    pub fn stamp_files(self, root: &Path) -> Vec<(PathBuf, bool)> {
        match self {
            Kind::Dpkg => vec![
                (root.join("var/lib/dpkg/status"), true),
                (root.join("var/lib/dpkg/info"), true),
            ],
            Kind::Rpm => match rpm::Rpm::database(root) {
                Some(db) => {
                    let mut wal = db.clone().into_os_string();
                    wal.push("-wal");
                    vec![(db, true), (PathBuf::from(wal), false)]
                }
                None => vec![(root.join(rpm::DB_PATHS[0]), true)],
            },
        }
    }

    /// The database of this kind under `root`; files over `hash_budget` bytes are not hashed.
    pub fn open(self, root: &Path, hash_budget: u64) -> Option<Arc<dyn PackageDb>> {
        Some(match self {
            Kind::Dpkg => Arc::new(dpkg::Dpkg::new(root).with_hash_budget(hash_budget)),
            Kind::Rpm => Arc::new(rpm::Rpm::new(root)?.with_hash_budget(hash_budget)),
        })
    }
}

/// The package database of this machine, when it has one this build can read; files over
/// `hash_budget` bytes are not hashed (`checksum_skipped`).
pub fn system(hash_budget: u64) -> Option<Arc<dyn PackageDb>> {
    let root = Path::new("/");
    Kind::of(root)?.open(root, hash_budget)
}

/// Bytes read at a time when a file's digest is taken.
const DIGEST_CHUNK: usize = 64 * 1024;

/// The hex digest `D` of the file's bytes, read `DIGEST_CHUNK` at a time; `None` when there
/// are more than `budget`.
pub(crate) fn digest_file<D: sha2::Digest>(path: &Path, budget: u64) -> io::Result<Option<String>> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)?;
    if file.metadata()?.len() > budget {
        return Ok(None);
    }
    let mut hasher = D::new();
    let mut buf = vec![0u8; DIGEST_CHUNK];
    let mut total = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        total += n as u64;
        if total > budget {
            return Ok(None);
        }
        hasher.update(&buf[..n]);
    }
    Ok(Some(
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    ))
}

/// `path` (absolute, inside `root`) with every symbolic link resolved as a process whose root is
/// `root` resolves it: an absolute target starts again at `root`, and `..` never leaves it.
/// `root` may be a path that only the daemon can follow (`/proc/self/fd/<n>` of another mount
/// namespace's root), where `fs::canonicalize` would come out at the daemon's `/`. With
/// `keep_last`, the last component is not followed (the link itself).
pub fn resolve_in(root: &Path, path: &str, keep_last: bool) -> std::io::Result<String> {
    /// Links followed at most (the kernel's `MAXSYMLINKS`).
    const MAX_LINKS: u32 = 40;
    let mut todo: std::collections::VecDeque<String> = path
        .split('/')
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect();
    let mut done: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(c) = todo.pop_front() {
        match c.as_str() {
            "." => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        let mut at = root.to_path_buf();
        at.extend(done.iter());
        at.push(&c);
        let meta = std::fs::symlink_metadata(&at)?;
        if !meta.file_type().is_symlink() || (keep_last && todo.is_empty()) {
            done.push(c);
            continue;
        }
        links += 1;
        if links > MAX_LINKS {
            return Err(std::io::Error::other("too many levels of symbolic links"));
        }
        let target = std::fs::read_link(&at)?;
        let target = target
            .to_str()
            .ok_or_else(|| std::io::Error::other("a link's target is not UTF-8"))?;
        if target.starts_with('/') {
            done.clear();
        }
        for t in target.split('/').filter(|t| !t.is_empty()).rev() {
            todo.push_front(t.to_owned());
        }
    }
    Ok(format!("/{}", done.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_kind_of_a_root() {
        let root = std::env::temp_dir().join(format!("detector-kind-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("var/lib/rpm")).unwrap();
        assert_eq!(
            Kind::of(&root),
            None,
            "an empty rpm directory is no database"
        );
        std::fs::write(root.join("var/lib/rpm/Packages"), "Berkeley DB").unwrap();
        assert_eq!(Kind::of(&root), None, "Berkeley DB is not read");
        std::fs::write(root.join("var/lib/rpm/rpmdb.sqlite"), "").unwrap();
        assert_eq!(Kind::of(&root), Some(Kind::Rpm));
        let files: Vec<PathBuf> = Kind::Rpm
            .stamp_files(&root)
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(
            files,
            [
                root.join("var/lib/rpm/rpmdb.sqlite"),
                root.join("var/lib/rpm/rpmdb.sqlite-wal")
            ]
        );
        std::fs::create_dir_all(root.join("usr/lib/sysimage/rpm")).unwrap();
        std::fs::write(root.join("usr/lib/sysimage/rpm/rpmdb.sqlite"), "").unwrap();
        assert_eq!(
            rpm::Rpm::database(&root),
            Some(root.join("usr/lib/sysimage/rpm/rpmdb.sqlite"))
        );
        std::fs::create_dir_all(root.join("var/lib/dpkg/info")).unwrap();
        assert_eq!(Kind::of(&root), Some(Kind::Dpkg), "dpkg's first");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn links_resolve_inside_the_root_never_out_of_it() {
        use std::os::unix::fs::symlink;
        let root = std::env::temp_dir().join(format!("detector-resolve-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::fs::write(root.join("usr/lib/libx.so.1.2"), b"x").unwrap();
        symlink("libx.so.1.2", root.join("usr/lib/libx.so.1")).unwrap();
        symlink("usr/lib", root.join("lib")).unwrap();
        // An absolute target and `..` past the top stay in the root.
        symlink("/lib/libx.so.1", root.join("abs")).unwrap();
        symlink("../../../usr/lib/libx.so.1", root.join("usr/up")).unwrap();
        let r = |p: &str, keep| resolve_in(&root, p, keep).unwrap();
        assert_eq!(r("/lib/libx.so.1", false), "/usr/lib/libx.so.1.2");
        assert_eq!(r("/lib/libx.so.1", true), "/usr/lib/libx.so.1");
        assert_eq!(r("/abs", false), "/usr/lib/libx.so.1.2");
        assert_eq!(r("/usr/up", false), "/usr/lib/libx.so.1.2");
        assert!(resolve_in(&root, "/lib/missing", false).is_err());
        symlink("loop", root.join("loop")).unwrap();
        assert!(resolve_in(&root, "/loop", false).is_err());
        let _ = std::fs::remove_dir_all(&root);
    }
}
