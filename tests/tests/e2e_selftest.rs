//! Root end-to-end: `detector selftest` for real — the libraries it carries, the atomic tests,
//! the detector it starts — and nothing left behind.
use std::{
    path::Path,
    process::{Command, Output},
};

use detector_tests::{detector_bin, require_root, TempDir};

/// The tests `detector selftest` runs, as its table names them.
const CASES: [&str; 7] = [
    "test3_read_hook_cat",
    "atomic_t1574.006_2_ls",
    "preload_ssh_v",
    "ldso_preload",
    "ld_audit_true",
    "pam_module_su",
    "memfd_dlopen",
];

/// `detector selftest ARGS` with its temporary directory under `tmp`.
fn selftest(tmp: &Path, args: &[&str]) -> Output {
    Command::new(detector_bin())
        .arg("selftest")
        .args(args)
        .env("TMPDIR", tmp)
        .output()
        .expect("run detector selftest")
}

/// The table row of `case`, split on whitespace.
fn row<'a>(stdout: &'a str, case: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(case))
        .unwrap_or_else(|| panic!("no row for {case} in:\n{stdout}"))
        .split_whitespace()
        .collect()
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let cmdline = std::fs::read(e.ok()?.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains(needle).then_some(cmdline)
        })
        .collect()
}

/// What `/etc/ld.so.preload` is: its bytes, or None when absent.
fn ld_so_preload() -> Option<Vec<u8>> {
    std::fs::read("/etc/ld.so.preload").ok()
}

#[test]
fn selftest_passes_against_its_own_detector_and_leaves_nothing() {
    require_root();
    let tmp = TempDir::new("selftest");
    let preload_before = ld_so_preload();
    let out = selftest(&tmp.0, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "selftest failed:\n{stdout}\nstderr:\n{stderr}"
    );
    let header: Vec<&str> = stdout.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["test", "expected", "got", "ok"], "{stdout}");
    for case in CASES {
        let r = row(&stdout, case);
        assert_eq!(r.last(), Some(&"ok"), "{case}:\n{stdout}");
    }
    // The ssh row got a critical alert for ssh.
    let ssh = row(&stdout, "preload_ssh_v").join(" ");
    assert!(ssh.contains("credential_api_hooking critical"), "{ssh}");
    assert!(
        stdout.contains("7/7 tests alerted as expected, against a detector started for the test"),
        "{stdout}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Nothing left: its directory, the detector it started, /etc/ld.so.preload as it was.
    let left: Vec<_> = std::fs::read_dir(&tmp.0).unwrap().collect();
    assert!(
        left.is_empty(),
        "left behind in {}: {left:?}",
        tmp.0.display()
    );
    let running = processes_mentioning(&tmp.0.to_string_lossy());
    assert!(running.is_empty(), "still running: {running:?}");
    assert_eq!(
        ld_so_preload(),
        preload_before,
        "/etc/ld.so.preload changed"
    );
}

/// Against a "service" whose output file nothing writes: every test fails, exit 1, and the
/// table says no alert came.
#[test]
fn selftest_without_alerts_fails_every_test_and_exits_1() {
    require_root();
    let tmp = TempDir::new("selftest-silent");
    let conf = tmp.path("service.toml");
    let alerts = tmp.path("alerts.jsonl");
    std::fs::write(
        &conf,
        format!(
            "[output]\nstdout = false\nfile = \"{}\"\n",
            alerts.display()
        ),
    )
    .unwrap();
    let work = TempDir::new("selftest-silent-work");
    let out = selftest(
        &work.0,
        &[
            "--against-service",
            "--config",
            conf.to_str().unwrap(),
            "--unit",
            "detector-e2e-selftest-absent",
            "--timeout",
            "2",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if Path::new("/run/systemd/system").is_dir() {
        // Under systemd the unit must be active: one line, exit 2.
        assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
        assert!(stderr.contains("is not active"), "{stderr}");
        return;
    }
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    for case in CASES {
        let r = row(&stdout, case).join(" ");
        assert!(r.ends_with("FAIL") && r.contains("no alert for pid"), "{r}");
    }
    assert!(stdout.contains("0/7 tests alerted as expected"), "{stdout}");
    let left: Vec<_> = std::fs::read_dir(&work.0).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn selftest_not_root_is_one_line_and_exit_2() {
    require_root();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(detector_bin())
        .arg("selftest")
        .output()
        .expect("setpriv");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("detector: error: selftest must run as root"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}
