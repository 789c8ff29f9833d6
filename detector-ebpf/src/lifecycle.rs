//! Capture channel: process lifecycle (fork of a new process, exit of a process), so that user
//! space keeps the parent chain and knows which environment a child inherited. Exec is the
//! exec channel.
use aya_ebpf::{
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use detector_common::{Channel, EventKind, ExitEvent, ForkEvent};

use crate::shared::{config, current_task_and_ppid, is_self, kread, reserve, submit_flags};

/// `sched_process_fork(struct task_struct *parent, struct task_struct *child)`.
#[btf_tracepoint(function = "sched_process_fork")]
pub fn sched_process_fork(ctx: BtfTracePointContext) -> i32 {
    let _ = try_fork(&ctx);
    0
}

fn try_fork(ctx: &BtfTracePointContext) -> Option<()> {
    let cfg = config()?;
    if is_self(cfg) {
        return None;
    }
    let child: u64 = ctx.arg::<*const u8>(1) as u64;
    let child_tgid: u32 = unsafe { kread(child, cfg.task_tgid).ok()? };
    let child_pid: u32 = unsafe { kread(child, cfg.task_pid).ok()? };
    if child_tgid != child_pid {
        return None; // a thread
    }
    let (_, ppid) = current_task_and_ppid(cfg);
    let Some(mut entry) = reserve::<ForkEvent>(Channel::Lifecycle, EventKind::Fork, ppid) else {
        return None;
    };
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    ev.child_pid = child_tgid;
    ev._pad = 0;
    entry.submit(submit_flags());
    Some(())
}

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let _ = try_exit(&ctx);
    0
}

fn try_exit(_ctx: &TracePointContext) -> Option<()> {
    let cfg = config()?;
    let pid_tgid = aya_ebpf::helpers::bpf_get_current_pid_tgid();
    if (pid_tgid >> 32) as u32 != pid_tgid as u32 || is_self(cfg) {
        return None; // a thread, not the process
    }
    let (task, ppid) = current_task_and_ppid(cfg);
    let Some(mut entry) = reserve::<ExitEvent>(Channel::Lifecycle, EventKind::Exit, ppid) else {
        return None;
    };
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    ev.exit_code = unsafe { kread(task, cfg.task_exit_code).unwrap_or(0) };
    ev._pad = 0;
    entry.submit(submit_flags());
    Some(())
}
