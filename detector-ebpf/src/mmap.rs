//! Capture channel: executable file mappings.
//!
//! `mmap` with PROT_EXEC of a file (how ld.so maps a library's code, for a preload, a dlopen
//! or a DT_NEEDED alike), `mprotect` adding PROT_EXEC to a file mapping, and what the kernel
//! maps itself at exec, which no mmap call shows: the program and its ELF interpreter (the
//! dynamic loader, which a rootkit may replace with a copy reading another preload file). The
//! file is
//! resolved in the kernel, with the facts user space judges it by. Root-owned files that only
//! root can change cost one event per file version (the seen-cache), except in credential
//! programs, whose mappings of a version are reported until user space vouched for it (so that
//! ssh mapping a new library a millisecond after an ordinary process first did is seen); a file
//! a non-root user can write, one on tmpfs, a memfd, or a deleted file is reported every time, and so is every
//! mapping a process makes while its loader holds /etc/ld.so.preload (`preload_list`, which
//! also learns of the list's mmap here).
use aya_ebpf::{
    bindings::BPF_NOEXIST,
    cty::c_void,
    helpers::generated::{bpf_find_vma, bpf_get_current_task_btf, bpf_task_pt_regs},
    macros::{btf_tracepoint, tracepoint},
    maps::LruHashMap,
    programs::{BtfTracePointContext, TracePointContext},
};
use detector_common::{
    Channel, EventKind, KernelConfig, MmapEvent, SeenKey, MMAP_AFTER_PRELOAD_LIST,
    MMAP_SOURCE_EXEC_INTERPRETER, MMAP_SOURCE_EXEC_PROGRAM, MMAP_SOURCE_MMAP, MMAP_SOURCE_MPROTECT,
    PATH_TRUNCATED, SEEN_PENDING,
};

use crate::{
    credential,
    kernel::{Bprm, File, PtRegs, Task, Vma},
    preload_list,
    read::OrCount as _,
    shared::{config, is_self, named_map, ppid, reserve, submit_flags, submit_urgent},
    tp::{Record, SysEnterMmap, SysEnterMprotect},
    vfs::{build_path, copy_path, fd_file, inode_id, inode_info_of, path_parts, SCRATCH_PATH},
};

/// The channel whose read errors these programs count.
const CH: Channel = Channel::Mmap;

pub const PROT_READ: u32 = 0x1;
pub const PROT_EXEC: u64 = 0x4;
pub const MAP_PRIVATE: u32 = 0x2;
pub const MAP_ANONYMOUS: u64 = 0x20;
const VM_EXEC: u64 = 0x4;

named_map! {
    /// Safe files reported: pending (user space decides) or vouched for.
    static SEEN: LruHashMap<SeenKey, u8> = LruHashMap::with_max_entries(16384, 0);
}

#[tracepoint]
pub fn sys_enter_mmap(ctx: TracePointContext) -> u32 {
    let _ = try_mmap(&ctx);
    0
}

fn try_mmap(ctx: &TracePointContext) -> Option<()> {
    let rec = Record::<SysEnterMmap>::of(ctx);
    let prot = rec.prot();
    let flags = rec.flags();
    // An int argument: only the low 32 bits of the register are meaningful.
    let fd = rec.fd() as i32;
    if prot & PROT_EXEC == 0 {
        if preload_list::may_be_the_list(prot, flags, rec.addr(), fd) {
            let _ = preload_list::mark(fd, rec.len());
        }
        return None;
    }
    if flags & MAP_ANONYMOUS != 0 || fd < 0 {
        return None;
    }
    let cfg = config()?;
    if is_self(cfg) {
        return None;
    }
    let task = Task::current();
    let file = fd_file(cfg, task, fd as u64, CH)?;
    report::<true>(cfg, task, file, MMAP_SOURCE_MMAP, prot as u32, flags as u32)
}

pub struct VmaLookup {
    pub file: File,
    pub already_exec: u64,
}

/// The file of the mapping of the current task that holds `addr`, and whether that mapping is
/// executable already (null file: none, or anonymous memory).
#[inline(always)]
pub fn vma_at(addr: u64) -> VmaLookup {
    let mut found = VmaLookup {
        file: File::from_addr(0),
        already_exec: 0,
    };
    // SAFETY: the helper takes the current task, which BTF vouches for, and hands `found` to
    // `vma_found` only during the call.
    unsafe {
        bpf_find_vma(
            bpf_get_current_task_btf(),
            addr,
            vma_found as *mut c_void,
            &mut found as *mut VmaLookup as *mut c_void,
            0,
        )
    };
    found
}

/// `sched_process_exec(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)`, run
/// after the exec channel's program: the program the kernel loaded (`bprm->file`). Through the
/// seen-cache: an exec of a root-owned program costs a map lookup. A program of its own
/// (`exec_interpreter`) reports the interpreter: one path walk per program keeps each within
/// what older verifiers explore (6.1's refuses both walks in one program).
#[btf_tracepoint(function = "sched_process_exec")]
pub fn exec_program(ctx: BtfTracePointContext) -> i32 {
    let bprm = Bprm::from_addr(ctx.arg::<*const u8>(2) as u64);
    let _ = try_exec_program(bprm);
    0
}

/// The ELF loader maps text private, readable and executable.
pub const EXEC_PROT: u32 = PROT_READ | PROT_EXEC as u32;

fn try_exec_program(bprm: Bprm) -> Option<()> {
    let cfg = config()?;
    if is_self(cfg) {
        return None;
    }
    let program = bprm.file(cfg).or_count(CH)?;
    report::<false>(
        cfg,
        Task::current(),
        program,
        MMAP_SOURCE_EXEC_PROGRAM,
        EXEC_PROT,
        MAP_PRIVATE,
    )
}

/// On `sched_process_exec` too: the program's ELF interpreter. The kernel starts a dynamically
/// linked image at its interpreter's entry (start_thread), so the mapping that holds the new
/// image's instruction pointer is the interpreter's; when the pointer is in the program's own
/// text, the program is static and has none. Through the seen-cache: a map lookup per exec
/// with the usual loader.
#[btf_tracepoint(function = "sched_process_exec")]
pub fn exec_interpreter(ctx: BtfTracePointContext) -> i32 {
    let bprm = Bprm::from_addr(ctx.arg::<*const u8>(2) as u64);
    let _ = try_exec_interpreter(bprm);
    0
}

fn try_exec_interpreter(bprm: Bprm) -> Option<()> {
    let cfg = config()?;
    if is_self(cfg) {
        return None;
    }
    let task = Task::current();
    let file = interpreter(cfg, task, bprm)?;
    report::<false>(
        cfg,
        task,
        file,
        MMAP_SOURCE_EXEC_INTERPRETER,
        EXEC_PROT,
        MAP_PRIVATE,
    )
}

/// At `sched_process_exec`, the ELF interpreter the kernel mapped for `task`'s new image: the
/// file of the mapping that holds the user instruction pointer, when that is not the
/// program's own code (None: no interpreter, a static program, or `regs_ip` unknown).
#[inline(always)]
pub fn interpreter(cfg: &KernelConfig, task: Task, bprm: Bprm) -> Option<File> {
    if cfg.regs_ip == 0 {
        return None;
    }
    // SAFETY: the helper takes the current task, which BTF vouches for.
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf() as *mut _) };
    let ip = PtRegs::from_addr(regs as u64).ip(cfg).or_count(CH)?;
    let (start_code, end_code) = task.mm(cfg).or_count(CH)?.code(cfg).or_count(CH)?;
    if ip >= start_code && ip < end_code {
        return None;
    }
    let found = vma_at(ip);
    let program = bprm.file(cfg).or_count(CH)?;
    if found.file.is_null() || found.file == program {
        return None;
    }
    Some(found.file)
}

#[tracepoint]
pub fn sys_enter_mprotect(ctx: TracePointContext) -> u32 {
    let _ = try_mprotect(&ctx);
    0
}

fn try_mprotect(ctx: &TracePointContext) -> Option<()> {
    let rec = Record::<SysEnterMprotect>::of(ctx);
    let start = rec.start();
    let prot = rec.prot();
    if prot & PROT_EXEC == 0 {
        return None;
    }
    let cfg = config()?;
    if is_self(cfg) {
        return None;
    }
    let found = vma_at(start);
    // Anonymous memory (JITs) and mappings that were executable already are not news.
    if found.file.is_null() || found.already_exec != 0 {
        return None;
    }
    report::<true>(
        cfg,
        Task::current(),
        found.file,
        MMAP_SOURCE_MPROTECT,
        prot as u32,
        0,
    )
}

#[inline(never)]
unsafe extern "C" fn vma_found(_task: *mut c_void, vma: *mut c_void, ctx: *mut c_void) -> i64 {
    let out = unsafe { &mut *(ctx as *mut VmaLookup) };
    let Some(cfg) = config() else { return 0 };
    let vma = Vma::from_addr(vma as u64);
    out.file = vma.file(cfg).or_count(CH).unwrap_or(File::from_addr(0));
    out.already_exec = vma.flags(cfg).or_count(CH).unwrap_or(0) & VM_EXEC;
    0
}

/// `LIST`: the mapping may be one the loader makes while it holds /etc/ld.so.preload (not what
/// the kernel maps at exec, before the loader runs).
#[inline(always)]
fn report<const LIST: bool>(
    cfg: &KernelConfig,
    task: Task,
    file: File,
    source: u32,
    prot: u32,
    map_flags: u32,
) -> Option<()> {
    let inode = file.inode(cfg).or_count(CH)?;
    // The seen-cache first, with only the reads its key needs: ld.so maps the same system
    // libraries into every process. Only safe files are in it.
    let id = inode_id(cfg, inode, CH);
    let key = SeenKey {
        ino: id.ino,
        mtime_sec: id.mtime_sec,
        dev: id.dev,
        _pad: 0,
    };
    // While the loader holds /etc/ld.so.preload mapped, what it maps is what the list names:
    // reported every time.
    if let Some(&state) = unsafe { SEEN.get(key) } {
        let listed = LIST && preload_list::marked(cfg, task);
        if !listed
            && !(state == SEEN_PENDING && credential::runs_credential_program(task.addr()) != 0)
        {
            return None;
        }
    }
    let info = inode_info_of(cfg, inode, &id, CH);
    let safe = info.only_root_controls();
    if safe {
        // Pending from its first report; a version already there (vouched for) stays as it is.
        let _ = SEEN.insert(key, SEEN_PENDING, BPF_NOEXIST as u64);
    }
    let (mnt, dentry) = path_parts(cfg, file.path(cfg), CH)?;
    let (off, truncated) = build_path(cfg, mnt, dentry, SCRATCH_PATH, CH)?;
    let mut entry = reserve::<MmapEvent>(EventKind::Mmap, ppid(cfg, task, CH))?;
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    if truncated {
        ev.hdr.flags |= PATH_TRUNCATED;
    }
    // Asked again here rather than kept from above: a flag kept in a register through the path
    // walk doubles what the verifier explores (older kernels refuse the program).
    if LIST {
        ev.hdr.flags |= preload_list::flag(cfg, task);
    }
    ev.file = info;
    ev.source = source;
    ev.prot = prot;
    ev.map_flags = map_flags;
    ev.path_off = off;
    copy_path(SCRATCH_PATH, &mut ev.path);
    // What the kernel maps at exec is judged through /proc/<pid> (its root, its mount
    // namespace) while the process may be about to exit: the daemon is woken for an
    // interpreter, and for a program's first exec (a seen-cache miss). A program a non-root
    // user controls is reported at each of its execs, and is not woken for. A mapping made
    // while the loader holds the preload list wakes it.
    let urgent = match source {
        MMAP_SOURCE_EXEC_INTERPRETER => true,
        MMAP_SOURCE_EXEC_PROGRAM => safe,
        _ => !safe || ev.hdr.flags & MMAP_AFTER_PRELOAD_LIST != 0,
    };
    entry.submit(if urgent {
        submit_urgent()
    } else {
        submit_flags()
    });
    Some(())
}
