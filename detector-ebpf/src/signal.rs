//! Capture channel: signals sent to the daemon itself. The programs run only on the signal
//! syscalls (kill, tkill, rt_sigqueueinfo; tgkill, rt_tgsigqueueinfo), never on an exec, a
//! fork or an exit, and report a call only when it names the daemon: its pid, its process group
//! (`-pid`), or every process (`-1`), or its thread group (tgkill). User space judges the
//! signal (`sensor_tamper` for a stop signal or SIGKILL). A signal whose default action dumps
//! core sent to one other process is reported by [`mem_read::dump_signal`] as a read of that
//! process's memory (its core dump).
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use detector_common::{Channel, EventKind, SignalEvent, CORE_DUMP_SIGNALS};

use crate::{
    mem_read,
    shared::{config, current_task_and_ppid, is_self, reserve, submit_urgent},
    tp::{Record, SysEnterKill, SysEnterTgkill},
};

/// `kill(pid, sig)`, `tkill(tid, sig)`, `rt_sigqueueinfo(pid, sig, info)`.
#[tracepoint]
pub fn sys_enter_kill(ctx: TracePointContext) -> u32 {
    let rec = Record::<SysEnterKill>::of(&ctx);
    let _ = emit(rec.pid() as i32, None, rec.sig() as u32, rec.syscall_nr());
    0
}

/// `tgkill(tgid, tid, sig)`, `rt_tgsigqueueinfo(tgid, tid, sig, info)`.
#[tracepoint]
pub fn sys_enter_tgkill(ctx: TracePointContext) -> u32 {
    let rec = Record::<SysEnterTgkill>::of(&ctx);
    let _ = emit(
        rec.tgid() as i32,
        Some(rec.pid() as i32),
        rec.sig() as u32,
        rec.syscall_nr(),
    );
    0
}

#[inline(always)]
fn emit(target: i32, tid: Option<i32>, sig: u32, nr: i32) -> Option<()> {
    if sig == 0 {
        return None;
    }
    let cfg = config()?;
    let me = cfg.self_tgid as i32;
    let aimed = match tid {
        Some(_) => target == me,
        None => target == me || target == -me || target == -1,
    };
    if !aimed {
        if target > 0 && sig < 64 && CORE_DUMP_SIGNALS & (1 << sig) != 0 {
            mem_read::dump_signal(target as u32, sig);
        }
        return None;
    }
    if is_self(cfg) {
        return None;
    }
    let (_, ppid) = current_task_and_ppid(cfg, Channel::Signal);
    let mut entry = reserve::<SignalEvent>(EventKind::Signal, ppid)?;
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    ev.target = target;
    ev.sig = sig;
    ev.syscall_nr = nr as u32;
    ev._pad = 0;
    entry.submit(submit_urgent());
    Some(())
}
