//! The package databases the daemon asks while it runs: the host's, and one per other
//! filesystem root a process mapped a file from (`Library.root`). Under each root the database
//! is dpkg's when it has one, else rpm's (`super::Kind::of`). A database is read again from
//! scratch once its package manager has changed it (dpkg: its `status` or `info/`; rpm: its
//! sqlite file or the file's write-ahead log: a package was installed, upgraded or removed), so
//! that answers never come from an index or a checksum older than the database. One verifier serves the enrichment pool and the watch of the places code lives, so
//! the host's index exists once; the daemon builds it at start ([`Verifier::warm`]): built on the
//! first question instead, it held the first alerts about 80 ms (the bench's latency p99 went
//! from 1.8 to 24–64 ms).
use crate::capture::names;
use std::{
    collections::HashMap,
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use super::{Kind, PackageDb, Provenance, NO_PACKAGE_DATABASE, PROVENANCE_UNKNOWN};

/// Other roots whose databases are kept; past it the oldest are forgotten.
const ROOTS: usize = 16;
/// The file at the path is no longer the version that was mapped: the bytes the process ran
/// cannot be read there any more.
pub const CHANGED_SINCE_MAPPED: &str = "changed_since_mapped";

/// When the package manager last changed its database under a root: the kind of database, and
/// the modification time (s, ns) and size of each of its files (`Kind::stamp_files`).
type Stamp = (Kind, Vec<(i64, i64, u64)>);

struct Db {
    stamp: Stamp,
    db: Arc<dyn PackageDb>,
    /// The root directory held open (`O_PATH`), which the database's paths go through
    /// (`/proc/self/fd/<n>`): the root of a process that has exited stays readable.
    _root: Option<fs::File>,
}

/// A root directory by identity (device, inode): the same root reached through different
/// paths (`/proc/<pid>/root` of two processes, a descriptor) is one database.
type RootId = (u64, u64);

pub struct Verifier {
    hash_budget: u64,
    dbs: Mutex<HashMap<RootId, Db>>,
}

/// Opens the directory `root` as a handle only (`O_PATH`), for paths that go through it
/// (`/proc/self/fd/<n>`, returned with it).
pub fn hold(root: &Path) -> Option<(fs::File, PathBuf)> {
    use std::os::{fd::AsRawFd as _, unix::fs::OpenOptionsExt as _};
    let dir = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(root)
        .ok()?;
    let path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    Some((dir, path))
}

/// The stamp of the database under `root`; `None` when it has none, or a file the stamp
/// needs is missing.
fn stamp(root: &Path) -> Option<Stamp> {
    let kind = Kind::of(root)?;
    let mut times = Vec::new();
    for (file, required) in kind.stamp_files(root) {
        match fs::metadata(&file) {
            Ok(m) => times.push((m.mtime(), m.mtime_nsec(), m.size())),
            Err(_) if !required => times.push((0, 0, 0)),
            Err(_) => return None,
        }
    }
    Some((kind, times))
}

impl Verifier {
    /// Files over `hash_budget` bytes are not hashed (`checksum_skipped`).
    pub fn new(hash_budget: u64) -> Self {
        Verifier {
            hash_budget,
            dbs: Mutex::new(HashMap::new()),
        }
    }

    /// The host's database, current with its package manager's last change; `None` when it
    /// has none.
    pub fn host(&self) -> Option<Arc<dyn PackageDb>> {
        self.db(Path::new("/"))
    }

    /// Builds the host database's index now, so that the first question does not wait for it.
    pub fn warm(&self) {
        if let Some(db) = self.host() {
            db.warm();
        }
    }

    /// Forgets the host's database, so that the next question reads it again: for a change to
    /// its files that the stamps do not show (a dpkg checksum list edited in place).
    pub fn reread_host(&self) {
        let Ok(meta) = fs::metadata("/") else { return };
        let mut dbs = self.dbs.lock().unwrap_or_else(|e| e.into_inner());
        dbs.remove(&(meta.dev(), meta.ino()));
    }

    /// The database under `root`, current with its package manager's last change; `None` when
    /// it has none.
    fn db(&self, root: &Path) -> Option<Arc<dyn PackageDb>> {
        let meta = fs::metadata(root).ok()?;
        let id = (meta.dev(), meta.ino());
        let now = stamp(root)?;
        let mut dbs = self.dbs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(db) = dbs.get(&id) {
            if db.stamp == now {
                return Some(Arc::clone(&db.db));
            }
        }
        let host = fs::metadata("/").ok().map(|m| (m.dev(), m.ino()));
        if dbs.len() >= ROOTS && !dbs.contains_key(&id) {
            // Keep the host's; forget another root's.
            let other = dbs.keys().find(|k| Some(**k) != host).copied();
            if let Some(k) = other {
                dbs.remove(&k);
            }
        }
        // Another root is held open, so that the database stays readable after the process
        // whose root it is has gone.
        let (held, through) = if Some(id) == host {
            (None, root.to_owned())
        } else {
            let (dir, path) = hold(root)?;
            (Some(dir), path)
        };
        let db = now.0.open(&through, self.hash_budget)?;
        dbs.insert(
            id,
            Db {
                stamp: now,
                db: Arc::clone(&db),
                _root: held,
            },
        );
        Some(db)
    }

    /// What the package database under `root` (the host's when `None`) says of the file at
    /// `path` (inside that root), whose bytes are read at `bytes` (when it is `path` itself:
    /// inside the root). A database that is missing
    /// or cannot answer gives an unverified answer that says why.
    pub fn verify(&self, root: Option<&str>, path: &str, bytes: &Path) -> Provenance {
        let root = Path::new(root.unwrap_or("/"));
        let Some(db) = self.db(root) else {
            return Provenance {
                reasons: vec![NO_PACKAGE_DATABASE],
                ..Provenance::default()
            };
        };
        // The same path: the file is read inside the root.
        let path_bytes = names::path(path);
        let answer = if bytes == path_bytes {
            db.provenance(&path_bytes)
        } else {
            db.provenance_of_bytes(&path_bytes, bytes)
        };
        answer.unwrap_or_else(|e| {
            log::debug!("{path}: package provenance: {e}");
            Provenance {
                reasons: vec![PROVENANCE_UNKNOWN],
                ..Provenance::default()
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosts_libc_verifies_and_a_copy_does_not() {
        if !super::super::dpkg::Dpkg::present(Path::new("/")) {
            eprintln!("no dpkg database on this machine: skipped");
            return;
        }
        let v = Verifier::new(u64::MAX);
        let libc = "/usr/lib/x86_64-linux-gnu/libc.so.6";
        if !Path::new(libc).exists() {
            eprintln!("no {libc} on this machine: skipped");
            return;
        }
        let p = v.verify(None, libc, Path::new(libc));
        assert!(p.verified, "{p:?}");
        assert!(p.package.as_deref().unwrap_or("").starts_with("libc6"));
        let dir = std::env::temp_dir().join(format!("detector-verifier-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let copy = dir.join("libc-copy.so");
        fs::copy(libc, &copy).unwrap();
        let copy = copy.to_str().unwrap();
        let p = v.verify(None, copy, Path::new(copy));
        assert!(!p.verified);
        assert_eq!(p.reasons, [super::super::NOT_FROM_PACKAGE]);
        // The packaged path, other bytes: modified.
        let p = v.verify(None, libc, Path::new("/etc/hostname"));
        assert_eq!(p.reasons, [super::super::MODIFIED_SINCE_PACKAGE]);
        let _ = fs::remove_dir_all(&dir);
        let p = v.verify(Some("/nonexistent-root"), libc, Path::new(libc));
        assert_eq!(p.reasons, [NO_PACKAGE_DATABASE]);
    }
}
