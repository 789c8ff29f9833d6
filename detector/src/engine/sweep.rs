//! A sweep, no eBPF: for every process in /proc, the loader variables in its environment and the
//! executable file mappings that are unsafe (memfd, deleted, tmpfs, user-writable) or named in
//! /etc/ld.so.preload; and the files that make the loader or PAM load libraries
//! (/etc/ld.so.preload, /etc/ld.so.conf(.d), /etc/pam.d). The daemon sweeps once at start (what
//! was loaded before it came up; the sweep also seeds its process table); `detector scan` sweeps
//! on demand.
use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use detector_common::LoaderVar;

use crate::{
    capture::decode::{Header, LoaderEnv},
    engine::library::Library,
    engine::loader_vars::last_value,
    engine::rules::{self, preload_file::PreloadFile, Finding},
    output::alert::{ConfigLine, Detection, Preload, PreloadSource, Process, Severity},
};

/// Kernel threads have no environment or user-space mappings (include/linux/sched.h).
const PF_KTHREAD: u32 = 0x0020_0000;

/// One running process as /proc shows it.
pub struct Seen {
    pub process: Process,
    /// Its LD_PRELOAD value (the one the loader used: the last), when it has one.
    pub preload: Option<String>,
}

#[derive(Default)]
pub struct Sweep {
    pub processes: Vec<Seen>,
    pub findings: Vec<Finding>,
    /// Processes whose environment or mappings could not be read (not root, or gone).
    pub unreadable: usize,
}

/// Which processes a sweep looks at.
pub enum Only<'a> {
    /// All but this pid (the daemon itself).
    AllBut(u32),
    /// These pids.
    Pids(&'a [u32]),
}

/// Sweeps the processes `only` selects.
pub fn processes(preload_file: &mut PreloadFile, only: Only) -> Sweep {
    let mut sweep = Sweep::default();
    let Ok(all) = procfs::process::all_processes() else {
        sweep.unreadable += 1;
        return sweep;
    };
    let mut libraries: HashMap<String, Library> = HashMap::new();
    for p in all.flatten() {
        let Ok(stat) = p.stat() else {
            continue; // gone
        };
        let wanted = match only {
            Only::AllBut(pid) => p.pid as u32 != pid,
            Only::Pids(pids) => pids.contains(&(p.pid as u32)),
        };
        if stat.flags & PF_KTHREAD != 0 || !wanted {
            continue;
        }
        let process = Process {
            pid: p.pid as u32,
            ppid: stat.ppid as u32,
            uid: p.uid().unwrap_or(u32::MAX),
            comm: stat.comm.clone(),
            exe: p.exe().map(|e| e.display().to_string()).unwrap_or_default(),
            cmdline: p.cmdline().map(|c| c.join(" ")).unwrap_or_default(),
        };
        let mut readable = true;
        let mut preload = None;
        // Raw, not procfs's map: duplicates and their order matter (the last one wins).
        match std::fs::read(format!("/proc/{}/environ", process.pid)) {
            Ok(block) => {
                for var in [LoaderVar::LdPreload, LoaderVar::LdAudit] {
                    if let Some((value, n)) = last_value(&block, var.name()) {
                        let value = String::from_utf8_lossy(value).into_owned();
                        let env = loader_env(&process, var, &value, n as u32);
                        sweep
                            .findings
                            .extend(rules::loader_env::evaluate(&process, &env));
                        if var == LoaderVar::LdPreload {
                            preload = Some(value);
                        }
                    }
                }
            }
            Err(_) => readable = false,
        }
        match std::fs::read_to_string(format!("/proc/{}/maps", process.pid)) {
            Ok(maps) => {
                for m in executable_files(&maps) {
                    let exe = process.exe.strip_suffix(" (deleted)");
                    if m.path == exe.unwrap_or(&process.exe) {
                        continue; // the program itself, mapped by the kernel at exec
                    }
                    let lib = libraries
                        .entry(m.path.clone())
                        .or_insert_with(|| m.library())
                        .clone();
                    let lib = Library {
                        read_from: Some(format!("/proc/{}/map_files/{}", process.pid, m.range)),
                        ..lib
                    };
                    if let Some(f) = preload_file.on_mapped(0, &process, lib.clone()) {
                        sweep.findings.push(f);
                    } else if lib.is_unsafe() {
                        let mut f = Finding::new(0, process.clone(), Detection::UnsafeLibrary);
                        f.library = Some(lib);
                        sweep.findings.push(f);
                    }
                }
            }
            Err(_) => readable = false,
        }
        if !readable {
            sweep.unreadable += 1;
        }
        sweep.processes.push(Seen { process, preload });
    }
    sweep
}

/// Directories PAM loads relative module names from, and where distributions install modules.
const PAM_DIRS: &[&str] = &[
    "/lib/security/",
    "/lib64/security/",
    "/usr/lib/security/",
    "/usr/lib64/security/",
    "/lib/x86_64-linux-gnu/security/",
    "/usr/lib/x86_64-linux-gnu/security/",
    "/lib/aarch64-linux-gnu/security/",
    "/usr/lib/aarch64-linux-gnu/security/",
];

/// The configuration files under `etc` (normally "/etc") that make the loader or PAM load a
/// library: /etc/ld.so.preload entries, /etc/ld.so.conf(.d) directories a non-root user can
/// write, PAM modules named by a path outside the system module directories.
pub fn files(etc: &Path) -> Vec<Finding> {
    let mut out = Vec::new();
    let preload = etc.join("ld.so.preload");
    if let Ok(text) = std::fs::read_to_string(&preload) {
        for (n, line) in text.lines().enumerate() {
            for lib in rules::preload_file::parse(line) {
                let mut f = state_finding(Detection::PreloadFile, &preload, n, line);
                // Every dynamically linked program loads it, the credential ones included.
                f.floor = Severity::High;
                f.library = Some(Library::inspect(&lib));
                f.preload = Some(Preload {
                    source: PreloadSource::File,
                    variable: rules::preload_file::PATH,
                    value: text.trim().to_owned(),
                    occurrences: 1,
                    truncated: false,
                    inherited_from: None,
                });
                out.push(f);
            }
        }
    }
    let mut confs = vec![etc.join("ld.so.conf")];
    if let Ok(rd) = std::fs::read_dir(etc.join("ld.so.conf.d")) {
        let mut more: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        more.sort();
        confs.extend(more);
    }
    for conf in confs {
        let Ok(text) = std::fs::read_to_string(&conf) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            let dir = line.split('#').next().unwrap_or("").trim();
            if !dir.starts_with('/') {
                continue; // include lines, comments, hwcap lines
            }
            let reasons = directory_unsafe(Path::new(dir));
            if !reasons.is_empty() {
                let mut f = state_finding(Detection::UnsafeLoaderPath, &conf, n, line);
                f.library = Some(Library {
                    path: dir.to_owned(),
                    exists: Path::new(dir).exists(),
                    unsafe_reasons: reasons,
                    ..Library::default()
                });
                out.push(f);
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir(etc.join("pam.d")) {
        let mut pam: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        pam.sort();
        for conf in pam {
            let Ok(text) = std::fs::read_to_string(&conf) else {
                continue;
            };
            for (n, line) in text.lines().enumerate() {
                let Some(module) = pam_module(line) else {
                    continue;
                };
                if module.starts_with('/') && !PAM_DIRS.iter().any(|d| module.starts_with(d)) {
                    let mut f = state_finding(Detection::UnsafePamModule, &conf, n, line);
                    f.floor = Severity::High;
                    f.library = Some(Library::inspect(module));
                    out.push(f);
                }
            }
        }
    }
    out
}

fn state_finding(detection: Detection, path: &Path, n: usize, line: &str) -> Finding {
    let mut f = Finding::new(0, Process::default(), detection);
    f.config = Some(ConfigLine {
        path: path.display().to_string(),
        line: n + 1,
        text: line.trim().to_owned(),
    });
    f
}

/// Why a non-root user could put a library in `dir` (empty when they cannot).
fn directory_unsafe(dir: &Path) -> Vec<&'static str> {
    let mut reasons = Vec::new();
    let Ok(meta) = std::fs::metadata(dir) else {
        return reasons; // a missing directory is ld.so's problem, not a way in
    };
    if meta.uid() != 0 {
        reasons.push("owned_by_non_root");
    }
    if meta.mode() & 0o022 != 0 {
        reasons.push("group_or_world_writable");
    }
    reasons
}

/// The module a PAM configuration line names: `[-]type control module [args]`, where control
/// may be a bracketed `[value=action ...]` list.
pub fn pam_module(line: &str) -> Option<&str> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') || line.starts_with('@') {
        return None;
    }
    let rest = line.split_once(char::is_whitespace)?.1.trim_start();
    let rest = if rest.starts_with('[') {
        rest.split_once(']')?.1
    } else {
        rest.split_once(char::is_whitespace)?.1
    };
    rest.split_whitespace().next()
}

fn loader_env(process: &Process, var: LoaderVar, value: &str, occurrences: u32) -> LoaderEnv {
    LoaderEnv {
        hdr: Header {
            ktime_ns: 0,
            pid: process.pid,
            tid: process.pid,
            ppid: process.ppid,
            uid: process.uid,
            gid: 0,
            comm: process.comm.clone(),
        },
        var,
        occurrences,
        index: 0,
        value_len: value.len() as u32,
        head: value.to_owned(),
        tail: String::new(),
        truncated: false,
    }
}

/// One executable file mapping from /proc/<pid>/maps.
#[derive(Debug, PartialEq, Eq)]
pub struct Mapping {
    /// "start-end", as /proc/<pid>/map_files names it.
    pub range: String,
    pub path: String,
    pub device: String,
    pub inode: u64,
    pub deleted: bool,
}

impl Mapping {
    fn library(&self) -> Library {
        let memfd = self.path.starts_with("/memfd:");
        let mut lib = if memfd || self.deleted {
            Library {
                path: self.path.clone(),
                ..Library::default()
            }
        } else {
            Library::inspect(&self.path)
        };
        lib.inode = Some(self.inode);
        lib.device = Some(self.device.clone());
        let reason = if memfd {
            Some("memfd")
        } else if self.deleted {
            Some("deleted")
        } else {
            None
        };
        if let Some(r) = reason {
            lib.unsafe_reasons.insert(0, r);
        }
        lib
    }
}

/// The executable mappings of files, one per file (the first), in a maps text.
pub fn executable_files(maps: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    for line in maps.lines() {
        let mut fields = line.splitn(6, ' ');
        let (Some(range), Some(perms), Some(_offset), Some(dev), Some(inode)) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            continue;
        };
        let path = fields.next().unwrap_or("").trim_start();
        if !perms.contains('x') || !path.starts_with('/') {
            continue;
        }
        let (path, deleted) = match path.strip_suffix(" (deleted)") {
            Some(p) => (p, true),
            None => (path, false),
        };
        if out.iter().any(|m| m.path == path) {
            continue;
        }
        // /proc shows the device as hex major:minor; alerts use decimal, as the kernel path does.
        let device = dev
            .split_once(':')
            .and_then(|(a, b)| {
                Some(format!(
                    "{}:{}",
                    u32::from_str_radix(a, 16).ok()?,
                    u32::from_str_radix(b, 16).ok()?
                ))
            })
            .unwrap_or_else(|| dev.to_owned());
        out.push(Mapping {
            range: range.to_owned(),
            path: path.to_owned(),
            device,
            inode: inode.parse().unwrap_or(0),
            deleted,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pam_lines() {
        assert_eq!(
            pam_module("auth required pam_unix.so nullok"),
            Some("pam_unix.so")
        );
        assert_eq!(
            pam_module("auth [success=1 default=ignore] /tmp/evil.so x"),
            Some("/tmp/evil.so")
        );
        assert_eq!(
            pam_module("-session optional pam_systemd.so"),
            Some("pam_systemd.so")
        );
        assert_eq!(pam_module("@include common-auth"), None);
        assert_eq!(pam_module("# auth optional /tmp/x.so"), None);
        assert_eq!(pam_module("auth"), None);
    }

    #[test]
    fn configuration_files() {
        let root = std::env::temp_dir().join(format!("detector-sweep-{}", std::process::id()));
        let etc = root.join("etc");
        let open_dir = root.join("open");
        std::fs::create_dir_all(etc.join("ld.so.conf.d")).unwrap();
        std::fs::create_dir_all(etc.join("pam.d")).unwrap();
        std::fs::create_dir_all(&open_dir).unwrap();
        std::fs::set_permissions(
            &open_dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        std::fs::write(etc.join("ld.so.preload"), "/tmp/a.so /tmp/b.so\n").unwrap();
        std::fs::write(
            etc.join("ld.so.conf.d/x.conf"),
            format!("# comment\n/usr/lib\n{}\n", open_dir.display()),
        )
        .unwrap();
        std::fs::write(
            etc.join("pam.d/sshd"),
            "auth required pam_unix.so\nauth optional /tmp/evil.so\nauth optional /usr/lib/x86_64-linux-gnu/security/pam_env.so\n",
        )
        .unwrap();
        let found = files(&etc);
        let _ = std::fs::remove_dir_all(&root);
        let kinds: Vec<(Detection, usize)> = found
            .iter()
            .map(|f| {
                (
                    *f.detections.first().unwrap(),
                    f.config.as_ref().unwrap().line,
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                (Detection::PreloadFile, 1),
                (Detection::PreloadFile, 1),
                (Detection::UnsafeLoaderPath, 3),
                (Detection::UnsafePamModule, 2),
            ]
        );
        assert_eq!(found[3].library.as_ref().unwrap().path, "/tmp/evil.so");
    }

    #[test]
    fn maps_lines() {
        let maps = "\
55d0c8a00000-55d0c8a02000 r--p 00000000 fd:01 1234 /usr/bin/cat
55d0c8a02000-55d0c8a07000 r-xp 00002000 fd:01 1234 /usr/bin/cat
7f0000000000-7f0000001000 r-xp 00000000 00:01 77 /memfd:payload (deleted)
7f0000002000-7f0000003000 r-xp 00000000 00:1a 78 /dev/shm/x.so (deleted)
7f0000004000-7f0000005000 r-xp 00000000 00:00 0 [vdso]
7f0000006000-7f0000007000 rw-p 00000000 00:00 0
7f0000008000-7f0000009000 r-xp 00000000 08:02 99 /usr/lib/x86_64-linux-gnu/libc.so.6
7f000000a000-7f000000b000 r-xp 00000000 08:02 99 /usr/lib/x86_64-linux-gnu/libc.so.6
7f000000c000-7f000000d000 r-xp 00000000 08:02 100 /opt/with space/lib.so
";
        let m = executable_files(maps);
        let paths: Vec<&str> = m.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/usr/bin/cat",
                "/memfd:payload",
                "/dev/shm/x.so",
                "/usr/lib/x86_64-linux-gnu/libc.so.6",
                "/opt/with space/lib.so"
            ]
        );
        assert_eq!(m[0].device, "253:1");
        assert_eq!(m[0].range, "55d0c8a02000-55d0c8a07000");
        assert!(m[1].deleted && m[2].deleted && !m[3].deleted);
        assert_eq!(m[1].library().unsafe_reasons, ["memfd"]);
        assert_eq!(m[2].library().unsafe_reasons[0], "deleted");
        assert!(!m[3].library().is_unsafe());
    }
}
