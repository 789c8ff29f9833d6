//! The records of the classic syscall tracepoints the programs attach to, as
//! `/sys/kernel/tracing/events/syscalls/<event>/format` lays them out: the 8-byte common
//! header, `int __syscall_nr`, 4 bytes of padding, then 8 bytes per argument (`sys_enter_*`)
//! or the return value (`sys_exit_*`). That layout is the same on every kernel; the
//! assertions below pin each field to its offset in the format files.
//!
//! A program reads a field by name with [`Record`]: one aligned load from the context, which
//! the verifier checks against the record's bounds. A record type only has the fields some
//! program reads (and those before them): the kernel refuses to attach a program that reads
//! past the end of an event's record.
use core::{marker::PhantomData, mem::offset_of};

use aya_ebpf::{programs::TracePointContext, EbpfContext as _};

/// The fields every syscall record starts with.
#[repr(C)]
pub struct SyscallHeader {
    pub common_type: u16,
    pub common_flags: u8,
    pub common_preempt_count: u8,
    pub common_pid: i32,
    pub syscall_nr: i32,
    _pad: u32,
}

/// A tracepoint context seen as a record of type `R`.
pub struct Record<'a, R> {
    ctx: &'a TracePointContext,
    _r: PhantomData<R>,
}

impl<'a, R> Record<'a, R> {
    #[inline(always)]
    pub fn of(ctx: &'a TracePointContext) -> Self {
        Record {
            ctx,
            _r: PhantomData,
        }
    }
    #[inline(always)]
    fn base(&self) -> *const R {
        self.ctx.as_ptr() as *const R
    }
}

/// Declares record types and a by-name accessor of `Record<R>` for each field (one load; the
/// accessors do not make a reference to the whole record, so nothing else is loaded).
macro_rules! records {
    ($($(#[$m:meta])* $name:ident { $($field:ident: $ty:ty = $off:literal,)+ })+) => {$(
        $(#[$m])*
        #[repr(C)]
        pub struct $name {
            pub hdr: SyscallHeader,
            $(pub $field: $ty,)+
        }
        $(const _: () = assert!(offset_of!($name, $field) == $off);)+

        #[allow(dead_code)]
        impl Record<'_, $name> {
            /// `__syscall_nr`.
            #[inline(always)]
            pub fn syscall_nr(&self) -> i32 {
                // SAFETY: an aligned field of the record the context points to; the verifier
                // checks the access against the context's bounds.
                unsafe { core::ptr::addr_of!((*self.base()).hdr.syscall_nr).read() }
            }
            $(
                #[inline(always)]
                pub fn $field(&self) -> $ty {
                    // SAFETY: as `syscall_nr`.
                    unsafe { core::ptr::addr_of!((*self.base()).$field).read() }
                }
            )+
        }
    )+};
}

records! {
    /// `sys_exit_*`: open, openat, openat2, creat.
    SysExit {
        ret: i64 = 16,
    }
    /// `sys_enter_mmap(addr, len, prot, flags, fd, off)`.
    SysEnterMmap {
        addr: u64 = 16,
        len: u64 = 24,
        prot: u64 = 32,
        flags: u64 = 40,
        fd: u64 = 48,
    }
    /// `sys_enter_mprotect(start, len, prot)`.
    SysEnterMprotect {
        start: u64 = 16,
        len: u64 = 24,
        prot: u64 = 32,
    }
    /// `sys_enter_munmap(addr, len)`.
    SysEnterMunmap {
        addr: u64 = 16,
        len: u64 = 24,
    }
    /// `sys_enter_renameat(olddfd, oldname, newdfd, newname)` (`sys_enter_linkat` too), and the
    /// same first four fields of `sys_enter_renameat2` (whose fifth, `flags`, is not read).
    SysEnterRenameat {
        olddfd: u64 = 16,
        oldname: u64 = 24,
        newdfd: u64 = 32,
        newname: u64 = 40,
    }
    /// `sys_enter_rename(oldname, newname)` (`sys_enter_link` too).
    SysEnterRename {
        oldname: u64 = 16,
        newname: u64 = 24,
    }
    /// `sys_enter_unlinkat(dfd, pathname, flag)`.
    SysEnterUnlinkat {
        dfd: u64 = 16,
        pathname: u64 = 24,
    }
    /// `sys_enter_unlink(pathname)`.
    SysEnterUnlink {
        pathname: u64 = 16,
    }
    /// `sys_enter_symlinkat(oldname, newdfd, newname)`: `oldname` is the link's target.
    SysEnterSymlinkat {
        oldname: u64 = 16,
        newdfd: u64 = 24,
        newname: u64 = 32,
    }
    /// `sys_enter_truncate(path, length)`.
    SysEnterTruncate {
        path: u64 = 16,
    }
    /// `sys_enter_ptrace(request, pid, addr, data)`.
    SysEnterPtrace {
        request: u64 = 16,
        pid: u64 = 24,
        addr: u64 = 32,
    }
    /// `sys_enter_process_vm_writev(pid, lvec, liovcnt, rvec, riovcnt, flags)`, and
    /// `sys_enter_process_vm_readv`, laid out the same.
    SysEnterProcessVmWritev {
        pid: u64 = 16,
        lvec: u64 = 24,
        liovcnt: u64 = 32,
        rvec: u64 = 40,
        riovcnt: u64 = 48,
    }
}

const _: () = assert!(offset_of!(SyscallHeader, common_pid) == 4);
const _: () = assert!(offset_of!(SyscallHeader, syscall_nr) == 8);
const _: () = assert!(core::mem::size_of::<SyscallHeader>() == 16);
