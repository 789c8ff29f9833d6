//! Rule: another process's memory written or attached to (ptrace POKETEXT/POKEDATA, ATTACH,
//! SEIZE; process_vm_writev; /proc/<pid>/mem opened for write) — inline hooking on Linux. A
//! debugger or profiler attaching to a process of its own user, or opening its
//! `/proc/<pid>/mem`, is medium at most. Aimed at the sensor itself (its pid or one of its
//! threads), any of these is critical `sensor_tamper`, whoever does it.
use detector_common::{PTRACE_ATTACH, PTRACE_POKEDATA, PTRACE_POKETEXT, PTRACE_SEIZE};

use super::{
    credential_memory_read::is_debugger, sensor_tamper, Context, Finding, Observation, Rule,
};
use crate::{
    capture::decode::{MemTamper, TamperOp},
    engine::sensor,
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
    if sensor::is_sensor(t.target_pid) {
        sensor_tamper::mark(&mut f, reason(t));
    } else if debugging && is_debugger(&process.exe) && target.is_some_and(|p| p.uid == process.uid)
    {
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
        signal: None,
    });
    Some(f)
}

/// What was done to the sensor's memory.
fn reason(t: &MemTamper) -> String {
    match t.op {
        TamperOp::Ptrace => {
            let request = match t.request {
                PTRACE_ATTACH => "PTRACE_ATTACH".to_owned(),
                PTRACE_SEIZE => "PTRACE_SEIZE".to_owned(),
                PTRACE_POKETEXT => "PTRACE_POKETEXT".to_owned(),
                PTRACE_POKEDATA => "PTRACE_POKEDATA".to_owned(),
                r => format!("request {r}"),
            };
            format!("ptrace {request} aimed at the detector")
        }
        TamperOp::ProcessVmWritev => "process_vm_writev into the detector's memory".to_owned(),
        TamperOp::ProcMem => "the detector's /proc/<pid>/mem opened for writing".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{capture::decode::Header, output::alert::Detection};

    fn tamper(op: TamperOp, target_pid: u32, request: u64) -> MemTamper {
        MemTamper {
            hdr: Header {
                pid: 4242,
                ktime_ns: 1,
                ..Default::default()
            },
            op,
            target_pid,
            request,
            addr: 0,
        }
    }

    #[test]
    fn writes_aimed_at_the_sensor_are_sensor_tamper_even_from_a_debugger() {
        let gdb = Process {
            pid: 4242,
            uid: 0,
            exe: "/usr/bin/gdb".into(),
            ..Default::default()
        };
        let me = Process {
            pid: sensor::pid(),
            ..Default::default()
        };
        for (op, request, reason) in [
            (
                TamperOp::Ptrace,
                PTRACE_ATTACH,
                "ptrace PTRACE_ATTACH aimed at the detector",
            ),
            (
                TamperOp::ProcessVmWritev,
                1,
                "process_vm_writev into the detector's memory",
            ),
            (
                TamperOp::ProcMem,
                0,
                "the detector's /proc/<pid>/mem opened for writing",
            ),
        ] {
            let f = evaluate(&gdb, Some(&me), &tamper(op, sensor::pid(), request)).unwrap();
            assert!(f.detections.contains(&Detection::SensorTamper), "{op:?}");
            assert_eq!(f.ceiling, Severity::Critical, "{op:?}");
            assert_eq!(f.sensor.as_ref().unwrap().reason, reason);
        }
        // The same debugger attaching to another process of its user: medium at most, no
        // sensor_tamper.
        let other = Process {
            pid: 1,
            uid: 0,
            ..Default::default()
        };
        let f = evaluate(
            &gdb,
            Some(&other),
            &tamper(TamperOp::Ptrace, 1, PTRACE_ATTACH),
        )
        .unwrap();
        assert!(!f.detections.contains(&Detection::SensorTamper));
        assert_eq!(f.ceiling, Severity::Medium);
    }
}
