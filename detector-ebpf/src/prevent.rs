//! Prevention on the mapping path: whether an executable mapping the mmap channel reports is
//! one to stop, and stopping it (`bpf_send_signal(SIGKILL)`: the process dies on its way back
//! to user space, before the mapping returns, so no code of the mapped file runs).
//!
//! Decided from what the kernel sees alone: the file's facts (memfd, deleted, tmpfs or ramfs,
//! not owned by root, writable by group or others), its directory (not root's alone), and the
//! file versions user space listed in `PREVENT_FILES` (found unpackaged or modified; or
//! allowed, never stopped). Only processes whose name (comm) `PREVENT_COMMS` lists as a
//! credential program are stopped, and never one that descends from a process named there as a
//! package manager. Nothing here runs while `KernelConfig::prevent` is 0.
use aya_ebpf::{
    cty::c_void,
    helpers::{bpf_get_current_comm, generated::bpf_loop, generated::bpf_send_signal},
    maps::HashMap,
};
use detector_common::{
    FileInfo, KernelConfig, SeenKey, MMAP_PREVENT_AUDIT, MMAP_PREVENT_DIR, MMAP_PREVENT_FACTS,
    MMAP_PREVENT_KILLED, MMAP_PREVENT_LISTED, MMAP_SOURCE_EXEC_INTERPRETER,
    MMAP_SOURCE_EXEC_PROGRAM, PREVENT_COMM_CREDENTIAL, PREVENT_COMM_PACKAGE_MANAGER, PREVENT_FACTS,
    PREVENT_FILE_ALLOWED, PREVENT_FILE_UNVERIFIED, PREVENT_INTERPRETER, PREVENT_KILL,
    PREVENT_UNVERIFIED,
};

use crate::{
    kernel::{File, Task},
    shared::{config, named_map},
};

named_map! {
    /// Process names (comm, NUL-padded) to `PREVENT_COMM_*`, written by user space.
    static PREVENT_COMMS: HashMap<[u8; 16], u32> = HashMap::with_max_entries(256, 0);
}

named_map! {
    /// File versions to `PREVENT_FILE_*`, written by user space.
    static PREVENT_FILES: HashMap<SeenKey, u32> = HashMap::with_max_entries(8192, 0);
}

const SIGKILL: u32 = 9;
/// Ancestors looked at for a package manager.
const MAX_ANCESTORS: u32 = 32;

/// The `MMAP_PREVENT_*` bits of a reported mapping of `file` (facts `info`, identity `key`)
/// from `source`: the reasons it is one to prevent, and `MMAP_PREVENT_KILLED` (SIGKILL sent)
/// or `MMAP_PREVENT_AUDIT` when the current process is one to stop. Reasons without an outcome
/// tell the caller that the file version must stay out of the seen-cache.
#[inline(always)]
pub fn judge(cfg: &KernelConfig, file: File, info: &FileInfo, key: &SeenKey, source: u32) -> u32 {
    let listed = unsafe { PREVENT_FILES.get(key) }.copied().unwrap_or(0);
    if listed == PREVENT_FILE_ALLOWED {
        return 0;
    }
    let mut why = 0;
    if cfg.prevent & PREVENT_FACTS != 0 {
        if info.unsafe_facts() != 0 {
            why |= MMAP_PREVENT_FACTS;
        }
        if dir_not_roots(cfg, file) {
            why |= MMAP_PREVENT_DIR;
        }
    }
    if cfg.prevent & PREVENT_UNVERIFIED != 0 && listed == PREVENT_FILE_UNVERIFIED {
        why |= MMAP_PREVENT_LISTED;
    }
    if why == 0
        || source == MMAP_SOURCE_EXEC_PROGRAM
        || (source == MMAP_SOURCE_EXEC_INTERPRETER && cfg.prevent & PREVENT_INTERPRETER == 0)
        || !credential(&bpf_get_current_comm().unwrap_or([0; 16]))
        || under_package_manager(cfg)
    {
        return why;
    }
    if cfg.prevent & PREVENT_KILL == 0 {
        return why | MMAP_PREVENT_AUDIT;
    }
    // SAFETY: a helper that takes a signal number; it signals the current process.
    if unsafe { bpf_send_signal(SIGKILL) } == 0 {
        why | MMAP_PREVENT_KILLED
    } else {
        why | MMAP_PREVENT_AUDIT
    }
}

#[inline(always)]
fn credential(comm: &[u8; 16]) -> bool {
    unsafe { PREVENT_COMMS.get(comm) }.copied() == Some(PREVENT_COMM_CREDENTIAL)
}

/// Whether the directory holding `file` is not root's alone: owned by another user, or
/// writable by its group or others (a sticky /tmp included). False for a file that has no
/// directory (memfd) or whose directory cannot be read.
#[inline(always)]
fn dir_not_roots(cfg: &KernelConfig, file: File) -> bool {
    let Some(dentry) = file.path(cfg).dentry(cfg) else {
        return false;
    };
    let Some(parent) = dentry.parent(cfg) else {
        return false;
    };
    if parent == dentry {
        return false;
    }
    let Some(dir) = parent.inode(cfg) else {
        return false;
    };
    if dir.is_null() {
        return false;
    }
    let mode = dir.mode(cfg).unwrap_or(0) as u32;
    let uid = dir.uid(cfg).unwrap_or(0);
    uid != 0 || mode & 0o022 != 0
}

struct Walk {
    task: Task,
    found: u32,
}

/// Whether an ancestor of the current process is named as a package manager.
#[inline(always)]
fn under_package_manager(cfg: &KernelConfig) -> bool {
    let Some(parent) = Task::current().real_parent(cfg) else {
        return false;
    };
    let mut w = Walk {
        task: parent,
        found: 0,
    };
    // SAFETY: `w` outlives the call; the callback gets it back as its context.
    unsafe {
        bpf_loop(
            MAX_ANCESTORS,
            ancestor_step as *mut c_void,
            &mut w as *mut Walk as *mut c_void,
            0,
        )
    };
    w.found != 0
}

#[inline(never)]
unsafe extern "C" fn ancestor_step(_i: u32, ctx: *mut c_void) -> i64 {
    let w = unsafe { &mut *(ctx as *mut Walk) };
    let Some(cfg) = config() else { return 1 };
    if w.task.is_null() {
        return 1;
    }
    let Some(comm) = w.task.comm(cfg) else {
        return 1;
    };
    if unsafe { PREVENT_COMMS.get(&comm) }.copied() == Some(PREVENT_COMM_PACKAGE_MANAGER) {
        w.found = 1;
        return 1;
    }
    let Some(next) = w.task.real_parent(cfg) else {
        return 1;
    };
    // The idle task, init's real parent, is its own.
    if next == w.task {
        return 1;
    }
    w.task = next;
    0
}
