//! Root end-to-end: loader variables in a real exec → a real alert from the real daemon.
use std::process::Command;

use detector_tests::{gcc, has, s, trigger, Daemon, TempDir};

/// Test 3 of the T1056.004 guide (../shared/seeds): a libc read() hook preloaded into cat.
#[test]
fn read_hook_preloaded_into_cat() {
    let dir = TempDir::new("cat");
    let lib = gcc(&dir, "read_hook.c", "libreadhook.so", true);
    let log = dir.path("reads.log");
    let d = Daemon::start();
    let st = trigger(
        Command::new("cat")
            .arg("/etc/hostname")
            .env("LD_PRELOAD", &lib)
            .env("HOOK_LOG", &log),
    );
    assert!(st.success());
    assert!(
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("read("),
        "the hook did not run"
    );
    let a = d.expect_alert("LD_PRELOAD read() hook in cat", |a| {
        s(a, "process.name") == "cat" && s(a, "library.path") == lib.to_str().unwrap()
    });
    assert_eq!(s(&a, "process.executable"), "/usr/bin/cat");
    assert_eq!(s(&a, "process.command_line"), "cat /etc/hostname");
    assert_eq!(s(&a, "preload.source"), "env");
    assert_eq!(s(&a, "preload.variable"), "LD_PRELOAD");
    assert!(has(&a, "detections", "preload_env"));
    assert!(has(&a, "threat.technique.id", "T1574.006"));
    assert!(a["process"]["pid"].as_u64().unwrap() > 1);
    assert!(a["process"]["parent"]["pid"].as_u64().unwrap() == std::process::id() as u64);
    assert_eq!(
        a["event"]["risk_score"].as_u64().unwrap() as usize,
        a["detections"].as_array().unwrap().len()
    );
    assert!(
        chrono_like(s(&a, "@timestamp")),
        "timestamp {}",
        s(&a, "@timestamp")
    );
    d.stop();
}

/// Atomic Red Team T1574.006 test #2: `LD_PRELOAD=<lib> ls`.
#[test]
fn atomic_t1574_006_2_preload_into_ls() {
    let dir = TempDir::new("ls");
    let lib = gcc(&dir, "read_hook.c", "libatomic.so", true);
    let d = Daemon::start();
    assert!(trigger(Command::new("ls").arg(&dir.0).env("LD_PRELOAD", &lib)).success());
    let a = d.expect_alert("LD_PRELOAD into ls", |a| {
        s(a, "process.name") == "ls" && s(a, "library.path") == lib.to_str().unwrap()
    });
    // The library shadows libc read(): credential API hooking, even in a process that is not
    // in the catalogue, at medium.
    assert_eq!(s(&a, "rule.name"), "credential_api_hooking");
    assert!(
        has(&a, "detections", "credential_hooks") && !has(&a, "detections", "credential_process")
    );
    assert_eq!(s(&a, "severity"), "medium");
    d.stop();
}

/// Two LD_PRELOAD entries: glibc uses the last; so does the alert.
#[test]
fn last_ld_preload_wins() {
    let dir = TempDir::new("last");
    let lib = gcc(&dir, "read_hook.c", "libsecond.so", true);
    let exec_env = gcc(&dir, "exec_env.c", "exec_env", false);
    let decoy = dir.path("decoy-first.so");
    let d = Daemon::start();
    trigger(
        Command::new(&exec_env)
            .arg(format!("LD_PRELOAD={}", decoy.display()))
            .arg("A=1")
            .arg(format!("LD_PRELOAD={}", lib.display()))
            .args(["--", "/usr/bin/true"]),
    );
    let a = d.expect_alert("the last LD_PRELOAD", |a| {
        s(a, "library.path") == lib.to_str().unwrap()
    });
    assert_eq!(a["preload"]["occurrences"], 2);
    assert_eq!(s(&a, "process.name"), "true");
    assert!(d
        .alerts_matching(|a| s(a, "library.path") == decoy.to_str().unwrap())
        .is_empty());
    d.stop();
}

/// LD_PRELOAD after 200 KiB of environment is still found: the whole environment is scanned.
#[test]
fn preload_after_200k_of_environment() {
    let dir = TempDir::new("pad");
    let lib = gcc(&dir, "read_hook.c", "libpadded.so", true);
    let exec_env = gcc(&dir, "exec_env.c", "exec_env", false);
    let d = Daemon::start();
    let mut cmd = Command::new(&exec_env);
    // 200 variables of 1 KiB, then the preload.
    for _ in 0..200 {
        cmd.arg("@pad:1024");
    }
    let st = trigger(
        cmd.arg(format!("LD_PRELOAD={}", lib.display()))
            .args(["--", "/usr/bin/true"]),
    );
    assert!(st.success());
    let a = d.expect_alert("LD_PRELOAD after 200 KiB", |a| {
        s(a, "library.path") == lib.to_str().unwrap()
    });
    assert_eq!(s(&a, "process.name"), "true");
    d.stop();
}

/// A single LD_PRELOAD string near the kernel's 128 KiB limit, padded in front: the value is
/// truncated in the kernel (and flagged) but its tail still names the library.
#[test]
fn padded_128k_preload_value() {
    let dir = TempDir::new("longval");
    let lib = gcc(&dir, "read_hook.c", "libtail.so", true);
    let value = format!("{}{}", ":".repeat(120_000), lib.display());
    let d = Daemon::start();
    assert!(trigger(Command::new("/usr/bin/true").env("LD_PRELOAD", &value)).success());
    let a = d.expect_alert("a padded 120 KiB LD_PRELOAD", |a| {
        s(a, "library.path") == lib.to_str().unwrap() && has(a, "detections", "preload_env")
    });
    assert_eq!(a["preload"]["truncated"], true);
    d.stop();
}

/// The daemon cannot read (stopped) while execs fill a small ring buffer: the kernel counts
/// what it could not queue and the daemon reports it.
#[test]
fn lost_events_are_counted_and_reported() {
    let dir = TempDir::new("loss");
    let lib = gcc(&dir, "read_hook.c", "libloss.so", true);
    let d = Daemon::start_with(&["--ring-buffer-kib", "64", "--loss-interval", "1"]);
    unsafe { libc::kill(d.pid() as i32, libc::SIGSTOP) };
    for _ in 0..60 {
        trigger(Command::new("/usr/bin/true").env("LD_PRELOAD", &lib));
    }
    unsafe { libc::kill(d.pid() as i32, libc::SIGCONT) };
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let stderr = d.stop();
    let lost: u64 = stderr
        .lines()
        .find_map(|l| {
            l.split("events (ring buffer full); ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no loss report on stderr:\n{stderr}"));
    assert!(lost > 0);
}

/// LD_AUDIT: ld.so loads an rtld-audit module into the process.
#[test]
fn ld_audit_library() {
    let dir = TempDir::new("audit");
    let lib = gcc(&dir, "audit.c", "libaudit.so", true);
    let log = dir.path("audit.log");
    let d = Daemon::start();
    assert!(trigger(
        Command::new("/usr/bin/true")
            .env("LD_AUDIT", &lib)
            .env("HOOK_LOG", &log)
    )
    .success());
    assert!(
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("la_version"),
        "ld.so did not load the audit module"
    );
    let a = d.expect_alert("LD_AUDIT", |a| {
        s(a, "library.path") == lib.to_str().unwrap()
    });
    assert!(has(&a, "detections", "audit_library"));
    assert_eq!(s(&a, "preload.variable"), "LD_AUDIT");
    d.stop();
}

/// An exec without loader variables raises nothing.
#[test]
fn plain_exec_raises_nothing() {
    let dir = TempDir::new("plain");
    let marker = dir.path("plain-marker");
    let d = Daemon::start();
    assert!(trigger(
        Command::new("/usr/bin/ls")
            .arg(&marker)
            .env_remove("LD_PRELOAD")
    )
    .code()
    .is_some());
    std::thread::sleep(std::time::Duration::from_millis(500));
    let m = marker.to_str().unwrap();
    assert!(d
        .alerts_matching(|a| s(a, "process.command_line").contains(m))
        .is_empty());
    d.stop();
}

fn chrono_like(ts: &str) -> bool {
    // 2026-11-23T09:13:13.595123Z
    ts.len() >= 20 && ts.as_bytes()[4] == b'-' && ts.as_bytes()[10] == b'T' && ts.ends_with('Z')
}
