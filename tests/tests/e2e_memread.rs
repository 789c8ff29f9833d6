//! Root end-to-end: a credential process's memory read by another process
//! (`credential_memory_read`), against a real ssh-agent: MimiPenguin's `/proc/<pid>/maps` then
//! `/proc/<pid>/mem`, process_vm_readv, ptrace reads, debuggers, core dumps asked for by
//! another process, and the benign twins.
use std::{
    io::{BufRead as _, BufReader},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::Duration,
};

use detector_tests::{gcc, has, s, severity_rank, trigger, Daemon, TempDir};
use serde_json::Value;

/// The uid and gid of `nobody` and `nogroup`.
const NOBODY: u32 = 65534;

/// A real `ssh-agent -D` on a socket in `dir`, run as uid and gid `user` (root when `None`);
/// killed on drop.
struct Agent {
    child: Child,
    socket: PathBuf,
    /// Its stdout, kept open: it writes a second line, and would die of SIGPIPE on a closed pipe.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Agent {
    fn start(dir: &TempDir, user: Option<u32>) -> Agent {
        let socket = dir.path("agent.sock");
        let mut cmd = match user {
            None => Command::new("ssh-agent"),
            Some(u) => {
                let mut c = Command::new("setpriv");
                c.args([
                    &format!("--reuid={u}"),
                    &format!("--regid={u}"),
                    "--clear-groups",
                    "ssh-agent",
                ]);
                c
            }
        };
        // A process group of its own: a signal to the group reaches the agent alone.
        let mut child = cmd
            .args(["-D", "-a"])
            .arg(&socket)
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ssh-agent");
        // It prints its environment lines once it listens.
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).expect("ssh-agent's first line");
        assert!(line.contains("SSH_AUTH_SOCK"), "ssh-agent said {line:?}");
        Agent {
            child,
            socket,
            _stdout: stdout,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `memread MODE TARGET`, optionally with an environment variable; returns (its pid, bytes).
fn memread(bin: &Path, mode: &str, target: &str, env: Option<(&str, &Path)>) -> (u32, i64) {
    let mut cmd = Command::new(bin);
    cmd.args([mode, target]).stdout(Stdio::piped());
    if let Some((k, v)) = env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("run memread");
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "memread {mode} {target}: {:?}",
        out.status
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let bytes = text.lines().nth(1).and_then(|l| l.trim().parse().ok());
    (pid, bytes.expect("the bytes read"))
}

fn read_by(pid: u32, target: u32) -> impl Fn(&Value) -> bool {
    move |a: &Value| {
        has(a, "detections", "credential_memory_read")
            && a["process"]["pid"] == pid
            && a["target"]["pid"] == target
    }
}

fn fixture(dir: &TempDir) -> PathBuf {
    gcc(dir, "memread.c", "memread", false)
}

#[test]
fn proc_pid_mem_of_ssh_agent_after_its_maps_is_high() {
    let dir = TempDir::new("memread-procmem");
    let bin = fixture(&dir);
    let d = Daemon::start();
    let agent = Agent::start(&dir, None);
    let (pid, bytes) = memread(&bin, "procmem", &agent.pid().to_string(), None);
    assert!(bytes > 0, "read nothing");
    let a = d.expect_alert("a read of ssh-agent's memory", read_by(pid, agent.pid()));
    assert_eq!(s(&a, "severity"), "high", "{a}");
    assert_eq!(s(&a, "rule.name"), "credential_dumping");
    assert_eq!(s(&a, "process.name"), "memread");
    assert_eq!(s(&a, "process.executable"), bin.to_str().unwrap());
    assert_eq!(s(&a, "target.name"), "ssh-agent");
    assert_eq!(s(&a, "target.executable"), "/usr/bin/ssh-agent");
    assert_eq!(s(&a, "target.operation"), "proc_mem");
    assert_eq!(a["target"]["user"]["id"], 0);
    assert!(has(&a, "detections", "credential_process"));
    assert!(has(&a, "threat.technique.id", "T1003.007"));
    assert!(!has(&a, "threat.technique.id", "T1055.008"));
    assert_eq!(
        a["event"]["risk_score"].as_u64().unwrap() as usize,
        a["detections"].as_array().unwrap().len()
    );
    d.stop();
}

#[test]
fn process_vm_readv_of_ssh_agent_is_high_with_the_bytes() {
    let dir = TempDir::new("memread-vm");
    let bin = fixture(&dir);
    let d = Daemon::start();
    let agent = Agent::start(&dir, None);
    let (pid, bytes) = memread(&bin, "vmread", &agent.pid().to_string(), None);
    assert_eq!(bytes, 4096);
    let a = d.expect_alert("process_vm_readv of ssh-agent", read_by(pid, agent.pid()));
    assert_eq!(s(&a, "severity"), "high", "{a}");
    assert_eq!(s(&a, "target.operation"), "process_vm_readv");
    assert_eq!(a["target"]["bytes"], 4096);
    assert!(s(&a, "target.address").starts_with("0x"));
    d.stop();
}

#[test]
fn ptrace_reads_of_ssh_agent_are_high_with_t1055_008() {
    let dir = TempDir::new("memread-ptrace");
    let bin = fixture(&dir);
    let d = Daemon::start();
    let agent = Agent::start(&dir, None);
    let (pid, _) = memread(&bin, "ptrace", &agent.pid().to_string(), None);
    let a = d.expect_alert("ptrace reads of ssh-agent", read_by(pid, agent.pid()));
    assert!(severity_rank(&a) >= 3, "{a}");
    assert_eq!(s(&a, "target.operation"), "ptrace");
    assert!(has(&a, "threat.technique.id", "T1003.007"));
    assert!(has(&a, "threat.technique.id", "T1055.008"));
    d.stop();
}

/// The same read by a process that was started with an LD_PRELOAD of a library from /tmp:
/// both patterns in one alert, critical.
#[test]
fn a_reader_that_was_preloaded_is_critical() {
    let dir = TempDir::new("memread-preload");
    let bin = fixture(&dir);
    let lib = gcc(&dir, "plain_ext.c", "libplain.so", true);
    let d = Daemon::start();
    let agent = Agent::start(&dir, None);
    let target = agent.pid().to_string();
    let (pid, _) = memread(&bin, "procmem", &target, Some(("LD_PRELOAD", &lib)));
    let a = d.expect_alert("a preloaded reader", read_by(pid, agent.pid()));
    assert_eq!(s(&a, "severity"), "critical", "{a}");
    assert!(has(&a, "detections", "preload_env"), "{a}");
    assert!(a["event"]["risk_score"].as_u64().unwrap() >= 3, "{a}");
    d.stop();
}

/// gdb and strace run by root against root's agent: medium. strace run by root against
/// another user's agent: high.
#[test]
fn debuggers_of_their_own_users_agent_are_medium_and_of_another_users_high() {
    let dir = TempDir::new("memread-gdb");
    let d = Daemon::start();
    let agent = Agent::start(&dir, None);
    let pid = agent.pid();
    trigger(Command::new("gdb").args([
        "-nx",
        "-batch",
        "-p",
        &pid.to_string(),
        "-ex",
        "x/8gx $sp",
    ]));
    let a = d.expect_alert("gdb reading root's agent", |a| {
        has(a, "detections", "credential_memory_read")
            && s(a, "process.name") == "gdb"
            && a["target"]["pid"] == pid
    });
    assert_eq!(s(&a, "severity"), "medium", "{a}");
    drop(agent);

    let shared = TempDir::new("memread-nobody");
    std::fs::set_permissions(
        &shared.0,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let other = Agent::start(&shared, Some(NOBODY));
    let pid = other.pid();
    let mut strace = Command::new("strace")
        .args(["-p", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("strace");
    thread::sleep(Duration::from_millis(500));
    // Something for the agent to do, and strace to decode.
    let _ = Command::new("ssh-add")
        .arg("-l")
        .env("SSH_AUTH_SOCK", &other.socket)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let a = d.expect_alert("strace reading nobody's agent", |a| {
        has(a, "detections", "credential_memory_read")
            && s(a, "process.name") == "strace"
            && a["target"]["pid"] == pid
    });
    let _ = strace.kill();
    let _ = strace.wait();
    assert_eq!(s(&a, "severity"), "high", "{a}");
    assert_eq!(a["target"]["user"]["id"], NOBODY);
    d.stop();
}

/// Another user's ssh-agent's environment read through /proc: low, naming the operation; the
/// same read of an agent of the reader's own user is nothing.
#[test]
fn another_users_agents_environment_is_low_and_ones_own_is_nothing() {
    let shared = TempDir::new("memread-environ");
    std::fs::set_permissions(
        &shared.0,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let d = Daemon::start();
    let other = Agent::start(&shared, Some(NOBODY));
    let own_dir = TempDir::new("memread-environ-own");
    let own = Agent::start(&own_dir, None);
    for agent in [&other, &own] {
        assert!(
            trigger(Command::new("cat").arg(format!("/proc/{}/environ", agent.pid()))).success()
        );
    }
    let a = d.expect_alert("cat reading nobody's agent's environment", |a| {
        has(a, "detections", "credential_memory_read")
            && s(a, "process.name") == "cat"
            && a["target"]["pid"] == other.pid()
    });
    assert_eq!(s(&a, "severity"), "low", "{a}");
    assert_eq!(s(&a, "target.operation"), "proc_environ", "{a}");
    // A read of memory after them: once its alert is out, the reads before it were judged.
    let dir = TempDir::new("memread-environ-after");
    let bin = fixture(&dir);
    let (pid, _) = memread(&bin, "procmem", &own.pid().to_string(), None);
    d.expect_alert("the later read", read_by(pid, own.pid()));
    let about_own =
        d.alerts_matching(|a| s(a, "process.name") == "cat" && a["target"]["pid"] == own.pid());
    assert!(about_own.is_empty(), "{about_own:#?}");
    d.stop();
}

/// `gcore` of ssh-agent: gdb attached to write the agent's memory, keys included, to a core
/// file. Not debugging, even by the agent's own user: high.
#[test]
fn gcore_of_ssh_agent_is_high_even_by_its_own_user() {
    let dir = TempDir::new("memread-gcore");
    let d = Daemon::start();
    let agent = Agent::start(&dir, None);
    let pid = agent.pid();
    let prefix = dir.path("core");
    assert!(trigger(
        Command::new("gcore")
            .arg("-o")
            .arg(&prefix)
            .arg(pid.to_string())
    )
    .success());
    assert!(
        dir.path(&format!("core.{pid}")).exists(),
        "gcore wrote no core file"
    );
    let a = d.expect_alert("gdb, run by gcore, reading the agent", |a| {
        has(a, "detections", "credential_memory_read")
            && s(a, "process.name") == "gdb"
            && a["target"]["pid"] == pid
    });
    assert_eq!(s(&a, "severity"), "high", "{a}");
    assert!(s(&a, "process.command_line").contains("gcore"), "{a}");
    d.stop();
}

/// The benign twins: a process reading its own memory, a reader of a process that holds no
/// credentials, ps, top and pgrep over every process: nothing of medium or above.
#[test]
fn own_memory_other_processes_and_process_listings_are_nothing() {
    let dir = TempDir::new("memread-benign");
    let bin = fixture(&dir);
    let d = Daemon::start();
    let agent = Agent::start(&dir, None);
    let (own, _) = memread(&bin, "procmem", "self", None);
    let (child_reader, _) = memread(&bin, "procmem", "child", None);
    let (vm_reader, _) = memread(&bin, "vmread", "child", None);
    for argv in [
        &["ps", "aux"][..],
        &["top", "-b", "-n", "1"],
        &["pgrep", "-a", "ssh-agent"],
    ] {
        assert!(trigger(Command::new(argv[0]).args(&argv[1..])).success());
    }
    // A real read of the agent after them: once its alert is out, theirs would be too.
    let (reader, _) = memread(&bin, "vmread", &agent.pid().to_string(), None);
    d.expect_alert("the control read", read_by(reader, agent.pid()));
    let noisy = d.alerts_matching(|a| {
        severity_rank(a) >= 2
            && ([own, child_reader, vm_reader]
                .iter()
                .any(|p| a["process"]["pid"] == *p)
                || ["ps", "top", "pgrep"].contains(&s(a, "process.name")))
    });
    assert!(noisy.is_empty(), "alerts for benign readers: {noisy:?}");
    d.stop();
}

/// `sh -c SCRIPT` run to its end; returns its pid (the shell's builtins do the work).
fn sh(script: &str) -> u32 {
    let mut child = Command::new("sh")
        .args(["-c", script])
        .spawn()
        .expect("run sh");
    let pid = child.id();
    assert!(child.wait().unwrap().success(), "sh -c {script:?} failed");
    pid
}

/// `kill -SIG -- PID` with procps' kill (the kill syscall from a process of its own; a negative
/// `pid` is a process group); returns its pid.
fn kill(sig: &str, pid: i32) -> u32 {
    let mut child = Command::new("/usr/bin/kill")
        .args([&format!("-{sig}"), "--", &pid.to_string()])
        .spawn()
        .expect("run kill");
    let kill_pid = child.id();
    assert!(child.wait().unwrap().success(), "kill -{sig} {pid} failed");
    kill_pid
}

/// A core dump of an agent asked for by another process: its `coredump_filter` written to hold
/// every mapping, then SIGSEGV sent to it, then SIGQUIT sent to another agent's process group.
/// All are high reads naming the agent.
#[test]
fn core_dump_of_ssh_agent_asked_for_by_another_process_is_high() {
    let dir = TempDir::new("memread-coredump");
    let d = Daemon::start();
    let agent = Agent::start(&dir, None);
    let pid = agent.pid();
    let writer = sh(&format!("echo 0x7f > /proc/{pid}/coredump_filter"));
    let a = d.expect_alert("the agent's coredump_filter written", read_by(writer, pid));
    assert_eq!(s(&a, "severity"), "high", "{a}");
    assert_eq!(s(&a, "target.operation"), "coredump_filter", "{a}");
    assert_eq!(s(&a, "target.executable"), "/usr/bin/ssh-agent", "{a}");
    let sender = kill("SEGV", pid as i32);
    let a = d.expect_alert("SIGSEGV sent to the agent", read_by(sender, pid));
    assert_eq!(s(&a, "severity"), "high", "{a}");
    assert_eq!(s(&a, "target.operation"), "dump_signal", "{a}");
    assert_eq!(s(&a, "target.signal"), "SIGSEGV", "{a}");
    assert_eq!(s(&a, "process.name"), "kill", "{a}");
    // The same request sent to the process group a second agent leads (a socket of its own:
    // the first left its socket behind).
    let dir2 = TempDir::new("memread-coredump-group");
    let second = Agent::start(&dir2, None);
    let pid = second.pid();
    let sender = kill("QUIT", -(pid as i32));
    let a = d.expect_alert("SIGQUIT sent to the agent's group", read_by(sender, pid));
    assert_eq!(s(&a, "severity"), "high", "{a}");
    assert_eq!(s(&a, "target.operation"), "dump_signal", "{a}");
    assert_eq!(s(&a, "target.signal"), "SIGQUIT", "{a}");
    d.stop();
}

/// The benign twins of a core dump asked for: a shell setting its own coredump_filter through
/// /proc/self, one reading the agent's, signals that dump nothing (SIGCONT, SIGWINCH) sent to
/// the agent, SIGQUIT sent to a process holding no credentials, and a shell aborting itself.
#[test]
fn own_core_settings_reads_of_them_and_harmless_signals_are_nothing() {
    let dir = TempDir::new("memread-coredump-benign");
    let d = Daemon::start();
    let agent = Agent::start(&dir, None);
    let pid = agent.pid();
    let mut sleeper = Command::new("sleep").arg("60").spawn().expect("run sleep");
    let benign = [
        sh("echo 0x33 > /proc/self/coredump_filter"),
        sh(&format!("cat /proc/{pid}/coredump_filter >/dev/null")),
        kill("CONT", pid as i32),
        kill("WINCH", pid as i32),
        kill("QUIT", sleeper.id() as i32),
    ];
    let _ = sleeper.wait();
    let aborter = Command::new("sh")
        .args(["-c", "kill -ABRT $$"])
        .current_dir(dir.path(""))
        .status()
        .expect("run sh");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&aborter),
        Some(6)
    );
    // A real write of the agent's coredump_filter after them: once its alert is out, theirs
    // would be too.
    let writer = sh(&format!("echo 0x33 > /proc/{pid}/coredump_filter"));
    d.expect_alert("the control write", read_by(writer, pid));
    let noisy = d.alerts_matching(|a| {
        severity_rank(a) >= 2
            && a["process"]["pid"] != writer
            && (benign.iter().any(|p| a["process"]["pid"] == *p)
                || has(a, "detections", "credential_memory_read"))
    });
    assert!(noisy.is_empty(), "alerts for benign twins: {noisy:?}");
    d.stop();
}
