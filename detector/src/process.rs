//! The process table: what each live process is (from its exec, or from /proc for processes
//! that were there before us), kept across fork and forgotten some time after exit.
use std::collections::{hash_map::Entry, HashMap, HashSet, VecDeque};

use crate::{
    alert::Process,
    event::{Exec, Exit, Fork, Header},
};

/// Exited processes kept for late events (events of one process can arrive after its exit
/// from another CPU); the oldest are dropped past this.
const EXITED_KEPT: usize = 4096;
/// Live processes tracked at most (a fork bomb must not eat the daemon's memory).
const LIVE_MAX: usize = 65536;

#[derive(Debug, Clone, Default)]
pub struct ProcInfo {
    pub ppid: u32,
    pub uid: u32,
    pub comm: String,
    pub exe: String,
    pub cmdline: String,
    /// Libraries already alerted on for this process (one alert per process and library).
    pub alerted: HashSet<String>,
}

#[derive(Default)]
pub struct ProcessTable {
    procs: HashMap<u32, ProcInfo>,
    exited: VecDeque<u32>,
}

impl ProcessTable {
    pub fn on_exec(&mut self, e: &Exec) {
        let info = ProcInfo {
            ppid: e.hdr.ppid,
            uid: e.hdr.uid,
            comm: e.hdr.comm.clone(),
            exe: e.filename.clone(),
            cmdline: e.argv.join(" "),
            alerted: HashSet::new(),
        };
        self.insert(e.hdr.pid, info);
    }

    pub fn on_fork(&mut self, f: &Fork) {
        let mut child = self
            .procs
            .get(&f.hdr.pid)
            .cloned()
            .unwrap_or_else(|| from_header(&f.hdr));
        child.ppid = f.hdr.pid;
        child.alerted.clear();
        self.insert(f.child_pid, child);
    }

    pub fn on_exit(&mut self, x: &Exit) {
        self.exited.push_back(x.hdr.pid);
        while self.exited.len() > EXITED_KEPT {
            if let Some(old) = self.exited.pop_front() {
                self.procs.remove(&old);
            }
        }
    }

    fn insert(&mut self, pid: u32, info: ProcInfo) {
        if self.procs.len() >= LIVE_MAX && !self.procs.contains_key(&pid) {
            return;
        }
        self.procs.insert(pid, info);
    }

    /// The process as an alert names it; from /proc when we never saw its exec.
    pub fn process(&mut self, hdr: &Header) -> Process {
        let info = self.procs.entry(hdr.pid).or_insert_with(|| from_proc(hdr));
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
        info.exe = p.exe().map(|e| e.display().to_string()).unwrap_or_default();
        info.cmdline = p.cmdline().map(|c| c.join(" ")).unwrap_or_default();
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
    fn fork_inherits_then_exec_replaces() {
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
        t.on_fork(&Fork {
            hdr: hdr(4_000_001, 1, "bash"),
            child_pid: 4_000_002,
        });
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
    }
}
