//! Maps and helpers every capture channel uses.
use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task,
        bpf_get_current_uid_gid, bpf_ktime_get_boot_ns, bpf_probe_read_kernel,
    },
    macros::map,
    maps::{ring_buf::RingBufEntry, Array, PerCpuArray, RingBuf},
    programs::TracePointContext,
    EbpfContext as _,
};
use detector_common::{Channel, EventHeader, EventKind, KernelConfig, CHANNELS};

/// All events, every channel, in order per CPU. User space may resize it at load.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(8 * 1024 * 1024, 0);

/// Kernel facts and the daemon's pid, written by user space before attaching.
#[map]
pub static CONFIG: Array<KernelConfig> = Array::with_max_entries(1, 0);

/// 1 while the daemon sleeps until the next event (its drain timer stopped because the ring
/// was empty): the next submit wakes it and clears this. Written by both sides; a race costs
/// at most one wake-up too many.
#[map]
pub static READER_IDLE: Array<u32> = Array::with_max_entries(1, 0);

/// Events dropped because the ring buffer was full, per channel.
#[map]
pub static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(CHANNELS, 0);

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
        return BPF_RB_FORCE_WAKEUP;
    }
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

/// For the rare events that make an alert (a loader variable, a change to a watched file, a
/// write into another process, a library from an unsafe place): wake the daemon now, so the
/// alert does not wait for its drain timer.
#[inline(always)]
pub fn submit_urgent() -> u64 {
    BPF_RB_FORCE_WAKEUP
}

#[inline(always)]
pub fn count_lost(channel: Channel) {
    if let Some(n) = LOST.get_ptr_mut(channel as u32) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *n += 1 };
    }
}

/// A field of a classic tracepoint's record, read directly: the verifier allows aligned loads
/// from a tracepoint program's context, which costs a load where `read_at` (a
/// `bpf_probe_read_kernel` call) costs a helper call. `off` must be a multiple of
/// `size_of::<T>()` within the record, as every syscall argument and return value is.
#[inline(always)]
pub fn tp_field<T: Copy>(ctx: &TracePointContext, off: usize) -> T {
    // SAFETY: the verifier checks the offset against the context's bounds and alignment.
    unsafe { core::ptr::read((ctx.as_ptr() as *const u8).add(off) as *const T) }
}

/// Reads a kernel value at `base + off` (offsets come from BTF at start).
#[inline(always)]
pub unsafe fn kread<T>(base: u64, off: u32) -> Result<T, i64> {
    unsafe { bpf_probe_read_kernel((base + off as u64) as *const T).map_err(|e| e as i64) }
}

/// The current task, and the thread group id of its real parent.
#[inline(always)]
pub fn current_task_and_ppid(cfg: &KernelConfig) -> (u64, u32) {
    let task = current_task();
    (task, ppid(cfg, task))
}

#[inline(always)]
pub fn current_task() -> u64 {
    unsafe { bpf_get_current_task() }
}

/// The thread group id of `task`'s real parent. Two reads: programs that mostly filter an
/// event out call it only once they know they report it.
#[inline(always)]
pub fn ppid(cfg: &KernelConfig, task: u64) -> u32 {
    unsafe {
        kread::<u64>(task, cfg.task_real_parent)
            .and_then(|parent| kread::<u32>(parent, cfg.task_tgid))
            .unwrap_or(0)
    }
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
