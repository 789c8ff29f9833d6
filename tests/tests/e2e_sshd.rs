//! Root end-to-end against a real sshd (Debian's openssh-server, run by the test on a loopback
//! port with its own host key and configuration, never the system's service): its memory read
//! the way MimiPenguin does, and strace following it through a password login. The test user
//! is added for the test and the account files put back by guards, even on failure.
use std::{
    io::Write as _,
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use detector_tests::{has, s, trigger, Daemon, Restore, TempDir};
use serde_json::Value;

const USER: &str = "detector-e2e-ssh";
const PASSWORD: &str = "e2e-Passw0rd-not-secret";

/// The account files `useradd` and `chpasswd` change.
const ACCOUNT_FILES: &[&str] = &[
    "/etc/passwd",
    "/etc/shadow",
    "/etc/group",
    "/etc/gshadow",
    "/etc/subuid",
    "/etc/subgid",
    "/etc/passwd-",
    "/etc/shadow-",
    "/etc/group-",
    "/etc/gshadow-",
    "/etc/subuid-",
    "/etc/subgid-",
];

/// The test user, with a password; the account files restored on drop.
struct User {
    uid: u32,
    _guards: Vec<Restore>,
}

impl User {
    fn add() -> User {
        let guards = ACCOUNT_FILES.iter().map(Restore::path).collect();
        let _ = Command::new("userdel")
            .arg(USER)
            .stderr(Stdio::null())
            .status();
        assert!(trigger(Command::new("useradd").args([
            "-M",
            "-d",
            "/nonexistent",
            "-s",
            "/bin/sh",
            USER
        ]))
        .success());
        let mut chpasswd = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .spawn()
            .expect("chpasswd");
        writeln!(chpasswd.stdin.take().unwrap(), "{USER}:{PASSWORD}").unwrap();
        assert!(chpasswd.wait().unwrap().success(), "chpasswd");
        let out = Command::new("id").args(["-u", USER]).output().unwrap();
        let uid = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        User {
            uid,
            _guards: guards,
        }
    }
}

/// A real sshd, in the foreground, on 127.0.0.1:`port`; killed on drop.
struct Sshd {
    child: Child,
    port: u16,
    _privsep: Option<Restore>,
}

impl Sshd {
    fn start(dir: &TempDir) -> Sshd {
        // The privilege-separation directory the package's service would create.
        let privsep = (!Path::new("/run/sshd").exists()).then(|| {
            let guard = Restore::path("/run/sshd");
            std::fs::create_dir_all("/run/sshd").unwrap();
            guard
        });
        let key = dir.path("host_key");
        assert!(trigger(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(&key)
        )
        .success());
        let port = free_port();
        let config = dir.path("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nUsePAM yes\n\
                 PasswordAuthentication yes\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin no\nAuthorizedKeysFile none\nStrictModes no\n",
                key.display(),
                dir.path("sshd.pid").display()
            ),
        )
        .unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sshd");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd does not listen on {port}");
            thread::sleep(Duration::from_millis(50));
        }
        Sshd {
            child,
            port,
            _privsep: privsep,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A password login of the test user running `command`; whether it succeeded.
    fn login(&self, command: &str) -> bool {
        Command::new("sshpass")
            .args(["-p", PASSWORD, "ssh", "-p", &self.port.to_string()])
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "PreferredAuthentications=password",
                "-o",
                "LogLevel=ERROR",
            ])
            .arg(format!("{USER}@127.0.0.1"))
            .arg(command)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The uid sshd's pre-authentication child runs as.
fn sshd_user() -> u32 {
    let out = Command::new("id").args(["-u", "sshd"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("the sshd user")
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// MimiPenguin's way, as a script: the target's maps, then its heap and stack through
/// /proc/<pid>/mem; prints the bytes read.
const MIMIPENGUIN_PY: &str = r#"
import re, sys
pid = sys.argv[1]
total = 0
with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
    for line in maps:
        if not ("[heap]" in line or "[stack]" in line):
            continue
        start, end = (int(x, 16) for x in line.split()[0].split("-"))
        mem.seek(start)
        total += len(mem.read(end - start))
print(total)
"#;

fn memory_read_of(a: &Value, reader: &str) -> bool {
    has(a, "detections", "credential_memory_read") && s(a, "process.name") == reader
}

#[test]
fn a_script_reading_the_listening_sshds_heap_and_stack_after_its_maps_is_high() {
    let dir = TempDir::new("sshd-mimipenguin");
    let script = dir.path("mimipenguin.py");
    std::fs::write(&script, MIMIPENGUIN_PY).unwrap();
    let sshd = Sshd::start(&dir);
    let d = Daemon::start();
    let out = Command::new("python3")
        .arg(&script)
        .arg(sshd.pid().to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let bytes: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(bytes > 0, "read nothing of sshd");
    let a = d.expect_alert("python3 reading sshd's memory", |a| {
        memory_read_of(a, "python3") && a["target"]["pid"] == sshd.pid()
    });
    assert_eq!(s(&a, "severity"), "high", "{a}");
    assert_eq!(s(&a, "target.name"), "sshd", "{a}");
    assert_eq!(s(&a, "target.executable"), "/usr/sbin/sshd", "{a}");
    assert_eq!(s(&a, "target.operation"), "proc_mem", "{a}");
    assert!(
        s(&a, "process.command_line").contains("mimipenguin.py"),
        "{a}"
    );
    assert!(has(&a, "threat.technique.id", "T1003.007"), "{a}");
    d.stop();
}

/// 3snake's way: root tracing sshd, following it into the processes a password login forks,
/// which run as the user logging in. Reading another user's session process is high, whatever
/// the tool (strace by root of root's own listener alone would be a debugger, medium).
#[test]
fn strace_following_the_listening_sshd_through_a_password_login_is_high() {
    let dir = TempDir::new("sshd-strace");
    let user = User::add();
    let sshd = Sshd::start(&dir);
    assert!(sshd.login("true"), "the password login does not work");
    let d = Daemon::start();
    let mut strace = Command::new("strace")
        .args(["-f", "-s", "256", "-o"])
        .arg(dir.path("trace"))
        .args(["-p", &sshd.pid().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("strace");
    thread::sleep(Duration::from_millis(800));
    // The login under strace need not succeed: strace reads the login's processes as soon as
    // they run, whether or not the password check then goes through. Up to three attempts.
    // The login's processes that run as another user than root: the pre-authentication child
    // (sshd's privilege-separation user) and the session (the user logging in); alerts on one
    // reader are aggregated, so either may be the one named.
    let other_users_login_read = |a: &Value| {
        memory_read_of(a, "strace") && a["target"]["user"]["id"].as_u64().is_some_and(|u| u != 0)
    };
    let mut logins = Vec::new();
    for _ in 0..3 {
        logins.push(sshd.login("true"));
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && d.alerts_matching(other_users_login_read).is_empty() {
            thread::sleep(Duration::from_millis(100));
        }
        if !d.alerts_matching(other_users_login_read).is_empty() {
            break;
        }
    }
    let a = d.expect_alert(
        &format!("strace reading a login process of another user (logins succeeded: {logins:?})"),
        other_users_login_read,
    );
    let _ = strace.kill();
    let _ = strace.wait();
    assert_eq!(s(&a, "severity"), "high", "{a}");
    assert_eq!(s(&a, "target.name"), "sshd", "{a}");
    let uid = a["target"]["user"]["id"].as_u64().unwrap() as u32;
    assert!(uid == user.uid || uid == sshd_user(), "{a}");
    let trace = std::fs::read_to_string(dir.path("trace")).unwrap_or_default();
    assert!(trace.contains("read("), "strace saw nothing: {trace:.200}");
    d.stop();
}

/// The benign twin: the same password login, untraced, and ps over every process: nothing of
/// medium or above about sshd's memory.
#[test]
fn a_password_login_and_a_process_listing_raise_no_memory_read() {
    let dir = TempDir::new("sshd-benign");
    let _user = User::add();
    let sshd = Sshd::start(&dir);
    let d = Daemon::start();
    assert!(sshd.login("true"), "the password login failed");
    assert!(trigger(Command::new("ps").arg("auxww")).success());
    assert!(trigger(Command::new("pgrep").arg("sshd")).success());
    // A watched change after them: once its alert is out, what came before was judged.
    let marker = PathBuf::from("/etc/pam.d/zz-detector-e2e-sshd-marker");
    let _m = Restore::path(&marker);
    std::fs::write(&marker, "\n").unwrap();
    d.expect_alert("the marker", |a| {
        s(a, "file.path") == marker.to_str().unwrap()
    });
    let reads = d.alerts_matching(|a| has(a, "detections", "credential_memory_read"));
    assert!(reads.is_empty(), "{reads:#?}");
    d.stop();
}

/// Prevent mode on the kill path: a password login through a real sshd (sshd, its privilege
/// separation children, PAM's modules, the session's shell) is never stopped.
#[test]
fn a_password_login_with_prevent_mode_on_is_never_stopped() {
    let dir = TempDir::new("sshd-prevent");
    let _user = User::add();
    let sshd = Sshd::start(&dir);
    let cfg = dir.path("detector.toml");
    std::fs::write(&cfg, "[prevent]\nmode = \"prevent\"\nstop = \"kill\"\n").unwrap();
    let d = Daemon::start_with(&["--config", cfg.to_str().unwrap()]);
    assert!(sshd.login("id -u"), "the password login failed");
    assert!(sshd.login("true"), "the second password login failed");
    let marker = PathBuf::from("/etc/pam.d/zz-detector-e2e-sshd-prevent-marker");
    let _m = Restore::path(&marker);
    std::fs::write(&marker, "\n").unwrap();
    d.expect_alert("the marker", |a| {
        s(a, "file.path") == marker.to_str().unwrap()
    });
    let stopped = d.alerts_matching(|a| has(a, "detections", "prevented"));
    assert!(stopped.is_empty(), "{stopped:#?}");
    d.stop();
}
