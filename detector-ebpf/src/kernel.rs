//! Typed handles on kernel objects: each is the object's kernel address, and its accessors
//! read the object's fields at the offsets user space found in this kernel's BTF
//! (`KernelConfig`; Rust eBPF has no CO-RE relocations). An accessor is one read through
//! [`crate::read`] (`None` when it failed) or, for a member embedded in its object (a
//! `struct path` in a `struct file`), address arithmetic alone.
//!
//! A handle may be null: a pointer field read as 0 gives a null handle, and reads through it
//! fail like reads through any bad address. Accessors do not check for null, so that a handle
//! costs exactly the reads a bare offset chain does; callers test `is_null` where null means
//! something (an empty fd slot, an anonymous mapping).
use aya_ebpf::helpers::bpf_get_current_task;
use detector_common::KernelConfig;

use crate::read::{self, Plain};

macro_rules! handles {
    ($($(#[$m:meta])* $name:ident;)+) => {$(
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq)]
        #[repr(transparent)]
        pub struct $name(u64);

        // Not every handle uses every one of these.
        #[allow(dead_code)]
        impl $name {
            /// The object at kernel address `addr`.
            #[inline(always)]
            pub const fn from_addr(addr: u64) -> Self {
                Self(addr)
            }
            #[inline(always)]
            pub const fn addr(self) -> u64 {
                self.0
            }
            #[inline(always)]
            pub const fn is_null(self) -> bool {
                self.0 == 0
            }
            /// The field at byte offset `off`.
            #[inline(always)]
            fn field<T: Plain>(self, off: u32) -> Option<T> {
                read::kernel(self.0 + off as u64)
            }
            /// The pointer at byte offset `off`, as a handle on what it points to.
            #[inline(always)]
            fn ptr<H: From<u64>>(self, off: u32) -> Option<H> {
                self.field::<u64>(off).map(H::from)
            }
        }

        impl From<u64> for $name {
            #[inline(always)]
            fn from(addr: u64) -> Self {
                Self(addr)
            }
        }
    )+};
}

handles! {
    /// `struct task_struct`.
    Task;
    /// `struct mm_struct`.
    Mm;
    /// `struct files_struct`.
    Files;
    /// `struct fdtable`.
    Fdtable;
    /// `struct file`.
    File;
    /// `struct path`.
    Path;
    /// `struct dentry`.
    Dentry;
    /// `struct inode`.
    Inode;
    /// `struct super_block`.
    SuperBlock;
    /// `struct vfsmount`.
    VfsMount;
    /// `struct mount`, which embeds the `struct vfsmount` at `mount_mnt`.
    Mount;
    /// `struct fs_struct`.
    FsStruct;
    /// `struct vm_area_struct`.
    Vma;
    /// `struct linux_binprm`.
    Bprm;
    /// `struct pt_regs`.
    PtRegs;
}

impl Task {
    /// The task running this program.
    #[inline(always)]
    pub fn current() -> Self {
        // SAFETY: the helper only returns the current task's address.
        Self(unsafe { bpf_get_current_task() })
    }
    #[inline(always)]
    pub fn real_parent(self, cfg: &KernelConfig) -> Option<Task> {
        self.ptr(cfg.task_real_parent)
    }
    /// The thread group id (the user-space pid).
    #[inline(always)]
    pub fn tgid(self, cfg: &KernelConfig) -> Option<u32> {
        self.field(cfg.task_tgid)
    }
    #[inline(always)]
    pub fn mm(self, cfg: &KernelConfig) -> Option<Mm> {
        self.ptr(cfg.task_mm)
    }
    #[inline(always)]
    pub fn files(self, cfg: &KernelConfig) -> Option<Files> {
        self.ptr(cfg.task_files)
    }
    #[inline(always)]
    pub fn fs(self, cfg: &KernelConfig) -> Option<FsStruct> {
        self.ptr(cfg.task_fs)
    }
    /// `exit_code` (wait status encoding).
    #[inline(always)]
    pub fn exit_code(self, cfg: &KernelConfig) -> Option<u32> {
        self.field(cfg.task_exit_code)
    }
    /// `comm`: the name the task runs under (its program's basename at exec, cut to 15 bytes).
    #[inline(always)]
    pub fn comm(self, cfg: &KernelConfig) -> Option<[u8; 16]> {
        self.field(cfg.task_comm)
    }
}

/// `mm_struct`'s start_stack, arg_start, arg_end, env_start, env_end.
#[derive(Clone, Copy)]
pub struct StackAndArgs {
    pub start_stack: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_end: u64,
}

impl Mm {
    /// The new image's stack and argument and environment bounds: one read where this kernel
    /// keeps them adjacent (`mm_stack_args_adjacent`), four otherwise.
    #[inline(always)]
    pub fn stack_and_args(self, cfg: &KernelConfig) -> Option<StackAndArgs> {
        if cfg.mm_stack_args_adjacent != 0 {
            let f: [u64; 5] = self.field(cfg.mm_start_stack)?;
            Some(StackAndArgs {
                start_stack: f[0],
                arg_start: f[1],
                arg_end: f[2],
                env_end: f[4],
            })
        } else {
            Some(StackAndArgs {
                start_stack: self.field(cfg.mm_start_stack)?,
                arg_start: self.field(cfg.mm_arg_start)?,
                arg_end: self.field(cfg.mm_arg_end)?,
                env_end: self.field(cfg.mm_env_end)?,
            })
        }
    }
}

impl Mm {
    /// The program's own text: `start_code`, `end_code`.
    #[inline(always)]
    pub fn code(self, cfg: &KernelConfig) -> Option<(u64, u64)> {
        Some((self.field(cfg.mm_start_code)?, self.field(cfg.mm_end_code)?))
    }
}

impl Files {
    #[inline(always)]
    pub fn fdt(self, cfg: &KernelConfig) -> Option<Fdtable> {
        self.ptr(cfg.files_fdt)
    }
}

impl Fdtable {
    #[inline(always)]
    pub fn max_fds(self, cfg: &KernelConfig) -> Option<u32> {
        self.field(cfg.fdt_max_fds)
    }
    /// The `struct file *` array's address.
    #[inline(always)]
    pub fn fd_array(self, cfg: &KernelConfig) -> Option<u64> {
        self.field(cfg.fdt_fd)
    }
    /// Slot `fd` of the array at `fd_array` (null when the fd is not open); the caller checks
    /// `fd` against `max_fds`.
    #[inline(always)]
    pub fn file_in(fd_array: u64, fd: u64) -> Option<File> {
        read::kernel::<u64>(fd_array + 8 * fd).map(File)
    }
}

impl File {
    /// The embedded `f_path`.
    #[inline(always)]
    pub fn path(self, cfg: &KernelConfig) -> Path {
        Path(self.0 + cfg.file_f_path as u64)
    }
    #[inline(always)]
    pub fn inode(self, cfg: &KernelConfig) -> Option<Inode> {
        self.ptr(cfg.file_f_inode)
    }
    /// `f_mode` (`FMODE_*`).
    #[inline(always)]
    pub fn mode(self, cfg: &KernelConfig) -> Option<u32> {
        self.field(cfg.file_f_mode)
    }
}

impl Path {
    #[inline(always)]
    pub fn mnt(self, cfg: &KernelConfig) -> Option<VfsMount> {
        self.ptr(cfg.path_mnt)
    }
    #[inline(always)]
    pub fn dentry(self, cfg: &KernelConfig) -> Option<Dentry> {
        self.ptr(cfg.path_dentry)
    }
}

impl Dentry {
    #[inline(always)]
    pub fn parent(self, cfg: &KernelConfig) -> Option<Dentry> {
        self.ptr(cfg.dentry_d_parent)
    }
    /// `d_inode` (null for a negative dentry).
    #[inline(always)]
    pub fn inode(self, cfg: &KernelConfig) -> Option<Inode> {
        self.ptr(cfg.dentry_d_inode)
    }
    /// The address of the name's bytes (`d_name.name`).
    #[inline(always)]
    pub fn name_ptr(self, cfg: &KernelConfig) -> Option<u64> {
        self.field(cfg.dentry_d_name + cfg.qstr_name)
    }
    /// The name's length (`d_name.len`).
    #[inline(always)]
    pub fn name_len(self, cfg: &KernelConfig) -> Option<u32> {
        self.field(cfg.dentry_d_name + cfg.qstr_len)
    }
}

impl Inode {
    #[inline(always)]
    pub fn ino(self, cfg: &KernelConfig) -> Option<u64> {
        self.field(cfg.inode_i_ino)
    }
    /// The seconds of the modification time.
    #[inline(always)]
    pub fn mtime_sec(self, cfg: &KernelConfig) -> Option<i64> {
        self.field(cfg.inode_i_mtime)
    }
    #[inline(always)]
    pub fn sb(self, cfg: &KernelConfig) -> Option<SuperBlock> {
        self.ptr(cfg.inode_i_sb)
    }
    /// `i_mode`: type and permission bits.
    #[inline(always)]
    pub fn mode(self, cfg: &KernelConfig) -> Option<u16> {
        self.field(cfg.inode_i_mode)
    }
    #[inline(always)]
    pub fn uid(self, cfg: &KernelConfig) -> Option<u32> {
        self.field(cfg.inode_i_uid)
    }
    #[inline(always)]
    pub fn nlink(self, cfg: &KernelConfig) -> Option<u32> {
        self.field(cfg.inode_i_nlink)
    }
}

impl SuperBlock {
    /// `s_magic`: the filesystem type.
    #[inline(always)]
    pub fn magic(self, cfg: &KernelConfig) -> Option<u64> {
        self.field(cfg.sb_s_magic)
    }
    /// `s_dev` (kernel encoding: major << 20 | minor).
    #[inline(always)]
    pub fn dev(self, cfg: &KernelConfig) -> Option<u32> {
        self.field(cfg.sb_s_dev)
    }
}

impl VfsMount {
    /// `mnt_root`: the dentry this mount shows at its mount point.
    #[inline(always)]
    pub fn root(self, cfg: &KernelConfig) -> Option<Dentry> {
        self.ptr(cfg.vfsmount_mnt_root)
    }
    /// The `struct mount` this vfsmount is embedded in.
    #[inline(always)]
    pub fn mount(self, cfg: &KernelConfig) -> Mount {
        Mount(self.0.wrapping_sub(cfg.mount_mnt as u64))
    }
}

impl Mount {
    /// The embedded `mnt`.
    #[inline(always)]
    pub fn vfsmount(self, cfg: &KernelConfig) -> VfsMount {
        VfsMount(self.0 + cfg.mount_mnt as u64)
    }
    /// `mnt_parent` (the mount itself for the root of a namespace).
    #[inline(always)]
    pub fn parent(self, cfg: &KernelConfig) -> Option<Mount> {
        self.ptr(cfg.mount_mnt_parent)
    }
    /// `mnt_mountpoint`: the dentry, in the parent mount, this mount is mounted on.
    #[inline(always)]
    pub fn mountpoint(self, cfg: &KernelConfig) -> Option<Dentry> {
        self.ptr(cfg.mount_mnt_mountpoint)
    }
}

impl FsStruct {
    /// The embedded `pwd`: the current directory.
    #[inline(always)]
    pub fn pwd(self, cfg: &KernelConfig) -> Path {
        Path(self.0 + cfg.fs_pwd as u64)
    }
}

impl Vma {
    /// `vm_file` (null for anonymous memory).
    #[inline(always)]
    pub fn file(self, cfg: &KernelConfig) -> Option<File> {
        self.ptr(cfg.vma_vm_file)
    }
    /// `vm_flags` (`VM_*`).
    #[inline(always)]
    pub fn flags(self, cfg: &KernelConfig) -> Option<u64> {
        self.field(cfg.vma_vm_flags)
    }
}

impl Bprm {
    /// The address of `filename`: the name the program was executed by.
    #[inline(always)]
    pub fn filename(self, cfg: &KernelConfig) -> Option<u64> {
        self.field(cfg.bprm_filename)
    }
    /// `file`: the program the kernel loaded (for a script, its interpreter).
    #[inline(always)]
    pub fn file(self, cfg: &KernelConfig) -> Option<File> {
        self.ptr(cfg.bprm_file)
    }
}

impl PtRegs {
    /// A syscall's third argument, as saved at entry (`regs_arg2`; the caller checks it is
    /// known, non-zero).
    #[inline(always)]
    pub fn syscall_arg2(self, cfg: &KernelConfig) -> Option<u64> {
        self.field(cfg.regs_arg2)
    }
    /// The user instruction pointer (`regs_ip`; the caller checks it is known, non-zero).
    #[inline(always)]
    pub fn ip(self, cfg: &KernelConfig) -> Option<u64> {
        self.field(cfg.regs_ip)
    }
}
