//! Bad input and missing prerequisites: one clear line on stderr, exit code 2, no panic.
use std::process::{Command, Output};

use detector_tests::{detector_bin, require_root, TempDir};

fn one_error_line(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "panic: {err}"
    );
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("detector: error:"))
        .collect();
    assert_eq!(lines.len(), 1, "expected one error line, got:\n{err}");
    lines[0].to_owned()
}

#[test]
fn not_root_is_one_line_and_exit_2() {
    require_root();
    // setpriv drops to nobody: uid 0 → 65534 clears every capability.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(detector_bin())
        .arg("run")
        .output()
        .expect("setpriv");
    assert_eq!(out.status.code(), Some(2));
    let line = one_error_line(&out);
    assert!(line.contains("run as root"), "{line}");
    assert!(out.stdout.is_empty());
}

#[test]
fn unwritable_ready_file_is_one_line_and_exit_2() {
    require_root();
    let dir = TempDir::new("ready");
    let out = Command::new(detector_bin())
        .args(["run", "--ready-file"])
        .arg(dir.path("no/such/dir/ready"))
        .output()
        .expect("run detector");
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("ready file"));
}

#[test]
fn bad_flag_exits_2() {
    let out = Command::new(detector_bin())
        .args(["run", "--no-such-flag"])
        .output()
        .expect("run detector");
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(detector_bin())
        .args(["run", "--loss-interval", "0"])
        .output()
        .expect("run detector");
    assert_eq!(out.status.code(), Some(2));
}

/// `detector analyze … | head -c 1`: the reader goes away after one byte; the writer stops
/// without an error line and exits 0.
#[test]
fn a_closed_pipe_on_stdout_ends_quietly() {
    use std::{io::Read as _, process::Stdio};
    let libc = [
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/lib/x86_64-linux-gnu/libc.so.6",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .expect("libc.so.6");
    // Far more lines than a pipe holds.
    let mut child = Command::new(detector_bin())
        .args(["--log-level", "error", "analyze", "--json"])
        .args(std::iter::repeat_n(libc, 300))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("detector analyze");
    let mut first = [0u8; 1];
    child
        .stdout
        .take()
        .expect("stdout")
        .read_exact(&mut first)
        .expect("one byte");
    // The pipe's only reader is closed here.
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.is_empty(), "stderr: {err}");
    assert_eq!(out.status.code(), Some(0));
}

/// Root's `detector scan` never says "run as root"; what it could not read is named.
#[test]
fn scan_as_root_does_not_ask_for_root() {
    require_root();
    let out = Command::new(detector_bin())
        .args(["--log-level", "error", "scan", "--json"])
        .output()
        .expect("detector scan");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code().is_some_and(|c| c < 2), "{err}");
    let summary = err.lines().last().unwrap_or_default();
    assert!(summary.starts_with("detector: scanned "), "{err}");
    assert!(!summary.contains("run as root"), "{summary}");
    // As nobody the same scan says why it missed processes.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(detector_bin())
        .args(["--log-level", "error", "scan", "--json"])
        .output()
        .expect("setpriv");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("permission denied; run as root to read them all"),
        "{err}"
    );
}

/// Under systemd, with stderr the journal's stream (`JOURNAL_STREAM` names its device and
/// inode), lines carry sd-daemon priorities; elsewhere they do not.
#[test]
fn log_lines_carry_journal_priorities_only_on_the_journal_stream() {
    use std::os::unix::fs::MetadataExt as _;
    let dir = TempDir::new("journal");
    let run = |journal: bool| {
        let path = dir.path(if journal { "journal" } else { "plain" });
        let err = std::fs::File::create(&path).unwrap();
        let meta = err.metadata().unwrap();
        let mut cmd = Command::new(detector_bin());
        cmd.args([
            "--log-level",
            "info",
            "scan",
            "--config",
            "/nonexistent/detector.toml",
        ])
        .stderr(err);
        // A stream that is not stderr's (the plain run) must not turn the prefixes on.
        let ino = if journal { meta.ino() } else { meta.ino() + 1 };
        cmd.env("JOURNAL_STREAM", format!("{}:{ino}", meta.dev()));
        let status = cmd.status().unwrap();
        assert_eq!(status.code(), Some(2));
        std::fs::read_to_string(&path).unwrap()
    };
    let journal = run(true);
    assert!(
        journal
            .lines()
            .any(|l| l.starts_with("<3>detector: error: ")),
        "{journal}"
    );
    let plain = run(false);
    assert!(
        plain.lines().any(|l| l.starts_with("detector: error: ")),
        "{plain}"
    );
}
