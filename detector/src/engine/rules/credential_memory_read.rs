//! Rule: a credential process's memory read by another process — `/proc/<pid>/mem` opened for
//! reading, process_vm_readv, ptrace read requests (MimiPenguin, 3snake, agent key dumps) — or
//! dumped to a core file at another process's request: `/proc/<pid>/coredump_filter` written
//! (which mappings the dump holds) or a signal whose default action dumps core sent to it. The
//! reader is the alert's process, the credential process its target; its
//! `/proc/<pid>/environ` read by another user is low. High; a debugger or
//! profiler run by the target's own user is medium, unless it is writing the target's memory to
//! a core file (`gcore`: a dump of its keys, not debugging); the package manager, the system's
//! crash handler and pid 1's signals (systemd's watchdog aborts a hung service) are not
//! findings. A reader the same process already had other detections for is made critical by
//! the correlator.
use super::{Context, Finding, Observation, Rule};
use crate::{
    capture::decode::{MemRead, ReadOp},
    engine::signals,
    output::alert::{Detection, Operation, Process, Severity, Target, T1055_008},
};

/// Debuggers and profilers: run by the target's own user they are someone debugging their
/// own program. Basenames of the executable.
const DEBUGGERS: &[&str] = &["gdb", "gdbserver", "strace", "ltrace", "valgrind", "perf"];

/// The system's crash handlers, which read a crashing process to write its core dump.
const CRASH_HANDLERS: &[&str] = &["systemd-coredump", "apport", "abrt-hook-ccpp"];

pub struct CredentialMemoryRead;

impl Rule for CredentialMemoryRead {
    fn evaluate(&mut self, cx: &Context, observation: &Observation) -> Vec<Finding> {
        match observation {
            Observation::MemRead(r, target) => evaluate(cx, *target, r).into_iter().collect(),
            _ => Vec::new(),
        }
    }
}

fn basename(exe: &str) -> &str {
    exe.rsplit('/').next().unwrap_or(exe)
}

/// A debugger or profiler, by its executable (perf is installed as `perf_<version>`).
pub fn is_debugger(exe: &str) -> bool {
    let base = basename(exe);
    DEBUGGERS.contains(&base) || base.starts_with("perf_")
}

/// A debugger asked to write a core file of the process it attached to: `gcore PID` runs gdb
/// with `-ex "gcore PREFIX.PID"`; `generate-core-file` is the same gdb command.
fn dumps_core(cmdline: &str) -> bool {
    cmdline
        .split(|c: char| c.is_whitespace() || c == '"' || c == '\'')
        .any(|w| w == "gcore" || w == "generate-core-file")
}

fn evaluate(cx: &Context, target: Option<&Process>, r: &MemRead) -> Option<Finding> {
    if r.target_pid == r.hdr.pid || r.target_pid == 0 {
        return None; // a process reading its own memory
    }
    // Only a known credential process is a target worth an alert; a target that is gone
    // cannot be named.
    let target = target?;
    if !cx.catalogue.matches(&target.exe, &target.comm) {
        return None;
    }
    let reader = cx.process;
    if cx.package_manager.is_some() || CRASH_HANDLERS.contains(&basename(&reader.exe)) {
        return None;
    }
    if r.op == ReadOp::DumpSignal && reader.pid == 1 {
        return None;
    }
    // A credential process's environment (SSH_AUTH_SOCK, a KRB5CCNAME, a password a script
    // passed): low, and only when read by another user than the target's (the kernel itself
    // lets only root or that user read it).
    if r.op == ReadOp::ProcEnviron && reader.uid == target.uid {
        return None;
    }
    let mut f = Finding::new(
        r.hdr.ktime_ns,
        reader.clone(),
        Detection::CredentialMemoryRead,
    );
    if r.op == ReadOp::Ptrace {
        f.mitre.push(T1055_008);
    }
    if is_debugger(&reader.exe) && reader.uid == target.uid && !dumps_core(&reader.cmdline) {
        f.ceiling = Severity::Medium;
    }
    if r.op == ReadOp::ProcEnviron {
        f.ceiling = Severity::Low;
    }
    f.target = Some(Target {
        pid: r.target_pid,
        comm: target.comm.clone(),
        exe: target.exe.clone(),
        uid: Some(target.uid),
        operation: Operation::Read(r.op),
        request: (r.op == ReadOp::Ptrace).then_some(r.request),
        address: (r.addr != 0).then(|| format!("{:#x}", r.addr)),
        bytes: (r.bytes != 0).then_some(r.bytes),
        signal: (r.op == ReadOp::DumpSignal).then(|| signals::name(r.request as u32)),
    });
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::decode::Header;

    fn proc(pid: u32, uid: u32, exe: &str) -> Process {
        Process {
            pid,
            uid,
            exe: exe.into(),
            comm: basename(exe).chars().take(15).collect(),
            ..Process::default()
        }
    }

    fn read(
        reader: &Process,
        target: &Process,
        op: ReadOp,
        pm: Option<&'static str>,
    ) -> Option<Finding> {
        let cx = Context {
            package_manager: pm,
            ..Context::for_test(reader)
        };
        let r = MemRead {
            hdr: Header {
                ktime_ns: 1,
                pid: reader.pid,
                tid: reader.pid,
                uid: reader.uid,
                ..Header::default()
            },
            op,
            target_pid: target.pid,
            request: 2,
            addr: 0x5555_0000,
            bytes: 4096,
        };
        evaluate(&cx, Some(target), &r)
    }

    #[test]
    fn readers_of_credential_processes() {
        let sshd = proc(100, 0, "/usr/sbin/sshd");
        let script = proc(200, 0, "/usr/bin/python3.11");
        let f = read(&script, &sshd, ReadOp::ProcMem, None).unwrap();
        assert_eq!(f.ceiling, Severity::Critical);
        let t = f.target.unwrap();
        assert_eq!(
            (t.pid, t.exe.as_str(), t.bytes),
            (100, "/usr/sbin/sshd", Some(4096))
        );
        assert!(f.mitre.is_empty());
        let f = read(&script, &sshd, ReadOp::Ptrace, None).unwrap();
        assert_eq!(f.mitre, [T1055_008]);
        // Its own memory, a non-credential target, the package manager, the crash handler.
        assert!(read(&sshd, &sshd, ReadOp::ProcMem, None).is_none());
        assert!(read(
            &script,
            &proc(300, 0, "/usr/bin/cat"),
            ReadOp::ProcMem,
            None
        )
        .is_none());
        assert!(read(&script, &sshd, ReadOp::ProcMem, Some("dpkg")).is_none());
        let coredump = proc(400, 0, "/usr/lib/systemd/systemd-coredump");
        assert!(read(&coredump, &sshd, ReadOp::ProcMem, None).is_none());
    }

    #[test]
    fn debuggers_of_the_targets_own_user_are_medium() {
        let agent = proc(100, 1000, "/usr/bin/ssh-agent");
        let own = read(
            &proc(200, 1000, "/usr/bin/gdb"),
            &agent,
            ReadOp::Ptrace,
            None,
        )
        .unwrap();
        assert_eq!(own.ceiling, Severity::Medium);
        let root = read(
            &proc(201, 0, "/usr/bin/strace"),
            &agent,
            ReadOp::Ptrace,
            None,
        )
        .unwrap();
        assert_eq!(root.ceiling, Severity::Critical);
        assert!(is_debugger("/usr/bin/perf_6.1") && !is_debugger("/usr/bin/perl"));
    }

    #[test]
    fn another_users_read_of_the_environment_is_low_and_the_targets_own_nothing() {
        let agent = proc(100, 1000, "/usr/bin/ssh-agent");
        let root = read(
            &proc(200, 0, "/usr/bin/ps"),
            &agent,
            ReadOp::ProcEnviron,
            None,
        )
        .unwrap();
        assert_eq!(root.ceiling, Severity::Low);
        assert!(read(
            &proc(201, 1000, "/usr/bin/ps"),
            &agent,
            ReadOp::ProcEnviron,
            None
        )
        .is_none());
    }

    #[test]
    fn a_debugger_writing_a_core_file_of_its_own_users_agent_is_not_debugging() {
        let agent = proc(100, 1000, "/usr/bin/ssh-agent");
        let mut gcore = proc(200, 1000, "/usr/bin/gdb");
        gcore.cmdline =
            "gdb -nx --batch -ex set pagination off -ex attach 100 -ex gcore /tmp/core.100".into();
        let f = read(&gcore, &agent, ReadOp::ProcMem, None).unwrap();
        assert_eq!(f.ceiling, Severity::Critical);
        assert!(dumps_core("gdb -batch -ex \"generate-core-file x\""));
        assert!(!dumps_core("gdb -p 100 -ex bt ./gcore-notes"));
    }

    #[test]
    fn core_dumps_asked_for_by_another_process_are_reads_except_pid_1s() {
        let sshd = proc(100, 0, "/usr/sbin/sshd");
        let script = proc(200, 0, "/usr/bin/bash");
        for op in [ReadOp::CoredumpFilter, ReadOp::DumpSignal] {
            let f = read(&script, &sshd, op, None).unwrap();
            assert_eq!(f.ceiling, Severity::Critical, "{op:?}");
        }
        let t = read(&script, &sshd, ReadOp::DumpSignal, None)
            .unwrap()
            .target
            .unwrap();
        // `read` sends request 2.
        assert_eq!(t.signal.as_deref(), Some("SIGINT"));
        let init = proc(1, 0, "/usr/lib/systemd/systemd");
        assert!(read(&init, &sshd, ReadOp::DumpSignal, None).is_none());
        assert!(read(&init, &sshd, ReadOp::CoredumpFilter, None).is_some());
        assert!(read(&sshd, &sshd, ReadOp::DumpSignal, None).is_none());
    }
}
