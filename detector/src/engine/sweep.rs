//! A sweep, no eBPF: what /proc shows of every process — the loader variables in its
//! environment (the occurrence the loader used) and its executable file mappings. The rules
//! judge them as they judge kernel events (`Correlator::sweep`). The daemon sweeps once at start
//! (what was loaded before it came up; the sweep also seeds its process table); `detector scan`
//! sweeps on demand.
use std::{collections::HashMap, path::Path};

use detector_common::LoaderVar;

use crate::{
    capture::{
        decode::{Header, LoaderEnv},
        names,
    },
    engine::library::Library,
    engine::loader_vars::last_value,
    output::alert::Process,
};

/// Kernel threads have no environment or user-space mappings (include/linux/sched.h).
const PF_KTHREAD: u32 = 0x0020_0000;

/// One running process as /proc shows it.
pub struct Seen {
    pub process: Process,
    /// Its LD_PRELOAD value (the one the loader used: the last), when it has one.
    pub preload: Option<String>,
    /// Its LD_PRELOAD and LD_AUDIT, as the kernel's loader-variable events would tell them.
    pub loader_vars: Vec<LoaderEnv>,
    /// The files it has mapped executable, but its own program; each readable through
    /// /proc/<pid>/map_files.
    pub mapped: Vec<Library>,
}

#[derive(Default)]
pub struct Sweep {
    pub processes: Vec<Seen>,
    pub skipped: Skipped,
}

/// Processes a sweep could not read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Their environment or mappings were refused (not root; or, as root, the kernel's ptrace
    /// access check, a security module or /proc mounted with hidepid). They are kept with what
    /// could be read.
    pub denied: usize,
    /// The first few of them.
    pub denied_pids: Vec<u32>,
    /// They exited while the sweep read them; they are left out.
    pub gone: usize,
}

impl Skipped {
    /// ", N could not be read …" for a summary line; empty when nothing was skipped.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        if self.denied > 0 {
            // SAFETY: geteuid has no preconditions.
            let root = unsafe { libc::geteuid() } == 0;
            let pids: Vec<String> = self.denied_pids.iter().map(u32::to_string).collect();
            let more = if self.denied > self.denied_pids.len() {
                ", …"
            } else {
                ""
            };
            s.push_str(&format!(
                "; {} could not be read (pid {}{more}: {})",
                self.denied,
                pids.join(", "),
                if root {
                    "the kernel refused even root: its ptrace access check, a security module or /proc mounted with hidepid"
                } else {
                    "permission denied; run as root to read them all"
                }
            ));
        }
        if self.gone > 0 {
            s.push_str(&format!("; {} exited while they were read", self.gone));
        }
        s
    }
}

/// The program a process runs, every byte of its path kept; empty when it cannot be read.
pub fn exe(pid: u32) -> String {
    use std::os::unix::ffi::OsStrExt as _;
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| names::lossless(p.as_os_str().as_bytes()))
        .unwrap_or_default()
}

/// A process's parent, from `/proc/<pid>/stat` (after the command name, which may hold spaces
/// and parentheses); `None` when it is gone.
pub fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let end = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[end + 1..]).ok()?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// A process's arguments joined by spaces, every byte kept; empty when they cannot be read.
pub fn cmdline(pid: u32) -> String {
    let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return String::new();
    };
    cmdline_text(&raw)
}

/// The arguments of a `/proc/<pid>/cmdline` block (NUL-terminated strings) joined by spaces,
/// every byte kept.
pub fn cmdline_text(raw: &[u8]) -> String {
    let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
    raw.split(|&b| b == 0)
        .map(names::lossless)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Why reading a process's file failed: it is gone, or the read was refused.
fn gone(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
}

/// Which processes a sweep looks at.
pub enum Only<'a> {
    /// All but this pid (the daemon itself).
    AllBut(u32),
    /// These pids.
    Pids(&'a [u32]),
}

/// Sweeps the processes `only` selects.
pub fn processes(only: Only) -> Sweep {
    let mut sweep = Sweep::default();
    let Ok(all) = procfs::process::all_processes() else {
        sweep.skipped.denied += 1;
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
            exe: exe(p.pid as u32),
            cmdline: cmdline(p.pid as u32),
        };
        let mut failed: Option<std::io::Error> = None;
        let mut preload = None;
        let mut loader_vars = Vec::new();
        let mut mapped = Vec::new();
        // Raw, not procfs's map: duplicates and their order matter (the last one wins).
        match std::fs::read(format!("/proc/{}/environ", process.pid)) {
            Ok(block) => {
                for var in [LoaderVar::LdPreload, LoaderVar::LdAudit] {
                    if let Some((value, n)) = last_value(&block, var.name()) {
                        let value = names::lossless(value);
                        loader_vars.push(loader_env(&process, var, &value, n as u32));
                        if var == LoaderVar::LdPreload {
                            preload = Some(value);
                        }
                    }
                }
            }
            Err(e) => failed = Some(e),
        }
        match std::fs::read(format!("/proc/{}/maps", process.pid)) {
            Ok(maps) => {
                let maps = names::lossless(&maps);
                for m in executable_files(&maps) {
                    let exe = process.exe.strip_suffix(" (deleted)");
                    if m.path == exe.unwrap_or(&process.exe) {
                        continue; // the program itself, mapped by the kernel at exec
                    }
                    let lib = libraries
                        .entry(m.path.clone())
                        .or_insert_with(|| m.library())
                        .clone();
                    mapped.push(Library {
                        read_from: Some(format!("/proc/{}/map_files/{}", process.pid, m.range)),
                        ..lib
                    });
                }
            }
            Err(e) => failed = failed.or(Some(e)),
        }
        match failed {
            Some(e) if gone(&e) || !Path::new(&format!("/proc/{}", process.pid)).exists() => {
                sweep.skipped.gone += 1;
                continue;
            }
            Some(_) => {
                sweep.skipped.denied += 1;
                if sweep.skipped.denied_pids.len() < 5 {
                    sweep.skipped.denied_pids.push(process.pid);
                }
            }
            None => {}
        }
        sweep.processes.push(Seen {
            process,
            preload,
            loader_vars,
            mapped,
        });
    }
    sweep
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
        // The kernel shows a newline in a name as `\012` (its backslash made `\\` by
        // names::lossless).
        let path = path.replace("\\\\012", "\n");
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
