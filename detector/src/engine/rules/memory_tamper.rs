//! Rule: another process's memory written or attached to (ptrace POKETEXT/POKEDATA, ATTACH,
//! SEIZE; process_vm_writev; /proc/<pid>/mem opened for write) — inline hooking on Linux. A
//! debugger or profiler attaching to a process of its own user, or opening its
//! `/proc/<pid>/mem`, is medium at most.
use detector_common::{PTRACE_ATTACH, PTRACE_SEIZE};

use super::{credential_memory_read::is_debugger, Context, Finding, Observation, Rule};
use crate::{
    capture::decode::{MemTamper, TamperOp},
    output::alert::{Detection, Operation, Process, Severity, Target, T1055_008, T1055_009},
};

pub struct MemoryTamper;

impl Rule for MemoryTamper {
    fn evaluate(&mut self, cx: &Context, observation: &Observation) -> Vec<Finding> {
        match observation {
            Observation::MemTamper(t, target) => {
                evaluate(cx.process, *target, t).into_iter().collect()
            }
            _ => Vec::new(),
        }
    }
}

fn evaluate(process: &Process, target: Option<&Process>, t: &MemTamper) -> Option<Finding> {
    if t.target_pid == t.hdr.pid || t.target_pid == 0 {
        return None; // a process patching itself is not hooking another
    }
    let mut f = Finding::new(t.hdr.ktime_ns, process.clone(), Detection::MemoryTamper);
    // A debugger or profiler attaching to a process of its own user, or opening its
    // /proc/<pid>/mem (gdb opens it read-write): debugging, medium at most.
    let attach = t.op == TamperOp::Ptrace && matches!(t.request, PTRACE_ATTACH | PTRACE_SEIZE);
    let debugging = attach || t.op == TamperOp::ProcMem;
    if debugging && is_debugger(&process.exe) && target.is_some_and(|p| p.uid == process.uid) {
        f.ceiling = Severity::Medium;
    }
    f.mitre.push(if t.op == TamperOp::ProcMem {
        T1055_009
    } else {
        T1055_008
    });
    f.target = Some(Target {
        pid: t.target_pid,
        comm: target.as_ref().map(|p| p.comm.clone()).unwrap_or_default(),
        exe: target.as_ref().map(|p| p.exe.clone()).unwrap_or_default(),
        uid: target.as_ref().map(|p| p.uid),
        operation: Operation::Write(t.op),
        request: (t.op == TamperOp::Ptrace).then_some(t.request),
        address: (t.addr != 0).then(|| format!("{:#x}", t.addr)),
        bytes: None,
    });
    Some(f)
}
