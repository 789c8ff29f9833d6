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
    let link = fs::read_link(&root).map(|d| d.display().to_string());
    if theirs.mnt_ns != own.mnt_ns {
        // The kernel built the path up to the root of that namespace. A process chrooted
        // within it (an image builder's chroot in a mount namespace of its own) has its root
        // below: `/proc/<pid>/root` names that directory in the namespace, and the file is the
        // path below it.
        let path = in_namespace(link.as_deref().ok(), path);
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
    let Ok(dir) = link else {
        return View::Same;
    };
    match below(path, dir.trim_end_matches('/')) {
        Some(rest) => View::Root {
            root,
            path: rest.to_owned(),
        },
        None => View::Same,
    }
}

/// The kernel's `path` (built up to the root of the process's mount namespace) as the process
/// sees it, its root being `link` in that namespace (`/proc/<pid>/root`'s target): below it when
/// it is under it.
fn in_namespace<'a>(link: Option<&str>, path: &'a str) -> &'a str {
    match link.map(|d| d.trim_end_matches('/')) {
        Some(d) if !d.is_empty() => below(path, d).unwrap_or(path),
        _ => path,
    }
}

/// `path` below the directory `dir` (a trailing `/` aside), as an absolute path.
pub fn below<'a>(path: &'a str, dir: &str) -> Option<&'a str> {
    path.strip_prefix(dir.trim_end_matches('/'))
        .filter(|rest| rest.starts_with('/'))
}

/// The host uid that the user namespace of process `pid` (or of its parent `ppid`, when `pid`
/// is gone) maps its root (uid 0) to: 0 in the host's namespace, and when neither can be read
/// or the namespace has no root. A namespace's maps are written once and never change.
pub fn user_ns_root(pid: u32, ppid: u32) -> u32 {
    for p in [pid, ppid] {
        if p == 0 {
            continue;
        }
        if let Ok(map) = fs::read_to_string(format!("/proc/{p}/uid_map")) {
            return root_in_map(&map).unwrap_or(0);
        }
    }
    0
}

/// The outside uid of inside uid 0 in a `uid_map` ("inside outside count" lines).
fn root_in_map(map: &str) -> Option<u32> {
    map.lines().find_map(|l| {
        let mut f = l.split_whitespace().map(|x| x.parse::<u64>().ok());
        let (inside, outside, count) = (f.next()??, f.next()??, f.next()??);
        (inside == 0 && count > 0).then_some(outside as u32)
    })
}

/// The root directory of a process in another mount namespace, held open (`O_PATH`): that
/// namespace's files stay reachable through it (`/proc/self/fd/<n>`) after the process is gone,
/// as long as the daemon holds it.
#[derive(Debug)]
pub struct HeldRoot {
    _dir: fs::File,
    through: String,
    /// The namespace (`mnt:[4026532…]`).
    pub mnt_ns: String,
}

impl PartialEq for HeldRoot {
    fn eq(&self, other: &Self) -> bool {
        self.through == other.through
    }
}

impl Eq for HeldRoot {}

impl HeldRoot {
    /// The root of process `pid`, or of its parent `ppid` when `pid` is gone, whichever is
    /// found first in another mount namespace than the daemon's. `None` when neither is (both
    /// gone, or the one found sees as the daemon does: a container's shim).
    pub fn of(pid: u32, ppid: u32) -> Option<HeldRoot> {
        let own = own_place()?;
        for p in [pid, ppid] {
            if p == 0 {
                continue;
            }
            let dir = format!("/proc/{p}");
            let Some(theirs) = place(&dir) else {
                continue;
            };
            if theirs.mnt_ns == own.mnt_ns {
                return None;
            }
            // A process exiting has let go of its root before its namespaces: its parent's is
            // tried then.
            let Some((root, through)) = crate::engine::provenance::verifier::hold(
                std::path::Path::new(&format!("{dir}/root")),
            ) else {
                continue;
            };
            return Some(HeldRoot {
                _dir: root,
                through: through.display().to_string(),
                mnt_ns: theirs.mnt_ns,
            });
        }
        None
    }

    /// The root as a directory path of the daemon's.
    pub fn through(&self) -> &str {
        &self.through
    }

    /// Where the daemon reaches `path`, a path inside the root.
    pub fn path(&self, path: &str) -> String {
        format!("{}{path}", self.through)
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

/// The kernel's encoding of a device number (major << 20 | minor).
fn kernel_dev(dev: u64) -> u64 {
    ((libc::major(dev) as u64) << 20) | libc::minor(dev) as u64
}

/// A file the kernel mapped from an overlay mount (a container's image layers). Where the
/// process mapped it by a descriptor, the kernel reports the overlay's own inode, which stat(2)
/// through the mount shows too; but a mapping found through the process's memory (the ELF
/// interpreter the kernel mapped at exec, an mprotect) holds the layer's file: its device and
/// inode are the layer's, and its path the one inside the layer directory. Finds, in the overlay
/// mounts of `mountinfo` (the text of `/proc/<pid>/mountinfo`), the layer file (upper directory
/// first, then the lower ones) at the same place whose device and inode are the kernel's: for
/// `path` on an overlay mount, at its place below the mount point; otherwise at `path` below
/// each layer directory. Returns the file's path as the process sees it and the layer file's
/// path to read it at; `None` when no layer has a file of that identity.
pub fn overlay_layer(mountinfo: &str, path: &str, info: &FileInfo) -> Option<(String, String)> {
    let same = |candidate: &str| {
        fs::symlink_metadata(candidate).is_ok_and(|m| {
            m.file_type().is_file() && m.ino() == info.ino && kernel_dev(m.dev()) == info.dev as u64
        })
    };
    let join = |dir: &str, rest: &str| format!("{}{rest}", dir.trim_end_matches('/'));
    if let Some((mount_point, layers)) = overlay_mount(mountinfo, path) {
        let rest = path
            .strip_prefix(mount_point.trim_end_matches('/'))
            .filter(|r| r.starts_with('/'))?;
        return layers
            .iter()
            .map(|l| join(l, rest))
            .find(|c| same(c))
            .map(|c| (path.to_owned(), c));
    }
    overlay_mounts(mountinfo).find_map(|(mount_point, layers)| {
        layers
            .iter()
            .map(|l| join(l, path))
            .find(|c| same(c))
            .map(|c| (join(&mount_point, path), c))
    })
}

/// Every overlay mount of `mountinfo`: its mount point and its layer directories, upper first.
fn overlay_mounts(mountinfo: &str) -> impl Iterator<Item = (String, Vec<String>)> + '_ {
    mountinfo.lines().filter_map(|line| {
        let (head, tail) = line.split_once(" - ")?;
        let mount_point = unescape(head.split(' ').nth(4)?);
        Some((mount_point, layers(tail)?))
    })
}

/// The layer directories of a mountinfo line's part after ` - `, when it is an overlay's.
fn layers(tail: &str) -> Option<Vec<String>> {
    let mut fields = tail.split(' ');
    if fields.next()? != "overlay" {
        return None;
    }
    let options = fields.nth(1)?;
    let mut upper = Vec::new();
    let mut lower = Vec::new();
    for option in options.split(',') {
        if let Some(dir) = option.strip_prefix("upperdir=") {
            upper.push(unescape(dir));
        } else if let Some(dirs) = option.strip_prefix("lowerdir=") {
            lower.extend(dirs.split(':').filter(|d| !d.is_empty()).map(unescape));
        } else if let Some(dir) = option.strip_prefix("lowerdir+=") {
            lower.push(unescape(dir));
        }
    }
    upper.extend(lower);
    Some(upper)
}

/// The overlay mount `path` is on (the longest mount point that contains it, when it is an
/// overlay): its mount point and its layer directories, upper first.
fn overlay_mount(mountinfo: &str, path: &str) -> Option<(String, Vec<String>)> {
    let mut best: Option<(String, &str)> = None;
    for line in mountinfo.lines() {
        // id parent major:minor root mount-point options [optional...] - type source super-options
        let Some((head, tail)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mount_point) = head.split(' ').nth(4).map(unescape) else {
            continue;
        };
        let inside = path == mount_point
            || mount_point == "/"
            || path
                .strip_prefix(mount_point.as_str())
                .is_some_and(|r| r.starts_with('/'));
        if inside
            && best
                .as_ref()
                .is_none_or(|(m, _)| mount_point.len() >= m.len())
        {
            best = Some((mount_point, tail));
        }
    }
    let (mount_point, tail) = best?;
    Some((mount_point, layers(tail)?))
}

/// A mountinfo field with the kernel's octal escapes (`\040` for a space) undone.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let code = b.get(i + 1..i + 4).and_then(|d| {
            d.iter()
                .try_fold(0u16, |n, &c| {
                    (b'0'..=b'7')
                        .contains(&c)
                        .then(|| n * 8 + (c - b'0') as u16)
                })
                .and_then(|n| u8::try_from(n).ok())
        });
        if let (b'\\', Some(c)) = (b[i], code) {
            out.push(c);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_of_a_user_namespace_from_its_uid_map() {
        assert_eq!(root_in_map("         0          0 4294967295\n"), Some(0));
        assert_eq!(
            root_in_map("         0     100000      65536\n"),
            Some(100000)
        );
        assert_eq!(root_in_map("      1000       1000          1\n"), None);
        assert_eq!(root_in_map("1 200 5\n0 300 1\n"), Some(300));
        assert_eq!(root_in_map("garbage"), None);
    }

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
    fn a_chroot_in_another_mount_namespace_names_the_path_below_its_root() {
        let ld = "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2";
        let built = format!("/tmp/mmdebstrap.3jV8UnhkPt{ld}");
        assert_eq!(in_namespace(Some("/tmp/mmdebstrap.3jV8UnhkPt"), &built), ld);
        assert_eq!(
            in_namespace(Some("/tmp/mmdebstrap.3jV8UnhkPt/"), &built),
            ld
        );
        // A container whose root is its namespace's (pivot_root): the path is already its own.
        assert_eq!(in_namespace(Some("/"), ld), ld);
        assert_eq!(in_namespace(None, ld), ld);
        // Not under the root (mapped before the chroot): left as the kernel built it.
        assert_eq!(in_namespace(Some("/tmp/other"), &built), built);
        assert_eq!(in_namespace(Some("/tmp/mmdebstrap.3jV8"), &built), built);
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

    const MOUNTINFO: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
70 22 0:40 / /var/lib/c\\040x/merged rw,relatime - overlay overlay rw,lowerdir=/l1:/l2,upperdir=/up,workdir=/w
71 70 0:41 / /var/lib/c\\040x/merged/proc rw - proc proc rw
";

    #[test]
    fn the_overlay_mount_of_a_path_and_its_layers() {
        assert_eq!(
            overlay_mount(MOUNTINFO, "/var/lib/c x/merged/usr/lib/libc.so.6"),
            Some((
                "/var/lib/c x/merged".into(),
                vec!["/up".into(), "/l1".into(), "/l2".into()]
            ))
        );
        assert_eq!(overlay_mount(MOUNTINFO, "/usr/lib/libc.so.6"), None);
        assert_eq!(
            overlay_mount(MOUNTINFO, "/var/lib/c x/merged/proc/self"),
            None
        );
        assert_eq!(overlay_mount(MOUNTINFO, "/var/lib/c x/mergedother/x"), None);
        assert_eq!(overlay_mount("garbage", "/x"), None);
        assert_eq!(unescape("a\\040b\\777c\\0"), "a b\\777c\\0");
    }

    #[test]
    fn the_layer_file_is_the_one_with_the_kernels_device_and_inode() {
        let dir = std::env::temp_dir().join(format!("detector-overlay-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        for d in ["up/usr/lib", "low/usr/lib"] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        fs::write(dir.join("low/usr/lib/libx.so"), "lower").unwrap();
        fs::write(dir.join("up/usr/lib/liby.so"), "upper").unwrap();
        let d = dir.display();
        let mountinfo = format!(
            "70 22 0:40 / /m rw - overlay overlay rw,lowerdir={d}/low,upperdir={d}/up,workdir={d}/w\n"
        );
        let info = |p: &str| {
            let m = fs::metadata(dir.join(p)).unwrap();
            FileInfo {
                ino: m.ino(),
                dev: kernel_dev(m.dev()) as u32,
                ..FileInfo::default()
            }
        };
        assert_eq!(
            overlay_layer(
                &mountinfo,
                "/m/usr/lib/libx.so",
                &info("low/usr/lib/libx.so")
            ),
            Some((
                "/m/usr/lib/libx.so".into(),
                format!("{d}/low/usr/lib/libx.so")
            ))
        );
        assert_eq!(
            overlay_layer(
                &mountinfo,
                "/m/usr/lib/liby.so",
                &info("up/usr/lib/liby.so")
            ),
            Some((
                "/m/usr/lib/liby.so".into(),
                format!("{d}/up/usr/lib/liby.so")
            ))
        );
        // The kernel's path of a layer's file mapped at exec: the path inside the layer.
        assert_eq!(
            overlay_layer(&mountinfo, "/usr/lib/liby.so", &info("up/usr/lib/liby.so")),
            Some((
                "/m/usr/lib/liby.so".into(),
                format!("{d}/up/usr/lib/liby.so")
            ))
        );
        // Another file's identity: not found.
        assert_eq!(
            overlay_layer(
                &mountinfo,
                "/m/usr/lib/libx.so",
                &info("up/usr/lib/liby.so")
            ),
            None
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
