//! Kernel file helpers shared by the channels: fd → struct file, what an inode is, and the
//! path of a dentry, built in the kernel (a process may be gone before user space looks).
//! Every struct offset comes from the running kernel's BTF through `KernelConfig`.
use aya_ebpf::{
    cty::c_void,
    helpers::generated::{bpf_loop, bpf_probe_read_kernel},
    macros::map,
    maps::PerCpuArray,
};
use detector_common::{FileInfo, KernelConfig, PATH_BUF};

use crate::shared::{config, kread};

/// Scratch buffers for paths being built (index 0: `path`, 1: `dir`). Twice `PATH_BUF` so
/// that a masked offset plus a bounded name length always stays inside.
#[map]
static SCRATCH: PerCpuArray<[u8; 2 * PATH_BUF]> = PerCpuArray::with_max_entries(2, 0);

/// Deepest path walked (components plus mount crossings); deeper paths are marked truncated.
const MAX_DEPTH: u32 = 96;
const NAME_LEN_MASK: u32 = 255;
const MASK: u32 = PATH_BUF as u32 - 1;

pub const SCRATCH_PATH: u32 = 0;
pub const SCRATCH_DIR: u32 = 1;

/// The `struct file *` behind `fd` in the current task.
#[inline(always)]
pub fn fd_file(cfg: &KernelConfig, task: u64, fd: u64) -> Option<u64> {
    unsafe {
        let files: u64 = kread(task, cfg.task_files).ok()?;
        let fdt: u64 = kread(files, cfg.files_fdt).ok()?;
        let max: u32 = kread(fdt, cfg.fdt_max_fds).ok()?;
        if fd >= max as u64 {
            return None;
        }
        let arr: u64 = kread(fdt, cfg.fdt_fd).ok()?;
        let file: u64 = kread(arr + 8 * fd, 0).ok()?;
        if file == 0 {
            None
        } else {
            Some(file)
        }
    }
}

/// (vfsmount, dentry) of a `struct path` at `path`.
#[inline(always)]
pub fn path_parts(cfg: &KernelConfig, path: u64) -> Option<(u64, u64)> {
    unsafe {
        let mnt: u64 = kread(path, cfg.path_mnt).ok()?;
        let dentry: u64 = kread(path, cfg.path_dentry).ok()?;
        Some((mnt, dentry))
    }
}

/// What identifies a version of a file (inode number, mtime, device), and its super block
/// (0 when unreadable); unreadable fields are 0.
pub struct InodeId {
    pub ino: u64,
    pub mtime_sec: i64,
    pub dev: u32,
    pub sb: u64,
}

#[inline(always)]
pub fn inode_id(cfg: &KernelConfig, inode: u64) -> InodeId {
    unsafe {
        let sb: u64 = kread(inode, cfg.inode_i_sb).unwrap_or(0);
        InodeId {
            ino: kread(inode, cfg.inode_i_ino).unwrap_or(0),
            mtime_sec: kread(inode, cfg.inode_i_mtime).unwrap_or(0),
            dev: if sb != 0 {
                kread(sb, cfg.sb_s_dev).unwrap_or(0)
            } else {
                0
            },
            sb,
        }
    }
}

#[inline(always)]
pub fn inode_info(cfg: &KernelConfig, inode: u64) -> FileInfo {
    if inode == 0 {
        return FileInfo::default();
    }
    inode_info_of(cfg, inode, &inode_id(cfg, inode))
}

/// `inode_info` for an inode whose identity was already read.
#[inline(always)]
pub fn inode_info_of(cfg: &KernelConfig, inode: u64, id: &InodeId) -> FileInfo {
    let mut f = FileInfo {
        ino: id.ino,
        mtime_sec: id.mtime_sec,
        dev: id.dev,
        ..FileInfo::default()
    };
    unsafe {
        f.mode = kread::<u16>(inode, cfg.inode_i_mode).unwrap_or(0) as u32;
        f.uid = kread(inode, cfg.inode_i_uid).unwrap_or(0);
        f.nlink = kread(inode, cfg.inode_i_nlink).unwrap_or(0);
        if id.sb != 0 {
            f.fs_magic = kread(id.sb, cfg.sb_s_magic).unwrap_or(0);
        }
    }
    f
}

#[inline(always)]
pub fn dentry_inode(cfg: &KernelConfig, dentry: u64) -> u64 {
    unsafe { kread(dentry, cfg.dentry_d_inode).unwrap_or(0) }
}

/// The first `N` bytes of a dentry's name (zero-padded).
#[inline(always)]
pub fn dentry_name<const N: usize>(cfg: &KernelConfig, dentry: u64) -> [u8; N] {
    let mut out = [0u8; N];
    unsafe {
        if let Ok(name) = kread::<u64>(dentry, cfg.dentry_d_name + cfg.qstr_name) {
            let _ = aya_ebpf::helpers::bpf_probe_read_kernel_str_bytes(name as *const u8, &mut out);
        }
    }
    out
}

struct Walk {
    /// Current dentry and the `struct mount` it is on.
    dentry: u64,
    mount: u64,
    /// Where the path built so far starts in the scratch buffer.
    off: u32,
    truncated: u32,
    done: u32,
    slot: u32,
}

/// Builds the path of (`vfsmount`, `dentry`) right to left into scratch `slot`; returns the
/// offset where it starts in the first `PATH_BUF` bytes, and whether it was truncated.
#[inline(always)]
pub fn build_path(vfsmount: u64, dentry: u64, slot: u32) -> Option<(u32, bool)> {
    let cfg = config()?;
    let buf = SCRATCH.get_ptr_mut(slot)? as *mut u8;
    unsafe { *buf.add(PATH_BUF - 1) = 0 };
    let mut w = Walk {
        dentry,
        mount: vfsmount - cfg.mount_mnt as u64,
        off: PATH_BUF as u32 - 1,
        truncated: 0,
        done: 0,
        slot,
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
        unsafe {
            bpf_probe_read_kernel(
                dst.as_mut_ptr() as *mut c_void,
                PATH_BUF as u32,
                buf as *const c_void,
            )
        };
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
    let vfsmnt = w.mount + cfg.mount_mnt as u64;
    let (Ok(mnt_root), Ok(parent)) = (
        unsafe { kread::<u64>(vfsmnt, cfg.vfsmount_mnt_root) },
        unsafe { kread::<u64>(d, cfg.dentry_d_parent) },
    ) else {
        w.done = 1;
        w.truncated = 1;
        return 1;
    };
    if d == mnt_root {
        let Ok(mparent) = (unsafe { kread::<u64>(w.mount, cfg.mount_mnt_parent) }) else {
            w.done = 1;
            return 1;
        };
        if mparent == w.mount {
            w.done = 1; // the global root
            return 1;
        }
        w.dentry = unsafe { kread(w.mount, cfg.mount_mnt_mountpoint).unwrap_or(0) };
        w.mount = mparent;
        return 0;
    }
    // A component: "/" + name, written right to left.
    let Ok(name) = (unsafe { kread::<u64>(d, cfg.dentry_d_name + cfg.qstr_name) }) else {
        w.done = 1;
        w.truncated = 1;
        return 1;
    };
    let mut len = unsafe { kread::<u32>(d, cfg.dentry_d_name + cfg.qstr_len).unwrap_or(0) };
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
    unsafe {
        bpf_probe_read_kernel(
            buf.add((w.off & MASK) as usize) as *mut c_void,
            len & NAME_LEN_MASK,
            name as *const c_void,
        )
    };
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
