//! Root end-to-end: attacks on the sensor itself (`sensor_tamper`, critical), from the kernel's
//! facts: ptrace attach, process_vm_writev and a `/proc/<pid>/mem` write aimed at the daemon, a
//! file renamed over its configuration and over its binary (a copy run from a temporary
//! directory), SIGSTOP and SIGTSTP sent to it (by pid, through a pidfd, to another of its
//! threads), and signals it outlives. The benign twins: the configuration read, and SIGHUP from
//! root (the reload, by pid or through a pidfd), raise no `sensor_tamper`.
use std::{
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use detector_tests::{detector_bin, gcc, has, s, scaled, Daemon, TempDir};
use serde_json::Value;

fn sensor_tamper(a: &Value) -> bool {
    has(a, "detections", "sensor_tamper")
}

/// Asserts what every alert about an attack on the sensor says.
fn assert_critical(a: &Value, daemon: u32) {
    assert_eq!(s(a, "severity"), "critical", "{a}");
    assert_eq!(s(a, "rule.name"), "sensor_tampering", "{a}");
    assert!(has(a, "threat.technique.id", "T1562.001"), "{a}");
    assert_eq!(a["sensor"]["pid"], daemon, "{a}");
}

/// Runs `sensor_attack MODE PID` to completion; returns its pid.
fn attack(bin: &Path, mode: &str, pid: u32) -> u32 {
    let child = Command::new(bin)
        .args([mode, &pid.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run sensor_attack");
    let me = child.id();
    let out = child.wait_with_output().expect("wait for sensor_attack");
    assert!(out.status.success(), "sensor_attack {mode}: {}", out.status);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "done\n");
    me
}

fn memory_attack(mode: &str, reason: &str) {
    let dir = TempDir::new("sensor-mem");
    let bin = gcc(&dir, "sensor_attack.c", "sensor_attack", false);
    let d = Daemon::start();
    let me = attack(&bin, mode, d.pid());
    let a = d.expect_alert(&format!("{mode} aimed at the daemon"), |a| {
        sensor_tamper(a) && a["process"]["pid"] == me
    });
    assert_critical(&a, d.pid());
    assert_eq!(s(&a, "sensor.reason"), reason, "{a}");
    assert_eq!(a["target"]["pid"], d.pid(), "{a}");
    assert!(has(&a, "detections", "memory_tamper"), "{a}");
    d.stop();
}

#[test]
fn ptrace_attach_to_the_daemon_is_critical() {
    memory_attack("ptrace", "ptrace PTRACE_ATTACH aimed at the detector");
}

#[test]
fn process_vm_writev_into_the_daemon_is_critical() {
    memory_attack("vmwrite", "process_vm_writev into the detector's memory");
}

#[test]
fn a_write_to_the_daemons_proc_mem_is_critical() {
    memory_attack(
        "procmem",
        "the detector's /proc/<pid>/mem opened for writing",
    );
}

/// The benign twins first (the configuration read, SIGHUP from root: the reload), then a file
/// renamed over the configuration: that alone is `sensor_tamper`.
#[test]
fn a_rename_over_its_configuration_is_critical_and_reading_or_reloading_it_is_not() {
    let dir = TempDir::new("sensor-config");
    let cfg = dir.path("detector.toml");
    std::fs::write(&cfg, "[thresholds]\naggregate_window_secs = 0\n").unwrap();
    let cfg = cfg.display().to_string();
    let d = Daemon::start_with(&["--config", &cfg]);
    // Read it, then reload it as root.
    let st = Command::new("cat")
        .arg(&cfg)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let st = Command::new("sh")
        .args(["-c", &format!("kill -HUP {}", d.pid())])
        .status()
        .unwrap();
    assert!(st.success());
    let deadline = Instant::now() + scaled(Duration::from_secs(10));
    while !d.stderr().contains("configuration reloaded") {
        assert!(
            Instant::now() < deadline,
            "no reload after SIGHUP:\n{}",
            d.stderr()
        );
        thread::sleep(Duration::from_millis(20));
    }
    // The attack: a new configuration written beside it and renamed over it.
    let new = dir.path("detector.toml.new");
    std::fs::write(&new, "[thresholds]\nmin_severity = \"critical\"\n").unwrap();
    std::fs::rename(&new, &cfg).unwrap();
    let a = d.expect_alert("the rename over the configuration", |a| {
        sensor_tamper(a) && s(a, "file.path") == cfg
    });
    assert_critical(&a, d.pid());
    assert_eq!(s(&a, "file.operation"), "rename", "{a}");
    assert_eq!(
        s(&a, "sensor.reason"),
        "the detector's configuration file renamed over or away",
        "{a}"
    );
    // Nothing else about the sensor: not the read, not the reload.
    thread::sleep(Duration::from_millis(500));
    let all = d.alerts_matching(sensor_tamper);
    assert_eq!(all.len(), 1, "{all:#?}");
    d.stop();
}

/// A copy of the binary run from a temporary directory; a new file renamed over it (`install`,
/// `cp` to a temporary name then `mv`: a running binary cannot be opened for writing).
#[test]
fn a_rename_over_its_binary_is_critical() {
    let dir = TempDir::new("sensor-bin");
    let bin = dir.path("detector");
    std::fs::copy(detector_bin(), &bin).unwrap();
    let d = Daemon::start_program(&bin, &[]);
    // Writing the running binary in place is refused by the kernel (ETXTBSY).
    let err = std::fs::OpenOptions::new()
        .write(true)
        .open(&bin)
        .expect_err("a running binary opened for writing");
    assert_eq!(err.raw_os_error(), Some(libc::ETXTBSY), "{err}");
    let new = dir.path("detector.new");
    std::fs::write(&new, b"#!/bin/sh\nexit 0\n").unwrap();
    std::fs::rename(&new, &bin).unwrap();
    let path = bin.display().to_string();
    let a = d.expect_alert("the rename over the binary", |a| {
        sensor_tamper(a) && s(a, "file.path") == path
    });
    assert_critical(&a, d.pid());
    assert_eq!(
        s(&a, "sensor.reason"),
        "the detector's binary renamed over or away",
        "{a}"
    );
    d.stop();
}

/// Continues the daemon (SIGCONT) when dropped, even when the test panics.
struct Continue(u32);

impl Drop for Continue {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0 as i32, libc::SIGCONT) };
    }
}

fn stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|st| {
        st.rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('T'))
    })
}

/// The critical alert for SIG`sig` sent to the daemon by `sender` with `kill`.
fn expect_signal_alert(d: &Daemon, sig: &str, sender: u32) -> Value {
    expect_signal_alert_by(d, sig, sender, "kill")
}

/// The critical alert for SIG`sig` sent to the daemon by `sender` with `syscall`.
fn expect_signal_alert_by(d: &Daemon, sig: &str, sender: u32, syscall: &str) -> Value {
    let a = d.expect_alert(&format!("SIG{sig} sent to the daemon"), |a| {
        sensor_tamper(a) && a["process"]["pid"] == sender
    });
    assert_critical(&a, d.pid());
    assert_eq!(
        s(&a, "sensor.reason"),
        format!("SIG{sig} sent to the detector ({syscall})"),
        "{a}"
    );
    a
}

/// Runs `program -c script` to completion and asserts it succeeded; returns its pid (the
/// sender of the signals it sends).
fn run(program: &str, script: &str) -> u32 {
    let mut child = Command::new(program)
        .args(["-c", script])
        .spawn()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    let pid = child.id();
    assert!(
        child.wait().unwrap().success(),
        "{program} -c {script:?} failed"
    );
    pid
}

/// Signals that name the daemon another way than its pid: SIGSTOP through a pidfd
/// (`pidfd_send_signal`), SIGUSR2 to the id of one of its other threads. Both critical, naming
/// the call. The twin: SIGHUP through a pidfd from root is the reload, not an attack.
#[test]
fn signals_through_a_pidfd_or_to_a_thread_are_critical() {
    let d = Daemon::start();
    let pid = d.pid();
    let pidfd = |sig: &str| {
        run(
            "python3",
            &format!(
                "import os, signal; signal.pidfd_send_signal(os.pidfd_open({pid}), signal.{sig})"
            ),
        )
    };
    let reload = pidfd("SIGHUP");
    let cont = Continue(pid);
    let stopper = pidfd("SIGSTOP");
    let deadline = Instant::now() + scaled(Duration::from_secs(5));
    while !stopped(pid) {
        assert!(Instant::now() < deadline, "SIGSTOP did not stop the daemon");
        thread::sleep(Duration::from_millis(5));
    }
    drop(cont);
    expect_signal_alert_by(&d, "STOP", stopper, "pidfd_send_signal");
    assert!(
        d.alerts_matching(|a| sensor_tamper(a) && a["process"]["pid"] == reload)
            .is_empty(),
        "the reload through a pidfd was alerted"
    );
    let thread = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|&tid| tid != pid)
        .expect("the daemon has threads besides its main one");
    let sender = run("sh", &format!("kill -USR2 {thread}"));
    expect_signal_alert(&d, "USR2", sender);
    d.stop();
}

/// SIGSTOP, then SIGTSTP, sent by a shell's `kill`: the daemon stops, reads nothing, and the
/// alert comes once it is continued (SIGCONT), from the record the kernel queued at the kill.
#[test]
fn sigstop_and_sigtstp_are_critical_once_the_daemon_continues() {
    let d = Daemon::start();
    let pid = d.pid();
    for sig in ["STOP", "TSTP"] {
        let cont = Continue(pid);
        let sender = run("sh", &format!("kill -{sig} {pid}"));
        // SIGSTOP always stops it. SIGTSTP does not stop a process whose process group is
        // orphaned (the kernel discards it then, as for a shell's background job that outlived
        // its shell): where the test runs decides, and the alert is due either way.
        let deadline = Instant::now() + scaled(Duration::from_secs(5));
        while sig == "STOP" && !stopped(pid) {
            assert!(
                Instant::now() < deadline,
                "SIG{sig} did not stop the daemon"
            );
            thread::sleep(Duration::from_millis(5));
        }
        // Stopped a while; the record waits in the ring buffer.
        thread::sleep(Duration::from_millis(300));
        drop(cont);
        let a = expect_signal_alert(&d, sig, sender);
        assert_eq!(s(&a, "process.name"), "sh", "{a}");
    }
    d.stop();
}

/// Signals whose default action would end the daemon and that it has no use for (SIGUSR1,
/// SIGQUIT, SIGABRT, a real-time signal): it outlives them and says who sent them, critical.
#[test]
fn stray_fatal_signals_are_outlived_and_critical() {
    let d = Daemon::start();
    let pid = d.pid();
    for sig in ["USR1", "QUIT", "ABRT", "RTMIN+8"] {
        let sender = run("sh", &format!("kill -{sig} {pid}"));
        expect_signal_alert(&d, sig, sender);
        // SAFETY: signal 0 only checks that the process exists.
        assert_eq!(
            unsafe { libc::kill(pid as i32, 0) },
            0,
            "SIG{sig} ended the daemon"
        );
    }
    d.stop();
}
