//! Capture channel: process lifecycle — the exit of a process, so that user space can forget
//! it. Exec is the exec channel. Forks are not captured: every event names its process's
//! parent (`ppid`), which is all user space needs to learn a child it has not seen exec
//! (a fork costs ~1.5 µs of eBPF and a daemon wake-up's worth of work otherwise).
use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use detector_common::{Channel, EventKind, ExitEvent};

use crate::{
    kernel::Task,
    read::OrCount as _,
    shared::{config, is_self, reserve, submit_flags},
};

/// `sched_process_exit(struct task_struct *p, ...)`: `p` is the current task.
#[btf_tracepoint(function = "sched_process_exit")]
pub fn sched_exit(_ctx: BtfTracePointContext) -> i32 {
    let _ = try_exit();
    0
}

fn try_exit() -> Option<()> {
    let cfg = config()?;
    let pid_tgid = aya_ebpf::helpers::bpf_get_current_pid_tgid();
    if (pid_tgid >> 32) as u32 != pid_tgid as u32 || is_self(cfg) {
        return None; // a thread, not the process
    }
    // User space needs only which process and when: no parent lookup.
    let task = Task::current();
    let mut entry = reserve::<ExitEvent>(EventKind::Exit, 0)?;
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    ev.exit_code = task
        .exit_code(cfg)
        .or_count(Channel::Lifecycle)
        .unwrap_or(0);
    ev._pad = 0;
    entry.submit(submit_flags());
    Some(())
}
