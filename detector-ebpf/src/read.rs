//! The one place where kernel and user memory is read: every `bpf_probe_read_*` call of the
//! programs is in this module, behind a safe function that returns `None` when the helper
//! failed (a bad, unmapped or paged-out address). Callers never write `unsafe` for a read.
//!
//! A failed read that makes a program drop an event, or send one without the field it was
//! reading, is counted per channel in `READ_ERRORS` with [`OrCount::or_count`] or
//! [`count_error`]. The count is taken on the failure path only: a successful read costs the
//! helper call and its error check, as a bare `bpf_probe_read_*` does.
use aya_ebpf::helpers::{
    bpf_probe_read_kernel, bpf_probe_read_kernel_buf, bpf_probe_read_kernel_str_bytes,
    bpf_probe_read_user, bpf_probe_read_user_buf, bpf_probe_read_user_str_bytes,
};
use detector_common::Channel;

use crate::shared::READ_ERRORS;

/// Types every bit pattern of which is a valid value, so that bytes copied from kernel or user
/// memory make one.
///
/// # Safety
/// Implement only for plain integer data (and arrays of it).
pub unsafe trait Plain: Copy {}

macro_rules! plain {
    ($($t:ty),+) => { $(unsafe impl Plain for $t {})+ };
}
plain!(u8, u16, u32, u64, i8, i16, i32, i64, usize, isize);
unsafe impl<T: Plain, const N: usize> Plain for [T; N] {}

/// A `T` of kernel memory at `addr`.
#[inline(always)]
pub fn kernel<T: Plain>(addr: u64) -> Option<T> {
    // SAFETY: the helper checks the address; any bytes make a `T` (`Plain`).
    unsafe { bpf_probe_read_kernel(addr as *const T) }.ok()
}

/// A `T` of the current process's memory at `addr`.
#[inline(always)]
pub fn user<T: Plain>(addr: u64) -> Option<T> {
    // SAFETY: as `kernel`.
    unsafe { bpf_probe_read_user(addr as *const T) }.ok()
}

/// Fills `dst` from kernel memory at `addr`.
#[inline(always)]
pub fn kernel_buf(addr: u64, dst: &mut [u8]) -> Option<()> {
    // SAFETY: the helper writes at most `dst.len()` bytes and checks the source.
    unsafe { bpf_probe_read_kernel_buf(addr as *const u8, dst) }.ok()
}

/// Fills `dst` from the current process's memory at `addr`.
#[inline(always)]
pub fn user_buf(addr: u64, dst: &mut [u8]) -> Option<()> {
    // SAFETY: as `kernel_buf`.
    unsafe { bpf_probe_read_user_buf(addr as *const u8, dst) }.ok()
}

/// Copies the NUL-terminated kernel string at `addr` into `dst` (NUL-terminated, cut to fit);
/// returns its length without the NUL.
#[inline(always)]
pub fn kernel_str(addr: u64, dst: &mut [u8]) -> Option<usize> {
    // SAFETY: as `kernel_buf`.
    unsafe { bpf_probe_read_kernel_str_bytes(addr as *const u8, dst) }
        .ok()
        .map(|s| s.len())
}

/// Copies the NUL-terminated user string at `addr` into `dst` (NUL-terminated, cut to fit);
/// returns its length without the NUL.
#[inline(always)]
pub fn user_str(addr: u64, dst: &mut [u8]) -> Option<usize> {
    // SAFETY: as `kernel_buf`.
    unsafe { bpf_probe_read_user_str_bytes(addr as *const u8, dst) }
        .ok()
        .map(|s| s.len())
}

/// Counts one failed read for `channel` in `READ_ERRORS`. A BPF subprogram, so that each
/// failure path costs a call rather than a copy of the map update.
#[inline(never)]
pub fn count_error(channel: Channel) {
    if let Some(n) = READ_ERRORS.get_ptr_mut(channel as u32) {
        // SAFETY: a per-CPU slot: no concurrent writer on this CPU.
        unsafe { *n += 1 };
    }
}

/// Counts a read's failure for a channel, passing its result on.
pub trait OrCount: Sized {
    fn or_count(self, channel: Channel) -> Self;
}

impl<T> OrCount for Option<T> {
    #[inline(always)]
    fn or_count(self, channel: Channel) -> Self {
        if self.is_none() {
            count_error(channel);
        }
        self
    }
}
