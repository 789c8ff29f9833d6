//! Prevent mode's deny path, loaded only where BPF LSM runs (`lsm=bpf`) and prevention does
//! not ask for the kill path: the `mmap_file` and `file_mprotect` hooks refuse, with EPERM, an
//! executable mapping that prevention stops (`prevent::deny`, the mapping tracepoints' own
//! judgement). The loader then reports the object as one that "cannot be preloaded" (or
//! dlopen fails) and the program runs without it. What the kernel maps at exec itself (the
//! program and its ELF interpreter, both opened by exec) is left to the exec programs' kill
//! path: past exec's point of no return a refusal could only kill the process anyway.
use aya_ebpf::{macros::lsm, programs::LsmContext};
use detector_common::{MMAP_SOURCE_MMAP, MMAP_SOURCE_MPROTECT, PREVENT_DENY};

use crate::{
    kernel::{File, Vma},
    prevent,
    shared::{config, is_self},
};

const PROT_EXEC: u64 = 0x4;
const VM_EXEC: u64 = 0x4;
/// `f_mode` of a file opened by exec (`open_exec`).
const FMODE_EXEC: u32 = 0x20;
const EPERM: i32 = 1;

/// `mmap_file(struct file *file, unsigned long reqprot, unsigned long prot, unsigned long
/// flags)`, then the verdict of the LSM programs before this one.
#[lsm(hook = "mmap_file")]
pub fn lsm_mmap_file(ctx: LsmContext) -> i32 {
    let earlier: i32 = ctx.arg(4);
    if earlier != 0 {
        return earlier;
    }
    let prot: u64 = ctx.arg(2);
    if prot & PROT_EXEC == 0 {
        return 0;
    }
    let file = File::from_addr(ctx.arg::<*const u8>(0) as u64);
    verdict(file, MMAP_SOURCE_MMAP)
}

/// `file_mprotect(struct vm_area_struct *vma, unsigned long reqprot, unsigned long prot)`,
/// then the earlier verdict.
#[lsm(hook = "file_mprotect")]
pub fn lsm_file_mprotect(ctx: LsmContext) -> i32 {
    let earlier: i32 = ctx.arg(3);
    if earlier != 0 {
        return earlier;
    }
    let prot: u64 = ctx.arg(2);
    if prot & PROT_EXEC == 0 {
        return 0;
    }
    let Some(cfg) = config() else { return 0 };
    if cfg.prevent & PREVENT_DENY == 0 {
        return 0;
    }
    let vma = Vma::from_addr(ctx.arg::<*const u8>(0) as u64);
    // A mapping that was executable already is not news (as for the mprotect tracepoint).
    if vma.flags(cfg).unwrap_or(0) & VM_EXEC != 0 {
        return 0;
    }
    let file = vma.file(cfg).unwrap_or(File::from_addr(0));
    verdict(file, MMAP_SOURCE_MPROTECT)
}

#[inline(always)]
fn verdict(file: File, source: u32) -> i32 {
    let Some(cfg) = config() else { return 0 };
    if cfg.prevent & PREVENT_DENY == 0 || file.is_null() || is_self(cfg) {
        return 0;
    }
    if file.mode(cfg).unwrap_or(0) & FMODE_EXEC != 0 {
        return 0;
    }
    if prevent::deny(cfg, file, source) {
        -EPERM
    } else {
        0
    }
}
