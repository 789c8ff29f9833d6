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
