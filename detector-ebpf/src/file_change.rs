//! Capture channel: changes to the loader's, the libraries', PAM's and the package database's
//! files, and `/proc/<pid>/mem` writes (and, through [`mem_read`], `/proc/<pid>/mem` reads and
//! `/proc/<pid>/coredump_filter` writes).
//!
//! Files created or written in the watched directories are not judged here: user space has
//! fanotify marks on those directories, which cost nothing to opens elsewhere. The open
//! program judges at syscall exit the file the kernel actually opened, for procfs files only:
//! `/proc/<pid>/mem` opened for write (and the reads and core-dump settings above). Renames, unlinks, truncates,
//! symbolic and hard links are judged at entry on their strings: absolute names under /etc,
//! the library directories (/lib*, /usr/lib*, /usr/local/lib) or /var/lib/dpkg, and relative
//! names whose base directory (dirfd or cwd) is in `WATCH` (filled by user space with the
//! directories it watches: /etc, the library and PAM module directories, /var/lib/dpkg...);
//! the base directory is resolved in the kernel for user space.
use aya_ebpf::{
    helpers::generated::{bpf_get_current_task_btf, bpf_task_pt_regs},
    macros::tracepoint,
    maps::{HashMap, PerCpuArray},
    programs::TracePointContext,
};
use detector_common::{
    Channel, EventKind, FileChangeEvent, KernelConfig, MemTamperEvent, WatchKey, DIR_TRUNCATED,
    FILE_OP_LINK, FILE_OP_RENAME, FILE_OP_SYMLINK, FILE_OP_TRUNCATE, FILE_OP_UNLINK, NAME_MAX,
    PATH_TRUNCATED, PROC_SUPER_MAGIC, ROOTED_ELSEWHERE, TAMPER_PROC_MEM,
};

use crate::{
    kernel::{Dentry, Inode, PtRegs, SuperBlock, Task, VfsMount},
    mem_read,
    read::{self, count_error, OrCount as _},
    shared::{config, current_task_and_ppid, is_self, named_map, ppid, reserve, submit_urgent},
    tp::{
        Record, SysEnterRename, SysEnterRenameat, SysEnterSymlinkat, SysEnterTruncate,
        SysEnterUnlink, SysEnterUnlinkat, SysExit,
    },
    vfs::{
        build_path, copy_path, dentry_inode, dentry_name, fd_file, path_parts, SCRATCH_DIR,
        SCRATCH_PATH,
    },
};

named_map! {
    /// Watched directories, by (dev, inode). Filled by user space at start.
    pub static WATCH: HashMap<WatchKey, u32> = HashMap::with_max_entries(256, 0);
}

named_map! {
    /// Syscall string arguments being judged (0: name, 1: name2).
    static NAMES: PerCpuArray<[u8; NAME_MAX]> = PerCpuArray::with_max_entries(2, 0);
}

/// The channel whose read errors these programs count (a `/proc/<pid>/mem` open included).
const CH: Channel = Channel::FileChange;

const FMODE_WRITE: u32 = 0x2;
const O_ACCMODE: u64 = 0o3;
const O_RDONLY: u64 = 0;
const AT_FDCWD: i64 = -100;

// ---- opens -------------------------------------------------------------------------------

#[tracepoint]
pub fn sys_exit_open(ctx: TracePointContext) -> u32 {
    let _ = try_open_exit(&ctx);
    0
}

fn try_open_exit(ctx: &TracePointContext) -> Option<()> {
    let rec = Record::<SysExit>::of(ctx);
    let fd = rec.ret();
    if fd < 0 {
        return None;
    }
    let cfg = config()?;
    if is_self(cfg) {
        return None;
    }
    // Every successful open of every process comes here: reject with as few reads as
    // possible (opened for write, then on procfs) before anything that only a reported open
    // needs. An openat's flags are still in the task's saved registers: one read rejects a
    // read-only open, the common case.
    if cfg.regs_arg2 != 0 && rec.syscall_nr() as u32 == cfg.openat_nr {
        // SAFETY: the helpers take the current task, which BTF vouches for.
        let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf() as *mut _) };
        let flags = PtRegs::from_addr(regs as u64)
            .syscall_arg2(cfg)
            .or_count(CH)?;
        if flags & O_ACCMODE == O_RDONLY {
            return mem_read::proc_mem_open(cfg, Task::current(), fd as u64);
        }
    }
    let task = Task::current();
    let file = fd_file(cfg, task, fd as u64, CH)?;
    let f_mode = file.mode(cfg).or_count(CH)?;
    if f_mode & FMODE_WRITE == 0 {
        return mem_read::proc_mem_open(cfg, task, fd as u64);
    }
    let dentry = file.path(cfg).dentry(cfg).or_count(CH)?;
    let inode = dentry_inode(cfg, dentry);
    let sb = inode.sb(cfg).or_count(CH)?;
    if sb.magic(cfg).or_count(CH)? != PROC_SUPER_MAGIC {
        return None;
    }
    let name: [u8; 16] = dentry_name(cfg, dentry, CH);
    if name == *b"coredump_filter\0" {
        mem_read::coredump_filter_open(cfg, task, dentry, f_mode);
        return None;
    }
    if name[..4] != *b"mem\0" {
        return None;
    }
    let (mnt, dentry) = path_parts(cfg, file.path(cfg), CH)?;
    proc_mem(cfg, ppid(cfg, task, CH), mnt, dentry)
}

fn proc_mem(cfg: &KernelConfig, ppid: u32, mnt: VfsMount, dentry: Dentry) -> Option<()> {
    let (off, truncated) = build_path(cfg, mnt, dentry, SCRATCH_PATH, CH)?;
    let mut entry = reserve::<MemTamperEvent>(EventKind::MemTamper, ppid)?;
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    if truncated {
        ev.hdr.flags |= PATH_TRUNCATED;
    }
    ev.op = TAMPER_PROC_MEM;
    ev.target_pid = 0;
    ev.request = 0;
    ev.addr = 0;
    ev.path_off = off;
    ev._pad = 0;
    copy_path(SCRATCH_PATH, &mut ev.path);
    entry.submit(submit_urgent());
    Some(())
}

/// Whether the directory `dir_inode`, on the filesystem of super block `sb`, is in WATCH: two
/// reads for its (dev, inode).
#[inline(always)]
fn is_watched(cfg: &KernelConfig, dir_inode: Inode, sb: SuperBlock) -> bool {
    let key = match (dir_inode.ino(cfg), sb.dev(cfg)) {
        (Some(ino), Some(dev)) => WatchKey { ino, dev, _pad: 0 },
        _ => {
            count_error(CH);
            return false;
        }
    };
    unsafe { WATCH.get(key) }.is_some()
}

#[inline(always)]
fn watched(cfg: &KernelConfig, dir_dentry: Dentry) -> bool {
    let inode = dentry_inode(cfg, dir_dentry);
    match inode.sb(cfg).or_count(CH) {
        Some(sb) => is_watched(cfg, inode, sb),
        None => false,
    }
}

// ---- renames, unlinks, truncates ------------------------------------------------------------

/// A dirfd argument: only the low 32 bits of the register are meaningful.
#[inline(always)]
fn dfd(arg: u64) -> i64 {
    arg as i32 as i64
}

/// renameat and renameat2 (whose fifth argument, the flags, does not matter here).
#[tracepoint]
pub fn sys_enter_renameat(ctx: TracePointContext) -> u32 {
    let rec = Record::<SysEnterRenameat>::of(&ctx);
    let _ = string_op(
        FILE_OP_RENAME,
        dfd(rec.olddfd()),
        rec.oldname(),
        dfd(rec.newdfd()),
        rec.newname(),
    );
    0
}

#[tracepoint]
pub fn sys_enter_rename(ctx: TracePointContext) -> u32 {
    let rec = Record::<SysEnterRename>::of(&ctx);
    let _ = string_op(
        FILE_OP_RENAME,
        AT_FDCWD,
        rec.oldname(),
        AT_FDCWD,
        rec.newname(),
    );
    0
}

#[tracepoint]
pub fn sys_enter_unlinkat(ctx: TracePointContext) -> u32 {
    let rec = Record::<SysEnterUnlinkat>::of(&ctx);
    let _ = string_op(FILE_OP_UNLINK, dfd(rec.dfd()), rec.pathname(), AT_FDCWD, 0);
    0
}

#[tracepoint]
pub fn sys_enter_unlink(ctx: TracePointContext) -> u32 {
    let rec = Record::<SysEnterUnlink>::of(&ctx);
    let _ = string_op(FILE_OP_UNLINK, AT_FDCWD, rec.pathname(), AT_FDCWD, 0);
    0
}

#[tracepoint]
pub fn sys_enter_truncate(ctx: TracePointContext) -> u32 {
    let rec = Record::<SysEnterTruncate>::of(&ctx);
    let _ = string_op(FILE_OP_TRUNCATE, AT_FDCWD, rec.path(), AT_FDCWD, 0);
    0
}

/// symlinkat: the link's name is judged; its target is read by user space from the link.
#[tracepoint]
pub fn sys_enter_symlinkat(ctx: TracePointContext) -> u32 {
    let rec = Record::<SysEnterSymlinkat>::of(&ctx);
    let _ = string_op(
        FILE_OP_SYMLINK,
        dfd(rec.newdfd()),
        rec.newname(),
        AT_FDCWD,
        0,
    );
    0
}

#[tracepoint]
pub fn sys_enter_symlink(ctx: TracePointContext) -> u32 {
    let rec = Record::<SysEnterRename>::of(&ctx);
    let _ = string_op(FILE_OP_SYMLINK, AT_FDCWD, rec.newname(), AT_FDCWD, 0);
    0
}

/// linkat: the existing file, then the new name (as a rename's).
#[tracepoint]
pub fn sys_enter_linkat(ctx: TracePointContext) -> u32 {
    let rec = Record::<SysEnterRenameat>::of(&ctx);
    let _ = string_op(
        FILE_OP_LINK,
        dfd(rec.olddfd()),
        rec.oldname(),
        dfd(rec.newdfd()),
        rec.newname(),
    );
    0
}

#[tracepoint]
pub fn sys_enter_link(ctx: TracePointContext) -> u32 {
    let rec = Record::<SysEnterRename>::of(&ctx);
    let _ = string_op(
        FILE_OP_LINK,
        AT_FDCWD,
        rec.oldname(),
        AT_FDCWD,
        rec.newname(),
    );
    0
}

/// Reads a user string into NAMES[`slot`]; returns a pointer to it.
#[inline(always)]
fn read_name(slot: u32, user: u64) -> Option<*mut [u8; NAME_MAX]> {
    let buf = NAMES.get_ptr_mut(slot)?;
    let b = unsafe { &mut *buf };
    b[0] = 0;
    if user != 0 {
        let _ = read::user_str(user, b).or_count(CH);
    }
    Some(buf)
}

/// Whether `n` starts with `prefix`.
#[inline(always)]
fn starts_with<const N: usize>(n: &[u8; NAME_MAX], prefix: &[u8; N]) -> bool {
    let mut i = 0;
    while i < N {
        if n[i] != prefix[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Absolute names under /etc/, the library directories (/lib*, /usr/lib*, /usr/local/lib) or
/// the package database (/var/lib/dpkg).
#[inline(always)]
fn interesting_absolute(n: &[u8; NAME_MAX]) -> bool {
    n[0] == b'/'
        && (starts_with(n, b"/etc/")
            || starts_with(n, b"/lib")
            || starts_with(n, b"/usr/lib")
            || starts_with(n, b"/usr/local/lib")
            || starts_with(n, b"/var/lib/dpkg"))
}

/// The (vfsmount, dentry) a relative name is resolved against.
#[inline(always)]
fn base_dir(cfg: &KernelConfig, task: Task, dfd: i64) -> Option<(VfsMount, Dentry)> {
    if dfd == AT_FDCWD {
        path_parts(cfg, task.fs(cfg).or_count(CH)?.pwd(cfg), CH)
    } else if dfd >= 0 {
        let file = fd_file(cfg, task, dfd as u64, CH)?;
        path_parts(cfg, file.path(cfg), CH)
    } else {
        None
    }
}

#[inline(always)]
fn watched_base(cfg: &KernelConfig, task: Task, dfd: i64) -> Option<(VfsMount, Dentry)> {
    let (m, d) = base_dir(cfg, task, dfd)?;
    if watched(cfg, d) {
        Some((m, d))
    } else {
        None
    }
}

/// The task's root directory when it is not the host's (by device and inode: a bind mount of
/// the host's root is the host's root).
#[inline(always)]
fn foreign_root(cfg: &KernelConfig, task: Task) -> Option<(VfsMount, Dentry)> {
    let (m, d) = path_parts(cfg, task.fs(cfg).or_count(CH)?.root(cfg), CH)?;
    let inode = dentry_inode(cfg, d);
    let ino = inode.ino(cfg).or_count(CH)?;
    let dev = inode.sb(cfg).or_count(CH)?.dev(cfg).or_count(CH)?;
    if ino == cfg.host_root_ino && dev == cfg.host_root_dev {
        None
    } else {
        Some((m, d))
    }
}

/// `name` (and `name2` for a rename) relative to `dfd`/`dfd2`: report when interesting.
#[inline(always)]
fn string_op(op: u32, dfd: i64, name: u64, dfd2: i64, name2: u64) -> Option<()> {
    let cfg = config()?;
    if is_self(cfg) {
        return None;
    }
    let n1 = unsafe { &*read_name(0, name)? };
    let n2 = unsafe { &*read_name(1, name2)? };
    let (task, ppid) = current_task_and_ppid(cfg, CH);
    let mut report = interesting_absolute(n1) || interesting_absolute(n2);
    // The base directory of a relative name (the destination's first), when it is watched.
    // `name2 != 0` keeps the second name out of the programs that have none.
    let mut dir = None;
    if name2 != 0 && n2[0] != 0 && n2[0] != b'/' {
        dir = watched_base(cfg, task, dfd2);
    }
    if dir.is_none() && n1[0] != 0 && n1[0] != b'/' {
        dir = watched_base(cfg, task, dfd);
    }
    report |= dir.is_some();
    if !report {
        return None;
    }
    // An absolute name of a process in a chroot names a file under its root: the root's path
    // goes in `dir`.
    let mut rooted = false;
    if dir.is_none() {
        dir = foreign_root(cfg, task);
        rooted = dir.is_some();
    }
    let mut dir_off = 0;
    let mut dir_truncated = false;
    if let Some((m, d)) = dir {
        let (off, t) = build_path(cfg, m, d, SCRATCH_DIR, CH)?;
        dir_off = off;
        dir_truncated = t;
    }
    let mut entry = reserve::<FileChangeEvent>(EventKind::FileChange, ppid)?;
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    if dir_truncated {
        ev.hdr.flags |= DIR_TRUNCATED;
    }
    if rooted {
        ev.hdr.flags |= ROOTED_ELSEWHERE;
    }
    ev.file = Default::default();
    ev.op = op;
    ev.op_flags = 0;
    ev.path_off = 0;
    ev.path[0] = 0;
    ev.dir[0] = 0;
    ev.dir_off = dir_off;
    if dir.is_some() {
        copy_path(SCRATCH_DIR, &mut ev.dir);
    }
    // Map memory to ring buffer, with one helper call each rather than a copy loop.
    let _ = read::kernel_buf(n1.as_ptr() as u64, &mut ev.name);
    let _ = read::kernel_buf(n2.as_ptr() as u64, &mut ev.name2);
    entry.submit(submit_urgent());
    Some(())
}
