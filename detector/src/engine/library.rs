//! Enrichment: what a library file on disk is, and whether it sits where a non-root user could
//! have put or changed it.
use crate::capture::names;
use std::{fs, os::unix::fs::MetadataExt as _, path::Path};

use serde::Serialize;

use detector_common::{
    UNSAFE_MEMORY_FS, UNSAFE_NOT_ROOT_OWNED, UNSAFE_UNLINKED, UNSAFE_WRITABLE_BY_OTHERS,
};

use crate::{
    capture::decode::{File, Header},
    engine::file_view::{self, View},
};

/// Directories where the distribution's root-owned libraries live.
const SYSTEM_DIRS: &[&str] = &[
    "/lib/",
    "/lib64/",
    "/usr/lib/",
    "/usr/lib64/",
    "/usr/lib32/",
    "/lib32/",
];
/// World-writable places a dropped library typically comes from.
const WORLD_WRITABLE_DIRS: &[&str] =
    &["/tmp/", "/var/tmp/", "/dev/shm/", "/run/shm/", "/run/user/"];
const TMPFS_MAGIC: i64 = 0x0102_1994;

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Library {
    pub path: String,
    pub exists: bool,
    #[serde(rename = "uid", skip_serializing_if = "Option::is_none")]
    pub owner_uid: Option<u32>,
    /// Permission bits in octal, e.g. "0644".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Why the library is unsafe (empty when it is not).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unsafe_reasons: Vec<&'static str>,
    /// From the kernel, when it mapped the file: inode, device (major:minor), filesystem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inode: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fs: Option<&'static str>,
    /// From reading the file (when it can still be read): its SHA-256, the credential APIs it
    /// defines (interposes), and whether it runs code at load (constructors).
    #[serde(
        rename = "hash",
        serialize_with = "sha256_object",
        skip_serializing_if = "Option::is_none"
    )]
    pub sha256: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub constructors: Option<bool>,
    /// The package that installed the file, as the package database names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// Whether the package database vouches for the file: a package lists it and its bytes
    /// match the package's record. Absent when it was not asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    /// What the file's enrichment left out, and why (over the hashing budget, the analysis
    /// late or its queue full).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub enrichment_skipped: Vec<crate::engine::enrich::Skipped>,
    /// Where the file's bytes can be read when `path` no longer leads to them (a deleted file or
    /// a memfd still mapped: /proc/<pid>/map_files/<range>).
    #[serde(skip)]
    pub read_from: Option<String>,
    /// The filesystem root of the process that mapped the file when it is not the daemon's
    /// (another mount namespace, a chroot: `/proc/<pid>/root`): `path` is in that root, and
    /// package questions are asked of the package database under it.
    #[serde(skip)]
    pub root: Option<String>,
    /// The file itself, held open when it was found under another process's root: `read_from`
    /// is then `/proc/self/fd/<n>`, so that what is read later is the file the kernel mapped
    /// even if that path has since been made to lead elsewhere.
    #[serde(skip)]
    pub pinned: Option<Pinned>,
    /// That process's root directory, held open when `root` is another process's: `root` is
    /// then `/proc/self/fd/<n>`, so that its package database can still be asked once the
    /// process has exited.
    #[serde(skip)]
    pub pinned_root: Option<Pinned>,
    /// The kernel's seen-cache key of the file version it reported mapped (a live mapping of a
    /// file only root controls): how the daemon tells the kernel to report that version again.
    #[serde(skip)]
    pub seen_key: Option<detector_common::SeenKey>,
}

/// An open file shared by the copies of a library (closed with the last).
#[derive(Debug, Clone)]
pub struct Pinned(std::sync::Arc<fs::File>);

impl PartialEq for Pinned {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Pinned {}

/// Opens `path` (never blocking on a FIFO, never through a final symbolic link) when it is
/// still the file the kernel described.
fn pin(path: &str, f: &File) -> Option<(Pinned, String)> {
    use std::os::{fd::AsRawFd as _, unix::fs::OpenOptionsExt as _};
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(names::path(path))
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || !file_view::same_file(&meta, &f.info, f.fs()) {
        return None;
    }
    let fd = format!("/proc/self/fd/{}", file.as_raw_fd());
    Some((Pinned(std::sync::Arc::new(file)), fd))
}

/// Holds the directory `path` open as a handle only (`O_PATH`); the path through it.
fn pin_dir(path: &str) -> Option<(Pinned, String)> {
    use std::os::{fd::AsRawFd as _, unix::fs::OpenOptionsExt as _};
    let dir = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(path)
        .ok()?;
    let through = format!("/proc/self/fd/{}", dir.as_raw_fd());
    Some((Pinned(std::sync::Arc::new(dir)), through))
}

/// `unsafe_reasons` that come from the package database, not from where the file is or who
/// can change it.
pub const PROVENANCE_REASONS: &[&str] = &[
    crate::engine::provenance::NOT_FROM_PACKAGE,
    crate::engine::provenance::MODIFIED_SINCE_PACKAGE,
];

/// ECS `hash.sha256`.
fn sha256_object<S: serde::Serializer>(sha: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    serde_json::json!({ "sha256": sha }).serialize(s)
}

impl Library {
    /// Looks at `path` on disk now. A bare name (no '/') is searched by the loader in its
    /// default directories; it is reported as given.
    pub fn inspect(path: &str) -> Self {
        Library::inspect_at(path, path, 0)
    }

    /// `inspect` of `path` as a process sees it, its file being at `on_disk` for the daemon;
    /// `root_uid` is the host uid its user namespace maps its root to (0 in the host's): files
    /// and directories that uid owns are its root's.
    fn inspect_at(path: &str, on_disk: &str, root_uid: u32) -> Self {
        let meta = if path.contains('/') {
            fs::metadata(names::path(on_disk)).ok()
        } else {
            None
        };
        let mut lib = Library {
            path: path.to_owned(),
            exists: meta.is_some(),
            owner_uid: meta.as_ref().map(|m| m.uid()),
            mode: meta.as_ref().map(|m| format!("{:04o}", m.mode() & 0o7777)),
            ..Default::default()
        };
        if WORLD_WRITABLE_DIRS.iter().any(|d| path.starts_with(d)) {
            lib.unsafe_reasons.push("world_writable_location");
        }
        if let Some(m) = &meta {
            if m.uid() != 0 && m.uid() != root_uid {
                lib.unsafe_reasons.push("owned_by_non_root");
            }
            if m.mode() & 0o022 != 0 {
                lib.unsafe_reasons.push("group_or_world_writable");
            }
            if parent_writable_by_non_root(&names::path(on_disk), root_uid) {
                lib.unsafe_reasons.push("directory_writable_by_non_root");
            }
            if on_tmpfs(on_disk) {
                lib.unsafe_reasons.push("tmpfs");
            }
        }
        lib
    }

    /// A file the kernel mapped in the process of `hdr`: its facts as the kernel saw them (the
    /// file may be gone now, or never have had a name: a memfd). A named file is looked at
    /// where that process sees it (`file_view`), and only when it is still the file the kernel
    /// mapped; otherwise it is `replaced_since_mapped` and not read.
    ///
    /// Ownership is judged in the process's user namespace: a file owned by the host uid its
    /// namespace maps root to (a rootless container's image, a tree built by `mmdebstrap
    /// --mode=unshare`) is its root's, as a root-owned file is the host's.
    pub fn from_kernel(f: &File, hdr: &Header) -> Self {
        Library::from_view(f, hdr, || file_view::of(hdr.pid, hdr.ppid, &f.path))
    }

    /// As `from_kernel`, for a process known to have been chrooted into the directory `root`
    /// (a path of the daemon's) when it mapped the file, which the kernel named by the daemon's
    /// path: the file is looked at under that root, as the path below it. For a process gone
    /// before its view could be read, whose root an image builder's other processes showed.
    pub fn from_kernel_under(f: &File, hdr: &Header, root: &str) -> Self {
        Library::from_view(f, hdr, || match file_view::below(&f.path, root) {
            Some(path) => View::Root {
                root: root.to_owned(),
                path: path.to_owned(),
            },
            None => View::Same,
        })
    }

    fn from_view(f: &File, hdr: &Header, view: impl FnOnce() -> View) -> Self {
        let root_uid = file_view::user_ns_root(hdr.pid, hdr.ppid);
        let mut lib = if f.is_memfd() || f.is_deleted() {
            Library {
                path: f.path.clone(),
                ..Default::default()
            }
        } else {
            Library::mapped_file(f, view(), root_uid)
        };
        lib.owner_uid = Some(f.info.uid);
        lib.mode = Some(format!("{:04o}", f.info.mode & 0o7777));
        lib.inode = Some(f.info.ino);
        lib.device = Some(format!("{}:{}", f.info.dev >> 20, f.info.dev & 0xfffff));
        lib.fs = Some(f.fs());
        lib.seen_key = Some(detector_common::SeenKey {
            ino: f.info.ino,
            mtime_sec: f.info.mtime_sec,
            dev: f.info.dev,
            _pad: 0,
        });
        let mut add = |r: &'static str| {
            if !lib.unsafe_reasons.contains(&r) {
                lib.unsafe_reasons.push(r);
            }
        };
        let facts = f.info.unsafe_facts();
        if f.is_memfd() {
            add("memfd");
        } else if facts & UNSAFE_UNLINKED != 0 {
            add("deleted");
        }
        if facts & UNSAFE_MEMORY_FS != 0 {
            add("tmpfs");
        }
        if facts & UNSAFE_NOT_ROOT_OWNED != 0 && f.info.uid != root_uid {
            add("owned_by_non_root");
        }
        if facts & UNSAFE_WRITABLE_BY_OTHERS != 0 {
            add("group_or_world_writable");
        }
        lib
    }

    /// The named file the kernel mapped, as `view` shows it or, when that is another file (the
    /// process changed its namespace or root after the mapping), as the daemon sees it.
    fn mapped_file(f: &File, view: View, root_uid: u32) -> Self {
        let (root, path) = match view {
            View::Root { root, path } => (Some(root), path),
            View::Same | View::Unknown => (None, f.path.clone()),
        };
        let mut places = vec![(root.clone(), path.clone())];
        if root.is_some() {
            places.push((None, f.path.clone()));
        }
        let mut other_file = false;
        for (root, path) in places {
            let on_disk = match &root {
                Some(root) => format!("{root}{path}"),
                None => path.clone(),
            };
            match fs::metadata(names::path(&on_disk)) {
                Ok(meta) if file_view::same_file(&meta, &f.info, f.fs()) => {
                    let mut lib = Library::inspect_at(&path, &on_disk, root_uid);
                    if root.is_some() {
                        // Another root's path may be made to lead elsewhere before the file is
                        // read (a bind mount in its namespace): the file is held open.
                        match pin(&on_disk, f) {
                            Some((pinned, fd)) => {
                                lib.pinned = Some(pinned);
                                lib.read_from = Some(fd);
                            }
                            None => lib.read_from = Some(on_disk),
                        }
                    }
                    lib.root = root;
                    if let Some(r) = &lib.root {
                        if let Some((held, through)) = pin_dir(r) {
                            lib.pinned_root = Some(held);
                            lib.root = Some(through);
                        }
                    }
                    return lib;
                }
                Ok(_) => {
                    if let Some(lib) = Self::overlay_file(f, root.as_deref(), &path, root_uid) {
                        return lib;
                    }
                    other_file = true;
                }
                // In a container, a file mapped from an image layer may be named by its path
                // inside the layer.
                Err(_) if root.is_some() => {
                    if let Some(lib) = Self::overlay_file(f, root.as_deref(), &path, root_uid) {
                        return lib;
                    }
                }
                Err(_) => {}
            }
        }
        Library {
            path,
            root,
            unsafe_reasons: if other_file {
                vec!["replaced_since_mapped"]
            } else {
                Vec::new()
            },
            ..Default::default()
        }
    }

    /// The file the kernel mapped from an overlay mount, found in the mount's layers
    /// (`file_view::overlay_layer`) and held open, named by its path in the process's view;
    /// `root` is the process's (`/proc/<pid>/root`, whose `mountinfo` is read), or the daemon's
    /// when `None`.
    fn overlay_file(f: &File, root: Option<&str>, path: &str, root_uid: u32) -> Option<Self> {
        let mountinfo = match root {
            Some(r) => format!("{}/mountinfo", r.strip_suffix("/root")?),
            None => "/proc/self/mountinfo".to_owned(),
        };
        let text = fs::read_to_string(mountinfo).ok()?;
        let (path, layer) = file_view::overlay_layer(&text, path, &f.info)?;
        let (pinned, fd) = pin(&layer, f)?;
        let mut lib = Library::inspect_at(&path, &layer, root_uid);
        lib.pinned = Some(pinned);
        lib.read_from = Some(fd);
        lib.root = root.map(str::to_owned);
        if let Some(r) = &lib.root {
            if let Some((held, through)) = pin_dir(r) {
                lib.pinned_root = Some(held);
                lib.root = Some(through);
            }
        }
        Some(lib)
    }

    /// Where the file is or who can change it lets a non-root user have put it there or
    /// changed it (the package database's reasons are not counted: see `is_unverified`).
    pub fn is_unsafe(&self) -> bool {
        self.unsafe_reasons
            .iter()
            .any(|r| !PROVENANCE_REASONS.contains(r))
    }

    /// The package database does not vouch for the file: no package lists it, or its bytes
    /// differ from the package's record.
    pub fn is_unverified(&self) -> bool {
        self.verified == Some(false)
            || self
                .unsafe_reasons
                .iter()
                .any(|r| PROVENANCE_REASONS.contains(r))
    }

    /// A root-owned library in a system directory, that only root can change, and that the
    /// package database does not disown.
    pub fn is_system(&self) -> bool {
        self.exists
            && self.owner_uid == Some(0)
            && !self.is_unsafe()
            && !self.is_unverified()
            && SYSTEM_DIRS.iter().any(|d| self.path.starts_with(d))
    }
}

fn parent_writable_by_non_root(path: &Path, root_uid: u32) -> bool {
    let Some(meta) = path.parent().and_then(|p| fs::metadata(p).ok()) else {
        return false;
    };
    let sticky = meta.mode() & 0o1000 != 0;
    (meta.uid() != 0 && meta.uid() != root_uid) || (meta.mode() & 0o022 != 0 && !sticky)
}

fn on_tmpfs(path: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(names::bytes(path)) else {
        return false;
    };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out-pointer.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type as i64 == TMPFS_MAGIC
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_library_is_system() {
        let libc_path = [
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
        ]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("libc present");
        let lib = Library::inspect(libc_path);
        assert!(lib.exists);
        assert!(lib.is_system(), "{lib:?}");
    }

    #[test]
    fn tmp_library_is_unsafe() {
        let lib = Library::inspect("/tmp/nonexistent-detector-test/x.so");
        assert!(!lib.exists);
        assert_eq!(lib.unsafe_reasons, ["world_writable_location"]);
        assert!(!lib.is_system());
    }

    fn kernel_file(path: &str, meta: &fs::Metadata) -> File {
        let dev = meta.dev();
        File {
            path: path.into(),
            path_truncated: false,
            info: detector_common::FileInfo {
                ino: meta.ino(),
                mtime_sec: meta.mtime(),
                dev: (libc::major(dev) << 20) | libc::minor(dev),
                mode: meta.mode(),
                uid: meta.uid(),
                nlink: 1,
                fs_magic: 0xef53,
            },
        }
    }

    fn own_header() -> Header {
        Header {
            ktime_ns: 1,
            pid: std::process::id(),
            tid: std::process::id(),
            ppid: 0,
            uid: 0,
            gid: 0,
            comm: "test".into(),
        }
    }

    #[test]
    fn a_mapped_file_is_read_only_while_it_is_the_one_the_kernel_mapped() {
        let exe = fs::read_link("/proc/self/exe").unwrap();
        let exe = exe.to_str().unwrap();
        let meta = fs::metadata(exe).unwrap();
        let lib = Library::from_kernel(&kernel_file(exe, &meta), &own_header());
        assert!(lib.exists, "{lib:?}");
        assert!(!lib.unsafe_reasons.contains(&"replaced_since_mapped"));
        assert_eq!(
            (lib.root, lib.read_from),
            (None, None),
            "the daemon's own view"
        );

        // Another file is at the path now.
        let mut f = kernel_file(exe, &meta);
        f.info.ino += 1;
        let lib = Library::from_kernel(&f, &own_header());
        assert!(!lib.exists, "{lib:?}");
        assert!(lib.unsafe_reasons.contains(&"replaced_since_mapped"));
        assert!(crate::engine::enrich::source_of(&lib).is_none(), "not read");
    }

    #[test]
    fn a_file_in_another_root_is_read_there() {
        let exe = fs::read_link("/proc/self/exe").unwrap();
        let exe = exe.to_str().unwrap();
        let meta = fs::metadata(exe).unwrap();
        let root = format!("/proc/{}/root", std::process::id());
        let view = View::Root {
            root: root.clone(),
            path: exe.into(),
        };
        let lib = Library::mapped_file(&kernel_file(exe, &meta), view.clone(), 0);
        assert!(lib.exists);
        assert_eq!(lib.path, exe);
        // The root held open: the same directory as the process's root.
        let held = lib.root.clone().unwrap();
        assert!(held.starts_with("/proc/self/fd/"), "{held}");
        let (a, b) = (fs::metadata(&held).unwrap(), fs::metadata(&root).unwrap());
        assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()));
        assert!(lib.pinned_root.is_some());
        let pinned = lib.read_from.clone().unwrap();
        assert!(pinned.starts_with("/proc/self/fd/"), "{pinned}");
        assert_eq!(
            fs::metadata(&pinned).unwrap().ino(),
            meta.ino(),
            "the file held open"
        );
        drop(lib);
        let mut f = kernel_file(exe, &meta);
        f.info.ino += 1;
        let lib = Library::mapped_file(&f, view, 0);
        assert!(!lib.exists && lib.read_from.is_none());
        assert_eq!(lib.unsafe_reasons, ["replaced_since_mapped"]);
    }

    #[test]
    fn a_file_mapped_before_the_process_changed_its_root_is_found_where_the_daemon_sees_it() {
        let exe = fs::read_link("/proc/self/exe").unwrap();
        let exe = exe.to_str().unwrap();
        let meta = fs::metadata(exe).unwrap();
        // Another root with another file at the same path.
        let root = std::env::temp_dir().join(format!("detector-root-{}", std::process::id()));
        let inside = root.join(&exe[1..]);
        fs::create_dir_all(inside.parent().unwrap()).unwrap();
        fs::copy(exe, &inside).unwrap();
        let view = View::Root {
            root: root.display().to_string(),
            path: exe.into(),
        };
        let lib = Library::mapped_file(&kernel_file(exe, &meta), view.clone(), 0);
        let copy =
            Library::mapped_file(&kernel_file(exe, &fs::metadata(&inside).unwrap()), view, 0);
        let _ = fs::remove_dir_all(&root);
        assert!(lib.exists, "{lib:?}");
        assert_eq!((lib.root, lib.read_from), (None, None), "the daemon's view");
        assert!(!lib.unsafe_reasons.contains(&"replaced_since_mapped"));
        assert!(copy.pinned_root.is_some(), "{copy:?}");
        assert!(copy.pinned.is_some(), "{copy:?}");
    }

    #[test]
    fn bare_name_is_reported_as_given() {
        let lib = Library::inspect("libfoo.so");
        assert!(!lib.exists && !lib.is_unsafe() && !lib.is_system());
    }
}
