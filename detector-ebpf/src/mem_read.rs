//! Capture channel: reads of another process's memory — process_vm_readv (this module's
//! program), ptrace read requests (called from the mem_tamper channel's ptrace program),
//! `/proc/<pid>/mem` opened for reading and `/proc/<pid>/coredump_filter` for writing (called
//! from the file_change channel's open program), and core dumps asked for with a signal whose
//! default action dumps core (called from the signal channel's programs). All count their read
//! errors under [`Channel::MemRead`]. A process reading its own memory is not reported; one
//! (reader, target, operation, ptrace request or signal) is reported at most once a second.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_boot_ns},
    macros::tracepoint,
    maps::LruHashMap,
    programs::TracePointContext,
};
use detector_common::{
    Channel, EventKind, KernelConfig, MemReadEvent, PROC_DIR_NAME, PROC_SUPER_MAGIC,
    PTRACE_GETFPREGS, PTRACE_GETREGS, PTRACE_GETREGSET, PTRACE_PEEKDATA, PTRACE_PEEKTEXT,
    PTRACE_PEEKUSR, READ_COREDUMP_FILTER, READ_DUMP_SIGNAL, READ_PROCESS_VM_READV,
    READ_PROC_ENVIRON, READ_PROC_MEM, READ_PTRACE,
};

use crate::{
    kernel::{Dentry, Task},
    read::{self, OrCount as _},
    shared::{config, is_self, named_map, ppid, reserve, submit_urgent},
    tp::{Record, SysEnterProcessVmWritev},
    vfs::{dentry_inode, dentry_name, fd_file},
};

const CH: Channel = Channel::MemRead;

const FMODE_READ: u64 = 0x1;

/// One report a second per (reader, target, operation).
const REPEAT_NS: u64 = 1_000_000_000;

named_map! {
    /// (reader tgid, target pid, operation, request) to the time it was last reported.
    static MEM_READ_SEEN: LruHashMap<[u32; 4], u64> = LruHashMap::with_max_entries(4096, 0);
}

/// `process_vm_readv(pid, lvec, liovcnt, rvec, riovcnt, flags)`: the same record layout as
/// process_vm_writev's.
#[tracepoint]
pub fn sys_enter_process_vm_readv(ctx: TracePointContext) -> u32 {
    let rec = Record::<SysEnterProcessVmWritev>::of(&ctx);
    let pid = rec.pid() as u32;
    let rvec = rec.rvec();
    let riovcnt = rec.riovcnt();
    let _ = emit(READ_PROCESS_VM_READV, pid, riovcnt, rvec, true, None);
    0
}

/// A ptrace request that reads the tracee (PEEKTEXT, PEEKDATA, PEEKUSER, GETREGS, GETFPREGS,
/// GETREGSET): reported; other requests are not.
#[inline(always)]
pub fn ptrace_read(request: u64, pid: u32, addr: u64) {
    if matches!(
        request,
        PTRACE_PEEKTEXT
            | PTRACE_PEEKDATA
            | PTRACE_PEEKUSR
            | PTRACE_GETREGS
            | PTRACE_GETFPREGS
            | PTRACE_GETREGSET
    ) {
        let _ = emit(READ_PTRACE, pid, request, addr, false, None);
    }
}

/// At the exit of a successful open that did not ask for write access: reported when `fd` is
/// a `/proc/<pid>/mem` file (procfs, named `mem`), with its directory's name.
#[inline(always)]
pub fn proc_mem_open(cfg: &KernelConfig, task: Task, fd: u64) -> Option<()> {
    let file = fd_file(cfg, task, fd, CH)?;
    let dentry = file.path(cfg).dentry(cfg).or_count(CH)?;
    let magic = dentry_inode(cfg, dentry)
        .sb(cfg)
        .or_count(CH)?
        .magic(cfg)
        .or_count(CH)?;
    if magic != PROC_SUPER_MAGIC {
        return None;
    }
    let name: [u8; 8] = dentry_name(cfg, dentry, CH);
    let op = if name[..4] == *b"mem\0" {
        READ_PROC_MEM
    } else if name == *b"environ\0" {
        READ_PROC_ENVIRON
    } else {
        return None;
    };
    let dir: [u8; PROC_DIR_NAME] = dentry_name(cfg, dentry.parent(cfg).or_count(CH)?, CH);
    let f_mode = file.mode(cfg).or_count(CH)? as u64;
    if f_mode & FMODE_READ == 0 {
        return None; // an O_PATH descriptor reads nothing
    }
    emit(op, 0, f_mode, 0, false, Some((task, dir)))
}

/// At the exit of a successful open for writing of a procfs file named `coredump_filter`
/// (`dentry`): reported with its directory's name.
#[inline(always)]
pub fn coredump_filter_open(cfg: &KernelConfig, task: Task, dentry: Dentry, f_mode: u32) {
    let Some(parent) = dentry.parent(cfg).or_count(CH) else {
        return;
    };
    let dir: [u8; PROC_DIR_NAME] = dentry_name(cfg, parent, CH);
    let _ = emit(
        READ_COREDUMP_FILTER,
        0,
        f_mode as u64,
        0,
        false,
        Some((task, dir)),
    );
}

/// A signal whose default action dumps core, sent by a process to process `target`.
#[inline(always)]
pub fn dump_signal(target: u32, sig: u32) {
    let _ = emit(READ_DUMP_SIGNAL, target, sig as u64, 0, false, None);
}

/// Reports one read. `addr` is the remote address, or with `iovec` the user address of the
/// first remote iovec (whose base and length are read). `proc` is the opener and the
/// `/proc/<pid>/mem` directory's name for an open.
#[inline(always)]
fn emit(
    op: u32,
    target: u32,
    request: u64,
    addr: u64,
    iovec: bool,
    proc: Option<(Task, [u8; PROC_DIR_NAME])>,
) -> Option<()> {
    let cfg = config()?;
    if is_self(cfg) {
        return None;
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if target == tgid {
        return None; // its own memory
    }
    let now = unsafe { bpf_ktime_get_boot_ns() };
    if proc.is_none() {
        let key = [tgid, target, op, request as u32];
        if let Some(last) = MEM_READ_SEEN.get_ptr(key) {
            // SAFETY: a value of this map.
            if now.wrapping_sub(unsafe { *last }) < REPEAT_NS {
                return None;
            }
        }
        let _ = MEM_READ_SEEN.insert(key, now, 0);
    }
    let (remote, bytes) = if iovec {
        read::user::<[u64; 2]>(addr)
            .or_count(CH)
            .map_or((0, 0), |v| (v[0], v[1]))
    } else {
        (addr, 0)
    };
    let task = match proc {
        Some((task, _)) => task,
        None => Task::current(),
    };
    let mut entry = reserve::<MemReadEvent>(EventKind::MemRead, ppid(cfg, task, CH))?;
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    ev.op = op;
    ev.target_pid = target;
    ev.request = request;
    ev.addr = remote;
    ev.bytes = bytes;
    ev.dir = match proc {
        Some((_, dir)) => dir,
        None => [0; PROC_DIR_NAME],
    };
    entry.submit(submit_urgent());
    Some(())
}
