//! Capture channel: signals. One program on the `signal_generate` tracepoint sees every signal
//! as the kernel queues it, however the sender named its target: kill, tkill, tgkill,
//! rt_sigqueueinfo, rt_tgsigqueueinfo, pidfd_send_signal, a process group, every process, the
//! id of any thread. The kernel generates most signals itself (SIGCHLD at every exit, faults,
//! SIGPIPE, the OOM killer): those carry its private siginfo or a positive `si_code` and are
//! dropped after one read. Of the signals a process sent:
//! - one that reaches the daemon is reported with the sender's syscall and first argument
//!   ([`SignalEvent`]); user space judges it (`sensor_tamper`);
//! - one whose default action dumps core, reaching another process, is reported by
//!   [`mem_read::dump_signal`] as a read of that process's memory (its core dump).
use aya_ebpf::{
    helpers::generated::{bpf_get_current_task_btf, bpf_task_pt_regs},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use detector_common::{Channel, EventKind, SignalEvent, CORE_DUMP_SIGNALS};

use crate::{
    kernel::{PtRegs, Task},
    mem_read, read,
    shared::{config, current_task_and_ppid, is_self, reserve, submit_urgent},
};

/// `SEND_SIG_PRIV`: the kernel's own siginfo pointer value for a signal it sends.
const SEND_SIG_PRIV: u64 = 1;

/// `signal_generate(int sig, struct kernel_siginfo *info, struct task_struct *task, int group,
/// int result)`.
#[btf_tracepoint(function = "signal_generate")]
pub fn signal_generate(ctx: BtfTracePointContext) -> i32 {
    let sig = ctx.arg::<u64>(0) as u32;
    let info = ctx.arg::<*const u8>(1) as u64;
    let task = Task::from_addr(ctx.arg::<*const u8>(2) as u64);
    let _ = try_signal(sig, info, task);
    0
}

#[inline(always)]
fn try_signal(sig: u32, info: u64, task: Task) -> Option<()> {
    let cfg = config()?;
    // SEND_SIG_NOINFO (0) is a process's signal; a real siginfo says by its code.
    if info == SEND_SIG_PRIV
        || (info != 0 && read::kernel::<i32>(info + cfg.siginfo_code as u64)? > 0)
    {
        return None;
    }
    let receiver = task.tgid(cfg)?;
    if receiver != cfg.self_tgid {
        if sig < 64 && CORE_DUMP_SIGNALS & (1 << sig) != 0 {
            mem_read::dump_signal(receiver, sig);
        }
        return None;
    }
    if is_self(cfg) {
        return None;
    }
    // SAFETY: the helpers take the current task, which BTF vouches for.
    let regs = PtRegs::from_addr(unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as u64);
    let (nr, arg0) = if cfg.regs_nr != 0 {
        (
            regs.syscall_nr(cfg).unwrap_or(u64::MAX) as u32,
            regs.syscall_arg0(cfg).unwrap_or(0) as i32,
        )
    } else {
        (u32::MAX, 0)
    };
    let (_, ppid) = current_task_and_ppid(cfg, Channel::Signal);
    let mut entry = reserve::<SignalEvent>(EventKind::Signal, ppid)?;
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    ev.target = arg0;
    ev.sig = sig;
    ev.syscall_nr = nr;
    ev.receiver = receiver;
    entry.submit(submit_urgent());
    Some(())
}
