//! Kernel file helpers shared by the channels: fd → struct file, what an inode is, and the
//! path of a dentry, built in the kernel (a process may be gone before user space looks).
//! Every struct offset comes from the running kernel's BTF through `KernelConfig`. Reads that
//! fail are counted as read errors of the `Channel` the caller passes.
use aya_ebpf::{cty::c_void, helpers::generated::bpf_loop, maps::PerCpuArray};
use detector_common::{Channel, FileInfo, KernelConfig, PATH_BUF};

use crate::{
    kernel::{Dentry, Fdtable, File, Inode, Mount, Path, SuperBlock, Task, VfsMount},
    read::{self, count_error, OrCount as _},
    shared::{config, named_map},
};

named_map! {
    /// Scratch buffers for paths being built (index 0: `path`, 1: `dir`). Twice `PATH_BUF` so
    /// that a masked offset plus a bounded name length always stays inside.
    static SCRATCH: PerCpuArray<[u8; 2 * PATH_BUF]> = PerCpuArray::with_max_entries(2, 0);
}

/// Deepest path walked (components plus mount crossings); deeper paths are marked truncated.
const MAX_DEPTH: u32 = 96;
const NAME_LEN_MASK: u32 = 255;
const MASK: u32 = PATH_BUF as u32 - 1;

pub const SCRATCH_PATH: u32 = 0;
pub const SCRATCH_DIR: u32 = 1;

/// The `struct file` behind `fd` in `task` (None for an fd that is not open).
#[inline(always)]
pub fn fd_file(cfg: &KernelConfig, task: Task, fd: u64, ch: Channel) -> Option<File> {
    let fdt = task.files(cfg).or_count(ch)?.fdt(cfg).or_count(ch)?;
    let max = fdt.max_fds(cfg).or_count(ch)?;
    if fd >= max as u64 {
        return None;
    }
    let file = Fdtable::file_in(fdt.fd_array(cfg).or_count(ch)?, fd).or_count(ch)?;
    if file.is_null() {
        None
    } else {
        Some(file)
    }
}

/// (vfsmount, dentry) of a `struct path`.
#[inline(always)]
pub fn path_parts(cfg: &KernelConfig, path: Path, ch: Channel) -> Option<(VfsMount, Dentry)> {
    Some((path.mnt(cfg).or_count(ch)?, path.dentry(cfg).or_count(ch)?))
}

/// What identifies a version of a file (inode number, mtime, device), and its super block
/// (null when unreadable); unreadable fields are 0.
pub struct InodeId {
    pub ino: u64,
    pub mtime_sec: i64,
    pub dev: u32,
    pub sb: SuperBlock,
}

#[inline(always)]
pub fn inode_id(cfg: &KernelConfig, inode: Inode, ch: Channel) -> InodeId {
    let sb = inode
        .sb(cfg)
        .or_count(ch)
        .unwrap_or(SuperBlock::from_addr(0));
    InodeId {
        ino: inode.ino(cfg).or_count(ch).unwrap_or(0),
        mtime_sec: inode.mtime_sec(cfg).or_count(ch).unwrap_or(0),
        dev: if !sb.is_null() {
            sb.dev(cfg).or_count(ch).unwrap_or(0)
        } else {
            0
        },
        sb,
    }
}

#[inline(always)]
pub fn inode_info(cfg: &KernelConfig, inode: Inode, ch: Channel) -> FileInfo {
    if inode.is_null() {
        return FileInfo::default();
    }
    inode_info_of(cfg, inode, &inode_id(cfg, inode, ch), ch)
}

/// `inode_info` for an inode whose identity was already read.
#[inline(always)]
pub fn inode_info_of(cfg: &KernelConfig, inode: Inode, id: &InodeId, ch: Channel) -> FileInfo {
    let mut f = FileInfo {
        ino: id.ino,
        mtime_sec: id.mtime_sec,
        dev: id.dev,
        ..FileInfo::default()
    };
    f.mode = inode.mode(cfg).or_count(ch).unwrap_or(0) as u32;
    f.uid = inode.uid(cfg).or_count(ch).unwrap_or(0);
    f.nlink = inode.nlink(cfg).or_count(ch).unwrap_or(0);
    if !id.sb.is_null() {
        f.fs_magic = id.sb.magic(cfg).or_count(ch).unwrap_or(0);
    }
    f
}

/// `d_inode`, null when unreadable (not counted: the caller's next read through it fails).
#[inline(always)]
pub fn dentry_inode(cfg: &KernelConfig, dentry: Dentry) -> Inode {
    dentry.inode(cfg).unwrap_or(Inode::from_addr(0))
}

/// The first `N` bytes of a dentry's name (zero-padded).
#[inline(always)]
pub fn dentry_name<const N: usize>(cfg: &KernelConfig, dentry: Dentry, ch: Channel) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(name) = dentry.name_ptr(cfg).or_count(ch) {
        let _ = read::kernel_str(name, &mut out).or_count(ch);
    }
    out
}

struct Walk {
    /// Current dentry and the `struct mount` it is on.
    dentry: Dentry,
    mount: Mount,
    /// Where the path built so far starts in the scratch buffer.
    off: u32,
    truncated: u32,
    done: u32,
    slot: u32,
    channel: Channel,
}

/// Builds the path of (`vfsmount`, `dentry`) right to left into scratch `slot`; returns the
/// offset where it starts in the first `PATH_BUF` bytes, and whether it was truncated.
#[inline(always)]
pub fn build_path(
    cfg: &KernelConfig,
    vfsmount: VfsMount,
    dentry: Dentry,
    slot: u32,
    channel: Channel,
) -> Option<(u32, bool)> {
    let buf = SCRATCH.get_ptr_mut(slot)? as *mut u8;
    unsafe { *buf.add(PATH_BUF - 1) = 0 };
    let mut w = Walk {
        dentry,
        mount: vfsmount.mount(cfg),
        off: PATH_BUF as u32 - 1,
        truncated: 0,
        done: 0,
        slot,
        channel,
    };
    unsafe {
        bpf_loop(
            MAX_DEPTH,
            path_step as *mut c_void,
            &mut w as *mut Walk as *mut c_void,
            0,
        )
    };
    if w.done == 0 {
        w.truncated = 1;
    }
    if w.off == PATH_BUF as u32 - 1 {
        // The root itself.
        w.off -= 1;
        unsafe { *buf.add((w.off & MASK) as usize) = b'/' };
    }
    Some((w.off & MASK, w.truncated != 0))
}

/// Copies scratch `slot`'s first `PATH_BUF` bytes into `dst` (a path field of an event).
#[inline(always)]
pub fn copy_path(slot: u32, dst: &mut [u8; PATH_BUF]) {
    if let Some(buf) = SCRATCH.get_ptr(slot) {
        let _ = read::kernel_buf(buf as u64, dst);
    }
}

#[inline(never)]
unsafe extern "C" fn path_step(_i: u32, ctx: *mut c_void) -> i64 {
    let w = unsafe { &mut *(ctx as *mut Walk) };
    let Some(cfg) = config() else { return 1 };
    let Some(buf) = SCRATCH.get_ptr_mut(w.slot) else {
        return 1;
    };
    let buf = buf as *mut u8;
    let d = w.dentry;
    let (Some(mnt_root), Some(parent)) = (w.mount.vfsmount(cfg).root(cfg), d.parent(cfg)) else {
        w.done = 1;
        w.truncated = 1;
        count_error(w.channel);
        return 1;
    };
    if d == mnt_root {
        let Some(mparent) = w.mount.parent(cfg).or_count(w.channel) else {
            w.done = 1;
            return 1;
        };
        if mparent == w.mount {
            w.done = 1; // the global root
            return 1;
        }
        w.dentry = w
            .mount
            .mountpoint(cfg)
            .or_count(w.channel)
            .unwrap_or(Dentry::from_addr(0));
        w.mount = mparent;
        return 0;
    }
    // A component: "/" + name, written right to left.
    let Some(name) = d.name_ptr(cfg).or_count(w.channel) else {
        w.done = 1;
        w.truncated = 1;
        return 1;
    };
    let mut len = d.name_len(cfg).or_count(w.channel).unwrap_or(0);
    if len > NAME_LEN_MASK {
        len = NAME_LEN_MASK;
        w.truncated = 1;
    }
    if w.off < len + 1 {
        w.truncated = 1;
        w.done = 1;
        return 1;
    }
    w.off -= len;
    // SAFETY: `off & MASK` plus at most `NAME_LEN_MASK` bytes is inside the scratch buffer
    // (twice `PATH_BUF`).
    let dst = unsafe {
        core::slice::from_raw_parts_mut(
            buf.add((w.off & MASK) as usize),
            (len & NAME_LEN_MASK) as usize,
        )
    };
    let _ = read::kernel_buf(name, dst).or_count(w.channel);
    w.off -= 1;
    unsafe { *buf.add((w.off & MASK) as usize) = b'/' };
    if d == parent {
        // A pseudo-filesystem root that is not a mount root (memfd, pipe): its name is all.
        w.done = 1;
        return 1;
    }
    w.dentry = parent;
    0
}
