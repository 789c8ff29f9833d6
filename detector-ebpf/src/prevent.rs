//! Prevention: programs of their own, attached only while `[prevent]` is on (after the
//! mapping programs on the same tracepoints), that judge every executable mapping a credential
//! process makes — `sys_enter_mmap`, `sys_enter_mprotect`, and on `sched_process_exec` the ELF
//! interpreter the kernel mapped — and stop it: `bpf_send_signal(SIGKILL)`, so the process dies
//! on its way back to user space, before the mapping returns and before any code of the mapped
//! file runs. Each stop (or, in audit mode, each would-be stop) is an `MmapEvent` of its own
//! whose `MMAP_PREVENT_*` flags say what was done and why; the mapping programs' own reports
//! are unchanged.
//!
//! Decided from what the kernel sees alone: the file's facts (memfd, deleted, tmpfs or ramfs,
//! not owned by root, writable by group or others), its directory (not root's alone), and the
//! file versions user space listed in `PREVENT_FILES` (found unpackaged or modified; or
//! allowed, never stopped). Only processes that run a credential program are stopped (their
//! executable's basename in `CREDENTIAL_NAMES`, as the mapping programs tell them; never
//! `comm`, which a process sets at will), never one whose executable `PREVENT_EXES` lists as
//! allowed, and never one that runs, or descends from a process that runs, an executable
//! `PREVENT_EXES` lists as a package manager's (by device and inode: a copy of dpkg elsewhere,
//! or a process calling itself dpkg, is not one).
//!
//! Where the deny path is attached (`lsm.rs`, `PREVENT_DENY`), the LSM programs refuse the
//! mappings a process asks for (the same judgement, [`deny`]) and these programs report them as
//! denied instead of sending a signal.
use aya_ebpf::{
    cty::c_void,
    helpers::{generated::bpf_loop, generated::bpf_send_signal},
    macros::{btf_tracepoint, tracepoint},
    maps::{HashMap, PerCpuArray},
    programs::{BtfTracePointContext, TracePointContext},
};
use detector_common::{
    Channel, EventKind, ExeKey, FileInfo, KernelConfig, MmapEvent, SeenKey, MMAP_PREVENT_AUDIT,
    MMAP_PREVENT_DENIED, MMAP_PREVENT_DIR, MMAP_PREVENT_FACTS, MMAP_PREVENT_KILLED,
    MMAP_PREVENT_LISTED, MMAP_SOURCE_EXEC_INTERPRETER, MMAP_SOURCE_MMAP, MMAP_SOURCE_MPROTECT,
    PATH_TRUNCATED, PREVENT_DENY, PREVENT_EXE_ALLOWED, PREVENT_EXE_PACKAGE_MANAGER, PREVENT_FACTS,
    PREVENT_FILE_ALLOWED, PREVENT_FILE_UNVERIFIED, PREVENT_INTERPRETER, PREVENT_KILL,
    PREVENT_UNVERIFIED,
};

use crate::{
    credential::runs_credential_program,
    kernel::{Bprm, File, Task},
    mmap::{interpreter, vma_at, EXEC_PROT, MAP_ANONYMOUS, MAP_PRIVATE, PROT_EXEC},
    read::OrCount as _,
    shared::{config, is_self, named_map, ppid, reserve, submit_urgent},
    tp::{Record, SysEnterMmap, SysEnterMprotect},
    vfs::{build_path, copy_path, fd_file, inode_id, inode_info_of, path_parts, SCRATCH_PATH},
};

/// The channel whose read errors and losses these programs count.
const CH: Channel = Channel::Mmap;

named_map! {
    /// Executables (device, inode) to `PREVENT_EXE_*`, written by user space.
    static PREVENT_EXES: HashMap<ExeKey, u32> = HashMap::with_max_entries(256, 0);
}

named_map! {
    /// File versions to `PREVENT_FILE_*`, written by user space.
    static PREVENT_FILES: HashMap<SeenKey, u32> = HashMap::with_max_entries(8192, 0);
}

named_map! {
    /// The `MMAP_PREVENT_*` bits of the mapping being judged, built here (map memory, which the
    /// verifier does not track bit by bit) rather than in a register: every combination of
    /// reasons kept as a constant would be a state of its own through the rest of the program
    /// (6.1's verifier gives up). Index 0 for these programs, 1 for the LSM programs.
    static PREVENT_VERDICT: PerCpuArray<u32> = PerCpuArray::with_max_entries(2, 0);
}

const SLOT_TRACEPOINT: u32 = 0;
const SLOT_LSM: u32 = 1;

const SIGKILL: u32 = 9;
/// Ancestors looked at for a package manager.
const MAX_ANCESTORS: u32 = 32;

#[tracepoint]
pub fn prevent_mmap(ctx: TracePointContext) -> u32 {
    let _ = try_prevent_mmap(&ctx);
    0
}

fn try_prevent_mmap(ctx: &TracePointContext) -> Option<()> {
    let rec = Record::<SysEnterMmap>::of(ctx);
    let prot = rec.prot();
    let flags = rec.flags();
    // An int argument: only the low 32 bits of the register are meaningful.
    let fd = rec.fd() as i32;
    if prot & PROT_EXEC == 0 || flags & MAP_ANONYMOUS != 0 || fd < 0 {
        return None;
    }
    let cfg = current(0)?;
    let task = Task::current();
    let file = fd_file(cfg, task, fd as u64, CH)?;
    act(cfg, task, file, MMAP_SOURCE_MMAP, prot as u32, flags as u32)
}

#[tracepoint]
pub fn prevent_mprotect(ctx: TracePointContext) -> u32 {
    let _ = try_prevent_mprotect(&ctx);
    0
}

fn try_prevent_mprotect(ctx: &TracePointContext) -> Option<()> {
    let rec = Record::<SysEnterMprotect>::of(ctx);
    let prot = rec.prot();
    if prot & PROT_EXEC == 0 {
        return None;
    }
    let cfg = current(0)?;
    let found = vma_at(rec.start());
    if found.file.is_null() || found.already_exec != 0 {
        return None;
    }
    act(
        cfg,
        Task::current(),
        found.file,
        MMAP_SOURCE_MPROTECT,
        prot as u32,
        0,
    )
}

/// `sched_process_exec`: the ELF interpreter the kernel mapped for the new image (found as the
/// mapping program `exec_interpreter` finds it).
#[btf_tracepoint(function = "sched_process_exec")]
pub fn prevent_exec_interpreter(ctx: BtfTracePointContext) -> i32 {
    let bprm = Bprm::from_addr(ctx.arg::<*const u8>(2) as u64);
    let _ = try_prevent_exec_interpreter(bprm);
    0
}

fn try_prevent_exec_interpreter(bprm: Bprm) -> Option<()> {
    let cfg = current(PREVENT_INTERPRETER)?;
    let task = Task::current();
    let file = interpreter(cfg, task, bprm)?;
    act(
        cfg,
        task,
        file,
        MMAP_SOURCE_EXEC_INTERPRETER,
        EXEC_PROT,
        MAP_PRIVATE,
    )
}

/// The configuration when prevention (with `also` of its bits) is on and the current process,
/// not the daemon, runs a credential program that is not allowed.
#[inline(always)]
fn current(also: u32) -> Option<&'static KernelConfig> {
    let cfg = config()?;
    if cfg.prevent == 0 || cfg.prevent & also != also || is_self(cfg) {
        return None;
    }
    credential(cfg, Task::current()).then_some(cfg)
}

/// Judges the current process's mapping of `file` and, when it is one to stop, stops it and
/// reports it.
#[inline(always)]
fn act(
    cfg: &KernelConfig,
    task: Task,
    file: File,
    source: u32,
    prot: u32,
    map_flags: u32,
) -> Option<()> {
    if stop_if_judged(file.addr(), source as u64) == 0 {
        return None;
    }
    let inode = file.inode(cfg).or_count(CH)?;
    let id = inode_id(cfg, inode, CH);
    let info = inode_info_of(cfg, inode, &id, CH);
    let (mnt, dentry) = path_parts(cfg, file.path(cfg), CH)?;
    let (off, truncated) = build_path(cfg, mnt, dentry, SCRATCH_PATH, CH)?;
    let mut entry = reserve::<MmapEvent>(EventKind::Mmap, ppid(cfg, task, CH))?;
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    ev.hdr.flags = PREVENT_VERDICT.get(SLOT_TRACEPOINT).copied().unwrap_or(0);
    if truncated {
        ev.hdr.flags |= PATH_TRUNCATED;
    }
    ev.file = info;
    ev.source = source;
    ev.prot = prot;
    ev.map_flags = map_flags;
    ev.path_off = off;
    copy_path(SCRATCH_PATH, &mut ev.path);
    entry.submit(submit_urgent());
    Some(())
}

/// 1 when the current process's mapping of the file at `file` from `source` is one to stop
/// (then stopped, or flagged in audit mode: see [`judge`]), else 0. A BPF subprogram: the
/// judgement's branches (each combination of reasons, the ancestor walk) are verified once
/// rather than multiplied into the states of the path building and reporting after it (6.1's
/// verifier refused `prevent_exec_interpreter` with them inlined: E2BIG).
#[inline(never)]
fn stop_if_judged(file: u64, source: u64) -> u64 {
    let Some(cfg) = config() else { return 0 };
    let file = File::from_addr(file);
    let Some(inode) = file.inode(cfg).or_count(CH) else {
        return 0;
    };
    let id = inode_id(cfg, inode, CH);
    let info = inode_info_of(cfg, inode, &id, CH);
    let key = SeenKey {
        ino: id.ino,
        mtime_sec: id.mtime_sec,
        dev: id.dev,
        _pad: 0,
    };
    match judge(cfg, file, &info, &key, source as u32) {
        Some(true) => 1,
        _ => 0,
    }
}

/// Whether the current (credential) process's mapping of `file` (facts `info`, identity
/// `key`) from `source` is one to stop; if so, stops it, and slot `SLOT_TRACEPOINT` of
/// `PREVENT_VERDICT` holds the reasons and what was done: `MMAP_PREVENT_KILLED` (SIGKILL sent),
/// `MMAP_PREVENT_DENIED` (the LSM programs refuse it), `MMAP_PREVENT_AUDIT` (audit mode; with
/// `MMAP_PREVENT_DENIED` when the deny path would have refused it).
#[inline(always)]
fn judge(
    cfg: &KernelConfig,
    file: File,
    info: &FileInfo,
    key: &SeenKey,
    source: u32,
) -> Option<bool> {
    let slot = PREVENT_VERDICT.get_ptr_mut(SLOT_TRACEPOINT)?;
    if !verdict(cfg, file, info, key, source, slot) {
        return Some(false);
    }
    let deny = cfg.prevent & PREVENT_DENY != 0 && denied_source(source);
    // SAFETY (each write below): a per-CPU slot; this program is its only user on this CPU
    // while it runs.
    if deny {
        unsafe { *slot |= MMAP_PREVENT_DENIED };
    }
    if cfg.prevent & PREVENT_KILL == 0 {
        unsafe { *slot |= MMAP_PREVENT_AUDIT };
        return Some(true);
    }
    if deny {
        return Some(true);
    }
    // SAFETY: a helper that takes a signal number; it signals the current process.
    if unsafe { bpf_send_signal(SIGKILL) } == 0 {
        unsafe { *slot |= MMAP_PREVENT_KILLED };
    } else {
        unsafe { *slot |= MMAP_PREVENT_AUDIT };
    }
    Some(true)
}

/// The mappings the LSM programs judge: those a process asks for (not what exec maps).
#[inline(always)]
fn denied_source(source: u32) -> bool {
    source != MMAP_SOURCE_EXEC_INTERPRETER
}

/// For the LSM programs: whether prevention (in prevent mode) stops the current process's
/// executable mapping of `file` — the judgement the mapping tracepoints make of it.
#[inline(always)]
pub fn deny(cfg: &KernelConfig, file: File, source: u32) -> bool {
    if cfg.prevent & PREVENT_KILL == 0 || !credential(cfg, Task::current()) {
        return false;
    }
    let Some(inode) = file.inode(cfg) else {
        return false;
    };
    let id = inode_id(cfg, inode, Channel::Mmap);
    let info = inode_info_of(cfg, inode, &id, Channel::Mmap);
    let key = SeenKey {
        ino: id.ino,
        mtime_sec: id.mtime_sec,
        dev: id.dev,
        _pad: 0,
    };
    let Some(slot) = PREVENT_VERDICT.get_ptr_mut(SLOT_LSM) else {
        return false;
    };
    verdict(cfg, file, &info, &key, source, slot)
}

/// Writes to `slot` the reasons (`MMAP_PREVENT_FACTS`, `_DIR`, `_LISTED`) to prevent the
/// current credential process's mapping; true when it is one to stop for them (no package
/// manager above).
#[inline(always)]
fn verdict(
    cfg: &KernelConfig,
    file: File,
    info: &FileInfo,
    key: &SeenKey,
    source: u32,
    slot: *mut u32,
) -> bool {
    // SAFETY (each access to `slot`): a per-CPU map slot of the caller's own.
    unsafe { *slot = 0 };
    let listed = unsafe { PREVENT_FILES.get(key) }.copied().unwrap_or(0);
    if listed == PREVENT_FILE_ALLOWED {
        return false;
    }
    if cfg.prevent & PREVENT_FACTS != 0 {
        if info.unsafe_facts() != 0 {
            unsafe { *slot |= MMAP_PREVENT_FACTS };
        }
        if dir_not_roots(cfg, file) {
            unsafe { *slot |= MMAP_PREVENT_DIR };
        }
    }
    if cfg.prevent & PREVENT_UNVERIFIED != 0 && listed == PREVENT_FILE_UNVERIFIED {
        unsafe { *slot |= MMAP_PREVENT_LISTED };
    }
    if unsafe { *slot } == 0
        || (source == MMAP_SOURCE_EXEC_INTERPRETER && cfg.prevent & PREVENT_INTERPRETER == 0)
    {
        return false;
    }
    !under_package_manager(cfg)
}

/// Whether `task` runs a credential program whose executable is not allowed.
#[inline(always)]
fn credential(cfg: &KernelConfig, task: Task) -> bool {
    runs_credential_program(task.addr()) != 0 && exe_role(cfg, task) != PREVENT_EXE_ALLOWED
}

/// The `PREVENT_EXES` role of the executable `task` runs (0: none, or unreadable).
#[inline(always)]
fn exe_role(cfg: &KernelConfig, task: Task) -> u32 {
    let Some(inode) = task
        .mm(cfg)
        .and_then(|mm| mm.exe_file(cfg))
        .and_then(|exe| exe.inode(cfg))
    else {
        return 0;
    };
    let id = inode_id(cfg, inode, CH);
    let key = ExeKey {
        ino: id.ino,
        dev: id.dev,
        _pad: 0,
    };
    unsafe { PREVENT_EXES.get(key) }.copied().unwrap_or(0)
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

/// Whether the current process or an ancestor runs a package manager's executable.
#[inline(always)]
fn under_package_manager(_cfg: &KernelConfig) -> bool {
    let mut w = Walk {
        task: Task::current(),
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
    if exe_role(cfg, w.task) == PREVENT_EXE_PACKAGE_MANAGER {
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
