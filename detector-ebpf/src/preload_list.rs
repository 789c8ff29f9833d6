//! Capture channel: /etc/ld.so.preload as each process's loader read it.
//!
//! glibc's loader reads the list with `_dl_sysdep_read_whole_file`: open, fstat, then
//! `mmap(NULL, size, PROT_READ|PROT_WRITE, MAP_PRIVATE, fd, 0)`. It parses that private copy
//! in place (every byte is read, so every page is faulted in; separators become NUL, comments
//! spaces), maps each object it names, and unmaps the list. So:
//! - the list's mmap (seen by the mmap channel's `sys_enter_mmap`, which runs for every mmap
//!   anyway: only that exact call shape is looked at further, by the file's name and its
//!   directory's) marks the process in `PRELOAD_MARKS` with the file's facts at that moment;
//! - while the mark holds, the loader maps only the objects the list names: each executable
//!   mapping of the process is reported past the seen-cache, flagged `MMAP_AFTER_PRELOAD_LIST`
//!   (`marked`, one map lookup per executable mapping);
//! - the list's munmap (`sys_enter_munmap`: one map lookup per munmap) ends the mark and sends
//!   the loader's copy, read from its memory, with the file's facts: what the loader used,
//!   whatever the file holds by the time user space looks.
//!
//! Any process that maps a file named `ld.so.preload` in a directory named `etc` that way is
//! taken for a loader reading its list (a chroot's or container's list included, and an /etc
//! that is a mount of its own).
use aya_ebpf::{
    cty::c_void,
    helpers::{
        bpf_get_current_pid_tgid, bpf_ktime_get_boot_ns,
        generated::{bpf_find_vma, bpf_get_current_task_btf},
    },
    macros::tracepoint,
    maps::LruHashMap,
    programs::TracePointContext,
};
use detector_common::{
    Channel, EventKind, FileInfo, KernelConfig, PreloadListEvent, MMAP_AFTER_PRELOAD_LIST,
    PRELOAD_LIST_MAX, PRELOAD_LIST_TRUNCATED, PRELOAD_LIST_UNREAD,
};

use crate::{
    kernel::{Task, Vma},
    read::{self, count_error, OrCount as _},
    shared::{config, is_self, named_map, ppid, reserve, submit_urgent},
    tp::{Record, SysEnterMunmap},
    vfs::{dentry_name, fd_file, inode_info},
};

/// The channel whose read errors and losses these programs count.
const CH: Channel = Channel::PreloadList;

const PROT_READ_WRITE: u64 = 0x1 | 0x2;
const MAP_PRIVATE: u64 = 0x02;
const NAME: &[u8; 14] = b"ld.so.preload\0";
const DIR: &[u8; 4] = b"etc\0";

/// A process whose loader holds the list mapped.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Mark {
    /// The list's `struct file` (pinned by the mapping while it exists) and the process's
    /// `mm_struct`: a mark left by a process that died before unmapping the list does not
    /// apply to a later process with its pid.
    file: u64,
    mm: u64,
    /// The mapping's length: the file's size at the loader's fstat.
    len: u64,
    mapped_ns: u64,
    info: FileInfo,
}

named_map! {
    /// Processes whose loader holds /etc/ld.so.preload mapped, by tgid.
    static PRELOAD_MARKS: LruHashMap<u32, Mark> = LruHashMap::with_max_entries(4096, 0);
}

/// Whether an mmap's arguments are those of the loader reading its list (cheap: arguments
/// only). ld.so's other file mappings are PROT_READ, or MAP_FIXED, or MAP_DENYWRITE.
#[inline(always)]
pub fn may_be_the_list(prot: u64, flags: u64, addr: u64, fd: i32) -> bool {
    prot == PROT_READ_WRITE && flags == MAP_PRIVATE && addr == 0 && fd >= 0
}

/// At the mmap of `fd` (`len` bytes) that `may_be_the_list`: marks the process when the file
/// is `etc/ld.so.preload`.
#[inline(never)]
pub fn mark(fd: i32, len: u64) -> Option<()> {
    let cfg = config()?;
    if is_self(cfg) || len == 0 {
        return None;
    }
    let task = Task::current();
    let file = fd_file(cfg, task, fd as u64, CH)?;
    let dentry = file.path(cfg).dentry(cfg).or_count(CH)?;
    if dentry.name_len(cfg).or_count(CH)? != (NAME.len() - 1) as u32 {
        return None;
    }
    let name: [u8; 14] = dentry_name(cfg, dentry, CH);
    if &name != NAME {
        return None;
    }
    let mut parent = dentry.parent(cfg).or_count(CH)?;
    if parent.parent(cfg).or_count(CH)? == parent {
        // The root of a filesystem mounted on the directory (/etc a mount of its own).
        let mnt = file.path(cfg).mnt(cfg).or_count(CH)?;
        parent = mnt.mount(cfg).mountpoint(cfg).or_count(CH)?;
    }
    let dir: [u8; 4] = dentry_name(cfg, parent, CH);
    if &dir != DIR {
        return None;
    }
    let inode = file.inode(cfg).or_count(CH)?;
    let mark = Mark {
        file: file.addr(),
        mm: task.mm(cfg).or_count(CH)?.addr(),
        len,
        mapped_ns: unsafe { bpf_ktime_get_boot_ns() },
        info: inode_info(cfg, inode, CH),
    };
    PRELOAD_MARKS.insert(tgid(), mark, 0).ok()
}

/// Whether the current process's loader holds the list mapped (for each executable mapping:
/// one map lookup, and one read when the process has a mark).
#[inline(always)]
pub fn marked(cfg: &KernelConfig, task: Task) -> bool {
    match unsafe { PRELOAD_MARKS.get(tgid()) } {
        Some(m) => task.mm(cfg).is_some_and(|mm| mm.addr() == m.mm),
        None => false,
    }
}

/// `MMAP_AFTER_PRELOAD_LIST` when `marked`, else 0.
#[inline(always)]
pub fn flag(cfg: &KernelConfig, task: Task) -> u32 {
    if marked(cfg, task) {
        MMAP_AFTER_PRELOAD_LIST
    } else {
        0
    }
}

#[inline(always)]
fn tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

#[tracepoint]
pub fn sys_enter_munmap(ctx: TracePointContext) -> u32 {
    let _ = try_munmap(&ctx);
    0
}

fn try_munmap(ctx: &TracePointContext) -> Option<()> {
    let tgid = tgid();
    // Every munmap of the system comes here: one lookup rejects it unless the process has a
    // mark.
    let mark = *unsafe { PRELOAD_MARKS.get(tgid) }?;
    let rec = Record::<SysEnterMunmap>::of(ctx);
    if rec.len() != mark.len {
        return None;
    }
    let cfg = config()?;
    let addr = rec.addr();
    // The list's own mapping (another of the same length, made while mapping an object, is
    // not): its vma maps the list's file, or, for a file on a stacking filesystem (overlayfs
    // maps the file beneath), a file of the list's name.
    let mut found = VmaFile {
        want: mark.file,
        found: 0,
    };
    unsafe {
        bpf_find_vma(
            bpf_get_current_task_btf(),
            addr,
            vma_file as *mut c_void,
            &mut found as *mut VmaFile as *mut c_void,
            0,
        )
    };
    if found.found == 0 {
        return None;
    }
    let _ = PRELOAD_MARKS.remove(tgid);
    let task = Task::current();
    let mut entry = reserve::<PreloadListEvent>(EventKind::PreloadList, ppid(cfg, task, CH))?;
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    ev.file = mark.info;
    ev.mapped_ns = mark.mapped_ns;
    ev.size = mark.len;
    ev._pad = 0;
    let n = if mark.len > PRELOAD_LIST_MAX as u64 {
        ev.hdr.flags |= PRELOAD_LIST_TRUNCATED;
        PRELOAD_LIST_MAX
    } else {
        mark.len as usize
    };
    // The mapping starts on a page boundary and the loader read every byte of it: the bytes
    // kept are in its first page, faulted in.
    ev.content_len = match read::user_buf(addr, &mut ev.content[..n]) {
        Some(()) => n as u32,
        None => {
            count_error(CH);
            ev.hdr.flags |= PRELOAD_LIST_UNREAD;
            0
        }
    };
    entry.submit(submit_urgent());
    Some(())
}

struct VmaFile {
    want: u64,
    found: u32,
}

#[inline(never)]
unsafe extern "C" fn vma_file(_task: *mut c_void, vma: *mut c_void, ctx: *mut c_void) -> i64 {
    let out = unsafe { &mut *(ctx as *mut VmaFile) };
    let Some(cfg) = config() else { return 0 };
    let Some(file) = Vma::from_addr(vma as u64).file(cfg) else {
        return 0;
    };
    if file.is_null() {
        return 0;
    }
    if file.addr() == out.want {
        out.found = 1;
        return 0;
    }
    if let Some(dentry) = file.path(cfg).dentry(cfg) {
        if dentry.name_len(cfg) == Some((NAME.len() - 1) as u32) {
            let name: [u8; 14] = dentry_name(cfg, dentry, CH);
            if &name == NAME {
                out.found = 1;
            }
        }
    }
    0
}
