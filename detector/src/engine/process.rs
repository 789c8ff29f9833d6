//! The process table: what each live process is (from its exec, or from /proc for processes
//! that were there before us), forgotten some time after exit. Forks are not captured: a
//! process first seen through an event of its own (it forked and has not exec'd) is its
//! parent's copy, the parent being the event's `ppid`.
use std::{
    collections::{hash_map::Entry, HashMap, HashSet, VecDeque},
    hash::{BuildHasherDefault, Hasher},
};

use detector_common::LoaderVar;

use crate::{
    capture::decode::{Exec, Exit, Header},
    engine::{package_manager, sweep, sweep::Seen},
    output::alert::{Ancestor, Process},
};

/// Exited processes are kept for late events (events of one process can arrive after its exit
/// from another CPU) this long, and at most this many.
const EXITED_TTL_NS: u64 = 30_000_000_000;
const EXITED_KEPT: usize = 4096;
/// Live processes tracked at most (a fork bomb must not eat the daemon's memory).
const LIVE_MAX: usize = 65536;
/// Ancestors looked at, at most, to attribute a process to a package manager.
const ANCESTRY_MAX: usize = 32;
/// Root directories of image builders' chrooted processes kept at most (a builder builds one
/// tree, or a few).
const BUILDER_ROOTS_MAX: usize = 16;

/// Pids are small integers the kernel hands out, not attacker-chosen keys: a multiplicative
/// hash is enough, and the table is updated on every exec and exit (SipHash showed in the
/// daemon's profile).
#[derive(Default)]
pub struct PidHasher(u64);

impl Hasher for PidHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

#[derive(Debug, Clone, Default)]
pub struct ProcInfo {
    pub ppid: u32,
    pub uid: u32,
    pub comm: String,
    pub exe: String,
    pub cmdline: String,
    /// Libraries already alerted on for this process (one alert per process and library).
    pub alerted: HashSet<String>,
    /// Where this process's LD_PRELOAD value was first seen (itself or an ancestor), and it.
    pub preload_origin: Option<(Ancestor, String)>,
    /// Kernel time of its exit, once it exited.
    pub exited_at: Option<u64>,
    /// The package manager this process's program is (`package_manager::recognise`).
    pub package_manager: Option<&'static str>,
    /// The image builder this process's program is (`package_manager::recognise_image_builder`).
    pub image_builder: Option<&'static str>,
    /// The image builder this process descended from when it exec'd (its ancestry is read then,
    /// while the builder's forks in between still live).
    pub in_image_build: Option<&'static str>,
}

#[derive(Default)]
pub struct ProcessTable {
    procs: HashMap<u32, ProcInfo, BuildHasherDefault<PidHasher>>,
    /// (pid, kernel time of its exit), oldest first.
    /// Exits in order: pid, kernel time, parent pid (a forked process the table never learnt
    /// is known by its parent).
    exited: VecDeque<(u32, u64, u32)>,
    /// Live processes that are package managers.
    package_managers: HashSet<u32, BuildHasherDefault<PidHasher>>,
    /// Live processes that are image builders.
    image_builders: HashSet<u32, BuildHasherDefault<PidHasher>>,
    /// The root directories (`/proc/<pid>/root`) that image builders' descendants were seen
    /// chrooted into at their exec, while an image builder runs: the trees being built.
    builder_roots: Vec<String>,
}

impl ProcessTable {
    pub fn on_exec(&mut self, e: &Exec) {
        // The environment survives exec only when it still carries LD_PRELOAD. It came from
        // this process's previous image (exec after exec), else from the parent it forked from.
        let has_preload = e.loader_vars & (1 << LoaderVar::LdPreload as u32) != 0;
        let inherited = self
            .live(e.hdr.pid)
            .or_else(|| self.live(e.hdr.ppid))
            .and_then(|i| i.preload_origin.clone());
        let info = ProcInfo {
            ppid: e.hdr.ppid,
            uid: e.hdr.uid,
            comm: e.hdr.comm.clone(),
            exe: e.filename.clone(),
            cmdline: e.argv.join(" "),
            alerted: HashSet::new(),
            preload_origin: inherited.filter(|_| has_preload),
            exited_at: None,
            package_manager: package_manager::recognise(&e.filename),
            image_builder: package_manager::recognise_image_builder(&e.filename),
            in_image_build: None,
        };
        let in_image_build = if info.image_builder.is_none() {
            self.image_builder(e.hdr.ppid)
        } else {
            None
        };
        self.insert(
            e.hdr.pid,
            ProcInfo {
                in_image_build,
                ..info
            },
        );
        if in_image_build.is_some() {
            self.note_builder_root(e.hdr.pid);
        }
    }

    /// Remembers the root directory of `pid`, an image builder's descendant, when it is not
    /// the host's: the tree it builds. Read while the process lives (a chroot's command may
    /// already be gone).
    pub fn note_builder_root(&mut self, pid: u32) {
        let Ok(root) = std::fs::read_link(format!("/proc/{pid}/root")) else {
            return;
        };
        let root = root.display().to_string();
        if root == "/" || !root.starts_with('/') || self.builder_roots.contains(&root) {
            return;
        }
        if self.builder_roots.len() >= BUILDER_ROOTS_MAX {
            self.builder_roots.remove(0);
        }
        self.builder_roots.push(root);
    }

    /// The tree an image builder's descendant was seen chrooted into that `path` (a path of the
    /// daemon's) is under, if any: the deepest.
    pub fn builder_root(&self, path: &str) -> Option<&str> {
        self.builder_roots
            .iter()
            .filter(|r| crate::engine::file_view::below(path, r).is_some())
            .max_by_key(|r| r.len())
            .map(String::as_str)
    }

    /// The tree `path` (a path of the daemon's, mapped by an image builder's descendant) is in:
    /// the deepest tree the builder's descendants were seen chrooted into, or else the deepest
    /// directory above `path`, other than `/`, shaped as a root filesystem (`etc` and `usr`
    /// directories in it), which is then remembered as one. A chrooted command that exits
    /// before its root can be read (`chroot TREE /bin/true`, the first thing debootstrap runs
    /// in its tree) is then still judged by the tree's package database.
    pub fn builder_tree_of(&mut self, path: &str) -> Option<String> {
        if let Some(root) = self.builder_root(path) {
            return Some(root.to_owned());
        }
        let tree = std::path::Path::new(path)
            .ancestors()
            .skip(1)
            .take_while(|dir| dir.parent().is_some())
            .find(|dir| dir.join("etc").is_dir() && dir.join("usr").is_dir())?
            .display()
            .to_string();
        if self.builder_roots.len() >= BUILDER_ROOTS_MAX {
            self.builder_roots.remove(0);
        }
        self.builder_roots.push(tree.clone());
        Some(tree)
    }

    /// For an LD_PRELOAD `value` seen in `pid`'s new image: the ancestor it was inherited from
    /// (same value first seen there), or None when it starts here (then `pid` becomes its origin).
    pub fn preload_inherited(&mut self, pid: u32, value: &str) -> Option<Ancestor> {
        let info = self.procs.get_mut(&pid)?;
        match &info.preload_origin {
            Some((origin, v)) if v == value && origin.pid != pid => Some(origin.clone()),
            _ => {
                info.preload_origin = Some((
                    Ancestor {
                        pid,
                        exe: info.exe.clone(),
                    },
                    value.to_owned(),
                ));
                None
            }
        }
    }

    /// Learns a process that was running before the daemon (from a /proc sweep).
    pub fn seed(&mut self, seen: &Seen) {
        let p = &seen.process;
        let info = ProcInfo {
            ppid: p.ppid,
            uid: p.uid,
            comm: p.comm.clone(),
            exe: p.exe.clone(),
            cmdline: p.cmdline.clone(),
            preload_origin: seen.preload.as_ref().map(|v| {
                let me = Ancestor {
                    pid: p.pid,
                    exe: p.exe.clone(),
                };
                (me, v.clone())
            }),
            package_manager: package_manager::recognise(&p.exe).or_else(|| {
                // A script (unattended-upgrade) runs as its interpreter: its path is argv[1].
                p.cmdline
                    .split(' ')
                    .nth(1)
                    .and_then(package_manager::recognise)
            }),
            image_builder: p
                .cmdline
                .split(' ')
                .nth(1)
                .and_then(package_manager::recognise_image_builder),
            ..Default::default()
        };
        self.insert(p.pid, info);
    }

    /// `pid`'s entry unless that process has exited (its pid may be reused).
    fn live(&self, pid: u32) -> Option<&ProcInfo> {
        self.procs.get(&pid).filter(|i| i.exited_at.is_none())
    }

    /// A process not seen before: a fork of a known parent that has not exec'd is the parent's
    /// copy; anything else is read from /proc.
    fn learn(&self, hdr: &Header) -> ProcInfo {
        match self.live(hdr.ppid) {
            Some(parent) if hdr.ppid != 0 => ProcInfo {
                ppid: hdr.ppid,
                uid: hdr.uid,
                comm: hdr.comm.clone(),
                exe: parent.exe.clone(),
                cmdline: parent.cmdline.clone(),
                preload_origin: parent.preload_origin.clone(),
                in_image_build: parent.image_builder.or(parent.in_image_build),
                ..Default::default()
            },
            _ => from_proc(hdr),
        }
    }

    pub fn on_exit(&mut self, x: &Exit) {
        let now = x.hdr.ktime_ns;
        if let Some(info) = self.procs.get_mut(&x.hdr.pid) {
            info.exited_at = Some(now);
        }
        self.package_managers.remove(&x.hdr.pid);
        if self.image_builders.remove(&x.hdr.pid) && self.image_builders.is_empty() {
            self.builder_roots.clear();
        }
        self.exited.push_back((x.hdr.pid, now, x.hdr.ppid));
        while let Some(&(pid, at, _)) = self.exited.front() {
            if self.exited.len() <= EXITED_KEPT && now.saturating_sub(at) < EXITED_TTL_NS {
                break;
            }
            self.exited.pop_front();
            // A pid reused since its exit belongs to a new process: keep that one.
            if self
                .procs
                .get(&pid)
                .is_some_and(|i| i.exited_at == Some(at))
            {
                self.procs.remove(&pid);
            }
        }
    }

    fn insert(&mut self, pid: u32, info: ProcInfo) {
        if self.procs.len() >= LIVE_MAX && !self.procs.contains_key(&pid) {
            // Full: exits were lost (or a fork bomb). Forget what /proc no longer has.
            self.procs
                .retain(|p, _| std::path::Path::new(&format!("/proc/{p}")).exists());
            if self.procs.len() >= LIVE_MAX {
                return;
            }
        }
        if info.package_manager.is_some() {
            self.package_managers.insert(pid);
        } else {
            self.package_managers.remove(&pid);
        }
        if info.image_builder.is_some() {
            self.image_builders.insert(pid);
        } else {
            self.image_builders.remove(&pid);
        }
        self.procs.insert(pid, info);
    }

    /// The package manager `pid` is or descends from (through the processes this table knows),
    /// if any.
    pub fn package_manager(&self, pid: u32) -> Option<&'static str> {
        let mut pid = pid;
        for _ in 0..ANCESTRY_MAX {
            let info = self.procs.get(&pid)?;
            if let Some(name) = info.package_manager {
                return Some(name);
            }
            if info.ppid == 0 || info.ppid == pid {
                return None;
            }
            pid = info.ppid;
        }
        None
    }

    /// The image builder `pid` is or descends from, if any, only while an image builder runs.
    /// A process in between that this table never saw (a builder's fork that did not exec,
    /// whose child runs `chroot`) is looked up in /proc while it lives; a process's ancestry is
    /// read at its exec, and kept (`in_image_build`).
    pub fn image_builder(&self, pid: u32) -> Option<&'static str> {
        if self.image_builders.is_empty() {
            return None;
        }
        let mut pid = pid;
        for _ in 0..ANCESTRY_MAX {
            let ppid = match self.procs.get(&pid) {
                Some(info) => {
                    if let Some(name) = info.image_builder.or(info.in_image_build) {
                        return Some(name);
                    }
                    info.ppid
                }
                None => sweep::ppid(pid)?,
            };
            if ppid == 0 || ppid == pid {
                return None;
            }
            pid = ppid;
        }
        None
    }

    /// Whether an image builder is running now (the tree it builds is not complete, nor its
    /// package database, until it is done).
    pub fn image_builder_running(&self) -> bool {
        !self.image_builders.is_empty()
    }

    /// Whether a package manager is running now (files it changes may not match the package
    /// database until it is done).
    pub fn package_manager_running(&self) -> bool {
        !self.package_managers.is_empty()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.procs.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    /// The process as an alert names it; from /proc when we never saw its exec.
    /// Fills a header that names only its pid (`comm` empty) from what the table knows.
    pub fn fill(&self, hdr: &mut Header) {
        if !hdr.comm.is_empty() {
            return;
        }
        if let Some(info) = self.procs.get(&hdr.pid) {
            hdr.comm = info.comm.clone();
            hdr.ppid = info.ppid;
            hdr.uid = info.uid;
        } else if let Some(&(_, _, ppid)) = self.exited.iter().rev().find(|e| e.0 == hdr.pid) {
            // A fork that exited without exec: its parent's copy.
            if let Some(parent) = self.procs.get(&ppid) {
                hdr.comm = parent.comm.clone();
                hdr.uid = parent.uid;
            }
            hdr.ppid = ppid;
        }
    }

    pub fn process(&mut self, hdr: &Header) -> Process {
        if !self.procs.contains_key(&hdr.pid) {
            let info = self.learn(hdr);
            self.insert(hdr.pid, info);
        }
        let Some(info) = self.procs.get(&hdr.pid) else {
            // The table is full of live processes: name it from what the event says.
            return Process {
                pid: hdr.pid,
                ppid: hdr.ppid,
                uid: hdr.uid,
                comm: hdr.comm.clone(),
                exe: String::new(),
                cmdline: String::new(),
            };
        };
        Process {
            pid: hdr.pid,
            ppid: if hdr.ppid != 0 { hdr.ppid } else { info.ppid },
            uid: hdr.uid,
            comm: hdr.comm.clone(),
            exe: info.exe.clone(),
            cmdline: info.cmdline.clone(),
        }
    }

    /// A process other than the event's (a memory-tamper target), if known or in /proc.
    pub fn lookup(&mut self, pid: u32) -> Option<Process> {
        let i = match self.procs.entry(pid) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(v) => {
                let stat = procfs::process::Process::new(pid as i32)
                    .ok()?
                    .stat()
                    .ok()?;
                let hdr = Header {
                    ktime_ns: 0,
                    pid,
                    tid: pid,
                    ppid: stat.ppid as u32,
                    uid: 0,
                    gid: 0,
                    comm: stat.comm,
                };
                v.insert(from_proc(&hdr))
            }
        };
        Some(Process {
            pid,
            ppid: i.ppid,
            uid: i.uid,
            comm: i.comm.clone(),
            exe: i.exe.clone(),
            cmdline: i.cmdline.clone(),
        })
    }

    /// Records that `lib` was alerted on in `pid`; false when it already was.
    pub fn first_alert(&mut self, pid: u32, lib: &str) -> bool {
        self.procs
            .get_mut(&pid)
            .is_none_or(|i| i.alerted.insert(lib.to_owned()))
    }
}

fn from_header(hdr: &Header) -> ProcInfo {
    ProcInfo {
        ppid: hdr.ppid,
        uid: hdr.uid,
        comm: hdr.comm.clone(),
        ..Default::default()
    }
}

/// A process that existed before the daemon: read what /proc still has.
fn from_proc(hdr: &Header) -> ProcInfo {
    let mut info = from_header(hdr);
    if let Ok(p) = procfs::process::Process::new(hdr.pid as i32) {
        info.exe = sweep::exe(p.pid as u32);
        info.cmdline = sweep::cmdline(p.pid as u32);
        info.package_manager = package_manager::recognise(&info.exe);
        info.image_builder = info
            .cmdline
            .split(' ')
            .nth(1)
            .and_then(package_manager::recognise_image_builder);
        if let Ok(uid) = p.uid() {
            info.uid = uid;
        }
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(pid: u32, ppid: u32, comm: &str) -> Header {
        Header {
            ktime_ns: 1,
            pid,
            tid: pid,
            ppid,
            uid: 1000,
            gid: 1000,
            comm: comm.into(),
        }
    }

    #[test]
    fn a_forked_child_is_its_parents_copy_until_it_execs() {
        let mut t = ProcessTable::default();
        let exec = Exec {
            hdr: hdr(4_000_001, 1, "bash"),
            filename: "/usr/bin/bash".into(),
            filename_truncated: false,
            argc: 1,
            argv: vec!["bash".into()],
            args_truncated: false,
            envc: 0,
            env_incomplete: false,
            loader_vars: 0,
        };
        t.on_exec(&exec);
        // The child's first event (no exec of its own): learnt from its parent.
        let child = t.process(&hdr(4_000_002, 4_000_001, "bash"));
        assert_eq!(child.exe, "/usr/bin/bash");
        assert_eq!(child.ppid, 4_000_001);
        assert!(t.first_alert(4_000_002, "/tmp/x.so"));
        assert!(!t.first_alert(4_000_002, "/tmp/x.so"));
        t.on_exit(&Exit {
            hdr: hdr(4_000_002, 4_000_001, "bash"),
            exit_code: 0,
        });
        // Still known for late events.
        assert_eq!(t.process(&hdr(4_000_002, 0, "bash")).exe, "/usr/bin/bash");
        // Its exec replaces it.
        t.on_exec(&Exec {
            hdr: hdr(4_000_003, 4_000_001, "cat"),
            filename: "/usr/bin/cat".into(),
            argv: vec!["cat".into()],
            ..exec
        });
        assert_eq!(t.process(&hdr(4_000_003, 0, "cat")).exe, "/usr/bin/cat");
    }

    #[test]
    fn maintainer_scripts_are_attributed_to_the_package_manager_that_runs_them() {
        let mut t = ProcessTable::default();
        let exec = |pid, ppid, comm: &str, filename: &str| Exec {
            hdr: hdr(pid, ppid, comm),
            filename: filename.into(),
            filename_truncated: false,
            argc: 1,
            argv: vec![comm.into()],
            args_truncated: false,
            envc: 0,
            env_incomplete: false,
            loader_vars: 0,
        };
        t.on_exec(&exec(4_000_100, 1, "apt-get", "/usr/bin/apt-get"));
        t.on_exec(&exec(4_000_101, 4_000_100, "dpkg", "/usr/bin/dpkg"));
        t.on_exec(&exec(4_000_102, 4_000_101, "sh", "/bin/sh"));
        t.on_exec(&exec(
            4_000_103,
            4_000_102,
            "pam-auth-update",
            "/usr/sbin/pam-auth-update",
        ));
        t.on_exec(&exec(4_000_104, 1, "sh", "/bin/sh"));
        // A program named like one, elsewhere, is not one.
        t.on_exec(&exec(4_000_105, 4_000_104, "dpkg", "/tmp/dpkg"));
        assert_eq!(t.package_manager(4_000_103), Some("dpkg"));
        assert_eq!(t.package_manager(4_000_100), Some("apt"));
        assert_eq!(t.package_manager(4_000_105), None);
        assert!(t.package_manager_running());
        for pid in [4_000_101, 4_000_100] {
            t.on_exit(&Exit {
                hdr: hdr(pid, 1, "x"),
                exit_code: 0,
            });
        }
        assert!(!t.package_manager_running());
    }

    #[test]
    fn a_header_with_only_a_pid_is_filled_from_the_table_after_exit() {
        let mut t = ProcessTable::default();
        t.on_exec(&Exec {
            hdr: hdr(4_000_201, 1, "sed"),
            filename: "/usr/bin/sed".into(),
            filename_truncated: false,
            argc: 1,
            argv: vec!["sed".into()],
            args_truncated: false,
            envc: 0,
            env_incomplete: false,
            loader_vars: 0,
        });
        t.on_exit(&Exit {
            hdr: hdr(4_000_201, 1, "sed"),
            exit_code: 0,
        });
        // A fork of sed that never exec'd, gone before its write was read.
        t.on_exit(&Exit {
            hdr: hdr(4_000_202, 4_000_201, ""),
            exit_code: 0,
        });
        let bare = |pid| Header {
            ktime_ns: 2,
            pid,
            tid: pid,
            ppid: 0,
            uid: 0,
            gid: 0,
            comm: String::new(),
        };
        let mut h = bare(4_000_201);
        t.fill(&mut h);
        assert_eq!((h.comm.as_str(), h.ppid, h.uid), ("sed", 1, 1000));
        let mut h = bare(4_000_202);
        t.fill(&mut h);
        assert_eq!((h.comm.as_str(), h.ppid, h.uid), ("sed", 4_000_201, 1000));
        // Unknown: left as it is.
        let mut h = bare(4_000_299);
        t.fill(&mut h);
        assert_eq!(h.comm, "");
    }

    #[test]
    fn exited_processes_expire_after_the_ttl() {
        let mut t = ProcessTable::default();
        for (i, pid) in [4_000_010u32, 4_000_011].into_iter().enumerate() {
            t.process(&hdr(pid, 1, "bash"));
            let mut h = hdr(pid, 4_000_001, "bash");
            h.ktime_ns = 1 + i as u64 * 1000;
            t.on_exit(&Exit {
                hdr: h,
                exit_code: 0,
            });
        }
        assert_eq!(t.len(), 2);
        let mut late = hdr(4_000_012, 1, "x");
        late.ktime_ns = EXITED_TTL_NS + 500;
        t.on_exit(&Exit {
            hdr: late,
            exit_code: 0,
        });
        // The first is past the TTL, the second not yet.
        assert!(!t.procs.contains_key(&4_000_010));
        assert!(t.procs.contains_key(&4_000_011));
    }

    #[test]
    fn an_image_builders_descendants_are_attributed_to_it_and_no_package_manager() {
        let mut t = ProcessTable::default();
        let exec = |pid, ppid, filename: &str| Exec {
            hdr: hdr(pid, ppid, "x"),
            filename: filename.into(),
            filename_truncated: false,
            argc: 1,
            argv: vec![filename.into()],
            args_truncated: false,
            envc: 0,
            env_incomplete: false,
            loader_vars: 0,
        };
        assert!(!t.image_builder_running());
        t.on_exec(&exec(4_000_101, 1, "/usr/bin/mmdebstrap"));
        t.on_exec(&exec(4_000_102, 4_000_101, "/usr/sbin/chroot"));
        t.on_exec(&exec(4_000_103, 4_000_102, "/usr/bin/dpkg"));
        t.on_exec(&exec(4_000_104, 1, "/tmp/mmdebstrap"));
        assert!(t.image_builder_running());
        assert_eq!(t.image_builder(4_000_101), Some("mmdebstrap"));
        assert_eq!(t.image_builder(4_000_102), Some("mmdebstrap"));
        assert_eq!(t.image_builder(4_000_103), Some("mmdebstrap"));
        assert_eq!(t.package_manager(4_000_102), None);
        // dpkg in the tree is a package manager, and still the builder's.
        assert_eq!(t.package_manager(4_000_103), Some("dpkg"));
        assert_eq!(t.image_builder(4_000_104), None);
        t.on_exit(&Exit {
            hdr: hdr(4_000_101, 1, "x"),
            exit_code: 0,
        });
        assert!(!t.image_builder_running());
        assert_eq!(t.image_builder(4_000_103), None);
    }

    #[test]
    fn a_builders_tree_is_the_deepest_remembered_root_a_path_is_under() {
        let t = ProcessTable {
            builder_roots: vec!["/tmp/b".into(), "/tmp/b/c".into()],
            ..Default::default()
        };
        assert_eq!(t.builder_root("/tmp/b/c/usr/lib/ld.so"), Some("/tmp/b/c"));
        assert_eq!(t.builder_root("/tmp/b/usr/lib/ld.so"), Some("/tmp/b"));
        assert_eq!(t.builder_root("/tmp/bc/usr/lib/ld.so"), None);
        assert_eq!(t.builder_root("/usr/lib/ld.so"), None);
    }

    #[test]
    fn a_builders_tree_not_yet_seen_is_the_directory_shaped_as_a_root_filesystem() {
        let dir = std::env::temp_dir().join(format!("detector-unit-tree-{}", std::process::id()));
        let tree = dir.join("tree");
        for d in ["etc", "usr/lib/x86_64-linux-gnu", "usr/local/etc"] {
            std::fs::create_dir_all(tree.join(d)).unwrap();
        }
        let mut t = ProcessTable::default();
        let lib = format!("{}/usr/lib/x86_64-linux-gnu/ld.so", tree.display());
        let want = tree.display().to_string();
        assert_eq!(t.builder_tree_of(&lib).as_deref(), Some(want.as_str()));
        assert_eq!(t.builder_root(&lib), Some(want.as_str()), "remembered");
        // The host's own files are in no tree (`/` is not one).
        assert_eq!(
            t.builder_tree_of("/usr/lib/x86_64-linux-gnu/libc.so.6"),
            None
        );
        assert_eq!(t.builder_tree_of("/nonexistent/usr/lib/x.so"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
