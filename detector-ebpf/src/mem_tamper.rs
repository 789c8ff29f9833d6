//! Capture channel: writes into another process's memory — ptrace POKETEXT/POKEDATA, ATTACH,
//! SEIZE and process_vm_writev. (`/proc/<pid>/mem` opened for write is seen by file_change.)
//! The ptrace program also hands read requests to the mem_read channel.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use detector_common::{
    Channel, EventKind, MemTamperEvent, PTRACE_ATTACH, PTRACE_POKEDATA, PTRACE_POKETEXT,
    PTRACE_SEIZE, TAMPER_PROCESS_VM_WRITEV, TAMPER_PTRACE,
};

use crate::{
    mem_read,
    read::{self, OrCount as _},
    shared::{config, current_task_and_ppid, is_self, reserve, submit_urgent},
    tp::{Record, SysEnterProcessVmWritev, SysEnterPtrace},
};

/// `ptrace(request, pid, addr, data)`.
#[tracepoint]
pub fn sys_enter_ptrace(ctx: TracePointContext) -> u32 {
    let rec = Record::<SysEnterPtrace>::of(&ctx);
    let request = rec.request();
    mem_read::ptrace_read(request, rec.pid() as u32, rec.addr());
    if !matches!(
        request,
        PTRACE_POKETEXT | PTRACE_POKEDATA | PTRACE_ATTACH | PTRACE_SEIZE
    ) {
        return 0;
    }
    let pid = rec.pid();
    let addr = rec.addr();
    let _ = emit(TAMPER_PTRACE, pid as u32, request, addr);
    0
}

/// `process_vm_writev(pid, lvec, liovcnt, rvec, riovcnt, flags)`.
#[tracepoint]
pub fn sys_enter_process_vm_writev(ctx: TracePointContext) -> u32 {
    let rec = Record::<SysEnterProcessVmWritev>::of(&ctx);
    let pid = rec.pid();
    let rvec = rec.rvec();
    let riovcnt = rec.riovcnt();
    // The first remote address written (`rvec[0].iov_base`), when readable.
    let addr: u64 = read::user(rvec).or_count(Channel::MemTamper).unwrap_or(0);
    let _ = emit(TAMPER_PROCESS_VM_WRITEV, pid as u32, riovcnt, addr);
    0
}

#[inline(always)]
fn emit(op: u32, target: u32, request: u64, addr: u64) -> Option<()> {
    let cfg = config()?;
    if is_self(cfg) {
        return None;
    }
    let (_, ppid) = current_task_and_ppid(cfg, Channel::MemTamper);
    let mut entry = reserve::<MemTamperEvent>(EventKind::MemTamper, ppid)?;
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    ev.op = op;
    ev.target_pid = target;
    ev.request = request;
    ev.addr = addr;
    ev.path_off = 0;
    ev._pad = 0;
    ev.path[0] = 0;
    entry.submit(submit_urgent());
    Some(())
}
