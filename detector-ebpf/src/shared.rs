//! Maps and helpers every capture channel uses.
use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        bpf_ktime_get_boot_ns,
    },
    maps::{ring_buf::RingBufEntry, Array, PerCpuArray, RingBuf},
};
use detector_common::{Channel, EventHeader, EventKind, KernelConfig, CHANNELS, WAKE_GAP_NS};

use crate::{kernel::Task, read::OrCount as _};

/// Whether two strings are equal, at compile time.
pub const fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Declares a map whose name in the object is its static's name, which must be the name and
/// value of a constant in `detector_common::maps` (checked at compile time): user space finds
/// the map by that constant.
macro_rules! named_map {
    ($(#[$m:meta])* $vis:vis static $name:ident: $ty:ty = $init:expr;) => {
        $(#[$m])*
        #[aya_ebpf::macros::map]
        $vis static $name: $ty = $init;
        const _: () = assert!($crate::shared::same_name(
            stringify!($name),
            detector_common::maps::$name
        ));
    };
}
pub(crate) use named_map;

named_map! {
    /// All events, every channel, in order per CPU. User space may resize it at load.
    pub static EVENTS: RingBuf = RingBuf::with_byte_size(8 * 1024 * 1024, 0);
}

named_map! {
    /// Kernel facts and the daemon's pid, written by user space before attaching.
    pub static CONFIG: Array<KernelConfig> = Array::with_max_entries(1, 0);
}

named_map! {
    /// 1 while the daemon sleeps until the next event (its drain timer stopped because the ring
    /// was empty): the next submit wakes it and clears this. Written by both sides; a race costs
    /// at most one wake-up too many.
    pub static READER_IDLE: Array<u32> = Array::with_max_entries(1, 0);
}

named_map! {
    /// When the last forced wake-up was (`bpf_ktime_get_boot_ns`), across CPUs. Written
    /// without a lock: a race costs at most one wake-up too many.
    pub static LAST_WAKE: Array<u64> = Array::with_max_entries(1, 0);
}

named_map! {
    /// Events dropped because the ring buffer was full, per channel.
    pub static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(CHANNELS, 0);
}

named_map! {
    /// Failed reads of kernel or user memory that made a program drop an event or send it
    /// without the field being read, per channel (see `read::count_error`).
    pub static READ_ERRORS: PerCpuArray<u64> = PerCpuArray::with_max_entries(CHANNELS, 0);
}

#[inline(always)]
pub fn config() -> Option<&'static KernelConfig> {
    match CONFIG.get(0) {
        Some(c) if c.ready != 0 => Some(c),
        _ => None,
    }
}

const BPF_RB_AVAIL_DATA: u64 = 0;
const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
/// Wake the daemon only once this much is queued; it also drains the ring on a short timer.
/// A wake-up per event (the default) costs ~10 µs of the program's time on a VM.
const WAKEUP_AT: u64 = 256 * 1024;

#[inline(always)]
pub fn submit_flags() -> u64 {
    if EVENTS.query(BPF_RB_AVAIL_DATA) >= WAKEUP_AT {
        return force_wakeup();
    }
    reader_idle_flags()
}

/// For the rare events that make an alert (a loader variable, a change to a watched file, a
/// write into another process, a library from an unsafe place): wake the daemon now, so the
/// alert does not wait for its drain timer.
#[inline(always)]
pub fn submit_urgent() -> u64 {
    force_wakeup()
}

/// A forced wake-up, unless one was forced in the last `WAKE_GAP_NS` (the daemon, woken then,
/// is still draining every millisecond); then the ordinary flags.
#[inline(always)]
fn force_wakeup() -> u64 {
    let Some(last) = LAST_WAKE.get_ptr_mut(0) else {
        return BPF_RB_FORCE_WAKEUP;
    };
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    // SAFETY: a map value; a concurrent writer at worst repeats the wake-up.
    unsafe {
        if now.wrapping_sub(*last) < WAKE_GAP_NS {
            return reader_idle_flags();
        }
        *last = now;
    }
    BPF_RB_FORCE_WAKEUP
}

/// A forced wake-up when the daemon's drain timer is stopped (clearing the flag), else none.
#[inline(always)]
fn reader_idle_flags() -> u64 {
    if let Some(idle) = READER_IDLE.get_ptr_mut(0) {
        // SAFETY: a map value; a concurrent writer at worst repeats the wake-up.
        unsafe {
            if *idle != 0 {
                *idle = 0;
                return BPF_RB_FORCE_WAKEUP;
            }
        }
    }
    BPF_RB_NO_WAKEUP
}

#[inline(always)]
pub fn count_lost(channel: Channel) {
    if let Some(n) = LOST.get_ptr_mut(channel as u32) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *n += 1 };
    }
}

/// The current task, and the thread group id of its real parent.
#[inline(always)]
pub fn current_task_and_ppid(cfg: &KernelConfig, channel: Channel) -> (Task, u32) {
    let task = Task::current();
    (task, ppid(cfg, task, channel))
}

/// The thread group id of `task`'s real parent. Two reads: programs that mostly filter an
/// event out call it only once they know they report it. 0 when unreadable (a read error
/// of `channel`).
#[inline(always)]
pub fn ppid(cfg: &KernelConfig, task: Task, channel: Channel) -> u32 {
    task.real_parent(cfg)
        .and_then(|parent| parent.tgid(cfg))
        .or_count(channel)
        .unwrap_or(0)
}

/// Reserves a `T` in the ring buffer and fills its header for the current task; counts a loss
/// for `channel` when the ring is full.
#[inline(always)]
pub fn reserve<T: 'static>(kind: EventKind, ppid: u32) -> Option<RingBufEntry<T>> {
    let Some(mut entry) = EVENTS.reserve::<T>(0) else {
        count_lost(kind.channel());
        return None;
    };
    // SAFETY: every event type is repr(C) and starts with an EventHeader.
    fill_header(
        unsafe { &mut *(entry.as_mut_ptr() as *mut EventHeader) },
        kind,
        ppid,
    );
    Some(entry)
}

/// Fills the common header for the current task.
#[inline(always)]
fn fill_header(hdr: &mut EventHeader, kind: EventKind, ppid: u32) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    hdr.kind = kind as u32;
    hdr.flags = 0;
    hdr.ktime_ns = unsafe { bpf_ktime_get_boot_ns() };
    hdr.pid = (pid_tgid >> 32) as u32;
    hdr.tid = pid_tgid as u32;
    hdr.ppid = ppid;
    hdr.uid = uid_gid as u32;
    hdr.gid = (uid_gid >> 32) as u32;
    hdr._pad = 0;
    hdr.comm = bpf_get_current_comm().unwrap_or([0u8; 16]);
}

/// True when the current process is the daemon itself.
#[inline(always)]
pub fn is_self(cfg: &KernelConfig) -> bool {
    (bpf_get_current_pid_tgid() >> 32) as u32 == cfg.self_tgid
}
