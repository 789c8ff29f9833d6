//! Where a process's files are for the daemon: a path the kernel built for a process in another
//! mount namespace is a path in that namespace, and a chrooted process's packages are those of
//! its root. Decided from `/proc/<pid>/ns/mnt` and `/proc/<pid>/root` against the daemon's own,
//! never from the path itself; and a file is only read there once its device and inode are
//! those the kernel reported (`same_file`).
use std::{fs, os::unix::fs::MetadataExt as _, sync::OnceLock};

use detector_common::FileInfo;

/// How a process sees the filesystem, relative to the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    /// As the daemon does: the kernel's paths are the daemon's.
    Same,
    /// Through `root` (`/proc/<pid>/root`); the kernel's path of a file under it is `path`.
    Root { root: String, path: String },
    /// Unknown: neither the process nor its parent can be looked at any more.
    Unknown,
}

/// A process's mount namespace and the (device, inode) of its root directory.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Place {
    mnt_ns: String,
    root: (u64, u64),
}

fn place(proc_dir: &str) -> Option<Place> {
    let mnt_ns = fs::read_link(format!("{proc_dir}/ns/mnt")).ok()?;
    let root = fs::metadata(format!("{proc_dir}/root")).ok()?;
    Some(Place {
        mnt_ns: mnt_ns.display().to_string(),
        root: (root.dev(), root.ino()),
    })
}

fn own_place() -> Option<&'static Place> {
    static OWN: OnceLock<Option<Place>> = OnceLock::new();
    OWN.get_or_init(|| place("/proc/self")).as_ref()
}

/// How process `pid` sees the file the kernel named `path`. When the process is gone its
/// parent's view is taken (a shell in the namespace that ran it): whichever view is taken, the
/// file found there is compared with the kernel's facts before it is read. The root given is the
/// parent's `/proc/<ppid>/root` when the parent sees as the process does.
pub fn of(pid: u32, ppid: u32, path: &str) -> View {
    let Some(own) = own_place() else {
        return View::Same;
    };
    for p in [pid, ppid] {
        if p == 0 {
            continue;
        }
        let dir = format!("/proc/{p}");
        if let Some(theirs) = place(&dir) {
            if theirs == *own {
                return View::Same;
            }
            // The files are read later, off the reader's path: through the parent when it is
            // in the same place, as it most often outlives what it ran (a shell, ssh -V).
            let parent = format!("/proc/{ppid}");
            let dir = if p == pid && ppid != 0 && place(&parent).as_ref() == Some(&theirs) {
                parent
            } else {
                dir
            };
            return view(own, &theirs, &dir, path);
        }
    }
    View::Unknown
}

/// `theirs` (the place of the process at `dir`) against the daemon's.
fn view(own: &Place, theirs: &Place, dir: &str, path: &str) -> View {
    let root = format!("{dir}/root");
    if theirs.mnt_ns != own.mnt_ns {
        // The kernel built the path up to the root of that namespace.
        return View::Root {
            root,
            path: path.to_owned(),
        };
    }
    if theirs.root == own.root {
        return View::Same;
    }
    // A chroot in the daemon's namespace: the kernel's path is the daemon's; inside the root it
    // is the path below the root's directory.
    let Ok(dir) = fs::read_link(&root) else {
        return View::Same;
    };
    let dir = dir.display().to_string();
    match path.strip_prefix(dir.trim_end_matches('/')) {
        Some(rest) if rest.starts_with('/') => View::Root {
            root,
            path: rest.to_owned(),
        },
        _ => View::Same,
    }
}

/// Whether `meta` is the file the kernel described in `info`: the same device and inode. Btrfs
/// subvolumes and overlayfs report a device of their own to stat(2), not their superblock's:
/// there the inode and the modification time must match.
pub fn same_file(meta: &fs::Metadata, info: &FileInfo, fs_name: &str) -> bool {
    if meta.ino() != info.ino {
        return false;
    }
    let dev = meta.dev();
    let kernel_dev = ((libc::major(dev) as u64) << 20) | libc::minor(dev) as u64;
    kernel_dev == info.dev as u64
        || (matches!(fs_name, "btrfs" | "overlay") && meta.mtime() == info.mtime_sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(ns: &str, root: (u64, u64)) -> Place {
        Place {
            mnt_ns: ns.into(),
            root,
        }
    }

    #[test]
    fn another_mount_namespace_is_seen_through_the_process_root() {
        let own = place("mnt:[4026531841]", (8, 2));
        let theirs = place("mnt:[4026532999]", (8, 2));
        assert_eq!(
            view(&own, &theirs, "/proc/77", "/usr/lib/ld.so"),
            View::Root {
                root: "/proc/77/root".into(),
                path: "/usr/lib/ld.so".into()
            }
        );
        assert_eq!(view(&own, &own, "/proc/77", "/usr/lib/ld.so"), View::Same);
    }

    #[test]
    fn this_process_sees_as_the_daemon_and_a_gone_one_is_unknown() {
        let me = std::process::id();
        assert_eq!(of(me, 0, "/usr/bin/true"), View::Same);
        // Pids above the kernel's maximum (4194304) are never in use.
        assert_eq!(of(4_194_305, 4_194_306, "/x"), View::Unknown);
        assert_eq!(of(4_194_305, me, "/x"), View::Same, "the parent's view");
    }

    #[test]
    fn identity_is_device_and_inode() {
        let meta = fs::metadata("/proc/self/exe").unwrap();
        let dev = meta.dev();
        let mut info = FileInfo {
            ino: meta.ino(),
            dev: ((libc::major(dev) << 20) | libc::minor(dev)) as u32,
            mtime_sec: meta.mtime(),
            ..FileInfo::default()
        };
        assert!(same_file(&meta, &info, "ext4"));
        info.dev += 1;
        assert!(!same_file(&meta, &info, "ext4"));
        assert!(same_file(&meta, &info, "btrfs"), "inode and mtime on btrfs");
        info.ino += 1;
        assert!(!same_file(&meta, &info, "btrfs"));
    }
}
