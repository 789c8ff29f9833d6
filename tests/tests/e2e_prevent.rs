//! Root end-to-end: prevent mode's kill path (`bpf_send_signal(SIGKILL)` from the mapping
//! tracepoint; `stop = "kill"`, which every kernel has) and, where BPF LSM runs, its deny path
//! (the mapping refused with EPERM). Each hook is a gcc-built object whose constructor writes a marker
//! file: a stopped process never ran a byte of it. Audit mode stops nothing and says what it
//! would have stopped; SIGHUP back to `detect` is the kill switch; the allowlist is honoured;
//! ordinary activity and a package upgrade are never stopped. Every change to /etc, /usr and
//! /tmp is put back even on failure.
use std::{
    os::unix::process::ExitStatusExt as _,
    path::{Path, PathBuf},
    process::{Command, ExitStatus},
    time::Duration,
};

use detector_tests::{
    apt_reinstall, gcc, has, rewrite_string, s, system_loader, trigger, write_program, Daemon,
    Restore, TempDir, INTERP,
};
use serde_json::Value;

/// A file placed directly in /tmp (a directory every user can write), removed on drop.
struct InTmp(PathBuf);

impl InTmp {
    fn copy(from: &Path, tag: &str) -> InTmp {
        let p = PathBuf::from(format!(
            "/tmp/detector-prevent-{}-{tag}.so",
            std::process::id()
        ));
        std::fs::copy(from, &p).expect("copy into /tmp");
        InTmp(p)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for InTmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The hook (marker_hook.c) compiled in `dir`.
fn hook(dir: &TempDir) -> PathBuf {
    gcc(dir, "marker_hook.c", "marker_hook.so", true)
}

/// A daemon with `[prevent] mode = MODE` and `extra` lines (`stop = "kill"` unless they say
/// otherwise), its configuration in `dir`.
fn daemon(dir: &TempDir, mode: &str, extra: &str) -> (Daemon, PathBuf) {
    let cfg = dir.path("detector.toml");
    std::fs::write(&cfg, config(mode, extra)).unwrap();
    let d = Daemon::start_with(&["--config", cfg.to_str().unwrap()]);
    (d, cfg)
}

fn config(mode: &str, extra: &str) -> String {
    let stop = if extra.contains("stop =") {
        ""
    } else {
        "stop = \"kill\"\n"
    };
    format!(
        "[thresholds]\naggregate_window_secs = 0\n\n[prevent]\nmode = \"{mode}\"\n{stop}{extra}"
    )
}

fn killed(st: ExitStatus) -> bool {
    st.signal() == Some(libc::SIGKILL)
}

/// `ssh -V` with `lib` preloaded and the marker asked for at `marker`.
fn ssh_with(lib: &str, marker: &Path) -> ExitStatus {
    trigger(
        Command::new("ssh")
            .arg("-V")
            .env("LD_PRELOAD", lib)
            .env("DETECTOR_MARKER", marker),
    )
}

fn denied(a: &Value) -> bool {
    has(a, "detections", "prevented")
}

/// Asserts a `denied` alert for `process` and `lib`, stopped by a kill; returns it.
fn expect_killed(d: &Daemon, process: &str, lib: &str) -> Value {
    let a = d.expect_alert(&format!("{process} stopped mapping {lib}"), |a| {
        denied(a) && s(a, "process.name") == process && s(a, "library.path") == lib
    });
    assert!(has(&a, "event.type", "denied"), "{a}");
    assert_eq!(s(&a, "event.action"), "kill", "{a}");
    assert_eq!(s(&a, "prevention.outcome"), "prevented", "{a}");
    assert_eq!(s(&a, "prevention.mode"), "prevent", "{a}");
    assert!(s(&a, "prevention.what").contains(lib), "{a}");
    assert!(
        !a["prevention"]["reasons"].as_array().unwrap().is_empty(),
        "a prevention says why: {a}"
    );
    assert!(has(&a, "detections", "credential_process"), "{a}");
    a
}

#[test]
fn a_hook_from_tmp_preloaded_into_ssh_is_killed_before_its_constructor_runs() {
    let dir = TempDir::new("prevent-ssh");
    let lib = InTmp::copy(&hook(&dir), "ssh");
    let marker = dir.path("marker");
    let (d, _) = daemon(&dir, "prevent", "");
    let st = ssh_with(lib.path(), &marker);
    assert!(killed(st), "ssh was not killed: {st}");
    assert!(!marker.exists(), "the hook's constructor ran in ssh");
    let a = expect_killed(&d, "ssh", lib.path());
    // /tmp is the directory: every user can write it (the VM guest's may be 0755 on ramfs,
    // whose files are then stopped for their filesystem).
    use std::os::unix::fs::MetadataExt as _;
    if std::fs::metadata("/tmp").unwrap().mode() & 0o022 != 0 {
        assert!(
            has(&a, "prevention.reasons", "directory_writable_by_non_root"),
            "{a}"
        );
    }
    d.stop();
}

#[test]
fn su_with_a_pam_module_from_tmp_is_killed_before_the_module_runs() {
    let dir = TempDir::new("prevent-pam");
    let module = InTmp::copy(&hook(&dir), "pam");
    let marker = dir.path("marker");
    let original = std::fs::read("/etc/pam.d/su").expect("/etc/pam.d/su");
    let _guard = Restore::path("/etc/pam.d/su");
    let mut edited = format!("auth optional {}\n", module.path()).into_bytes();
    edited.extend_from_slice(&original);
    let (d, _) = daemon(&dir, "prevent", "");
    std::fs::write("/etc/pam.d/su", &edited).unwrap();
    let st = trigger(
        Command::new("su")
            .args(["-s", "/bin/true", "nobody"])
            .env("DETECTOR_MARKER", &marker),
    );
    assert!(killed(st), "su was not killed: {st}");
    assert!(!marker.exists(), "the PAM module's constructor ran in su");
    expect_killed(&d, "su", module.path());
    d.stop();
}

#[test]
fn a_memfd_library_dlopened_into_a_catalogue_named_process_is_killed() {
    let dir = TempDir::new("prevent-memfd");
    let lib = hook(&dir);
    // loadlib under a name of the catalogue.
    let program = gcc(&dir, "loadlib.c", "ssh-add", false);
    let marker = dir.path("marker");
    let (d, _) = daemon(&dir, "prevent", "");
    let st = trigger(
        Command::new(&program)
            .args(["memfd", lib.to_str().unwrap()])
            .env("DETECTOR_MARKER", &marker),
    );
    assert!(killed(st), "ssh-add was not killed: {st}");
    assert!(!marker.exists(), "the memfd library's constructor ran");
    let a = d.expect_alert("ssh-add stopped mapping a memfd", |a| {
        denied(a) && s(a, "process.name") == "ssh-add"
    });
    assert_eq!(s(&a, "event.action"), "kill", "{a}");
    assert!(has(&a, "prevention.reasons", "memfd"), "{a}");
    // The same program under a name outside the catalogue is not stopped.
    let other = dir.path("loader-other");
    std::fs::copy(&program, &other).unwrap();
    let st = trigger(
        Command::new(&other)
            .args(["memfd", lib.to_str().unwrap()])
            .env("DETECTOR_MARKER", &marker),
    );
    assert!(
        st.success(),
        "a process outside the catalogue was stopped: {st}"
    );
    assert!(marker.exists());
    d.stop();
}

#[test]
fn a_credential_program_whose_interpreter_is_from_tmp_is_killed_at_exec() {
    let dir = TempDir::new("prevent-interp");
    // As long as INTERP, which the copy's PT_INTERP is rewritten to name.
    let interp = PathBuf::from("/tmp/detector-e2e-prevnt.so");
    let _gone = InTmp(interp.clone());
    write_program(
        &interp,
        &std::fs::read(system_loader()).expect("the loader"),
    );
    let program = dir.path("ssh");
    let ssh = std::fs::read("/usr/bin/ssh").expect("/usr/bin/ssh");
    write_program(
        &program,
        &rewrite_string(&ssh, INTERP, interp.to_str().unwrap()),
    );
    let (d, _) = daemon(&dir, "prevent", "");
    let st = trigger(Command::new(&program).arg("-V"));
    assert!(
        killed(st),
        "ssh with a loader from /tmp was not killed: {st}"
    );
    let a = expect_killed(&d, "ssh", interp.to_str().unwrap());
    assert!(s(&a, "prevention.what").contains("ELF interpreter"), "{a}");
    d.stop();
    // The switch: not stopped without it.
    let (d, _) = daemon(&dir, "prevent", "interpreter = false\n");
    let st = trigger(Command::new(&program).arg("-V"));
    assert!(st.success(), "stopped with interpreter = false: {st}");
    d.stop();
}

#[test]
fn audit_mode_stops_nothing_and_says_what_it_would_have_stopped() {
    let dir = TempDir::new("prevent-audit");
    let lib = InTmp::copy(&hook(&dir), "audit");
    let marker = dir.path("marker");
    let (d, _) = daemon(&dir, "audit", "");
    let st = ssh_with(lib.path(), &marker);
    assert!(st.success(), "audit mode stopped ssh: {st}");
    assert!(marker.exists(), "the hook did not run in audit mode");
    let a = d.expect_alert("what audit mode would have stopped", |a| {
        denied(a) && s(a, "process.name") == "ssh" && s(a, "library.path") == lib.path()
    });
    assert_eq!(s(&a, "prevention.outcome"), "would_prevent", "{a}");
    assert_eq!(s(&a, "prevention.mode"), "audit", "{a}");
    assert_eq!(s(&a, "event.action"), "would_kill", "{a}");
    assert!(!has(&a, "event.type", "denied"), "{a}");
    d.stop();
}

fn wait_for(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..400 {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{what}: not within 10 s");
}

#[test]
fn sighup_back_to_detect_is_the_kill_switch() {
    let dir = TempDir::new("prevent-hup");
    let lib = InTmp::copy(&hook(&dir), "hup");
    let marker = dir.path("marker");
    let (d, cfg) = daemon(&dir, "prevent", "");
    assert!(killed(ssh_with(lib.path(), &marker)));
    expect_killed(&d, "ssh", lib.path());
    std::fs::write(&cfg, config("detect", "")).unwrap();
    unsafe { libc::kill(d.pid() as i32, libc::SIGHUP) };
    wait_for("the reload", || {
        d.stderr().contains("configuration reloaded")
    });
    let st = ssh_with(lib.path(), &marker);
    assert!(
        st.success(),
        "ssh stopped after the switch back to detect: {st}"
    );
    assert!(marker.exists());
    // Still detected.
    d.expect_alert("the preload, detected", |a| {
        !denied(a) && s(a, "process.name") == "ssh" && s(a, "library.path") == lib.path()
    });
    assert_eq!(
        d.alerts_matching(denied).len(),
        1,
        "{:#?}",
        d.alerts_matching(denied)
    );
    d.stop();
}

#[test]
fn an_allowlisted_library_is_not_stopped() {
    let dir = TempDir::new("prevent-allow");
    let lib = InTmp::copy(&hook(&dir), "allow");
    let marker = dir.path("marker");
    let out = Command::new("sha256sum").arg(lib.path()).output().unwrap();
    let sha = String::from_utf8(out.stdout).unwrap();
    let sha = sha.split_whitespace().next().unwrap().to_owned();
    let allow = format!(
        "\n[[allow.library]]\npath = \"{}\"\nsha256 = \"{sha}\"\nreason = \"test\"\n",
        lib.path()
    );
    let (d, _) = daemon(&dir, "prevent", &allow);
    let st = ssh_with(lib.path(), &marker);
    assert!(st.success(), "an allowlisted library was stopped: {st}");
    assert!(marker.exists());
    // A library the entry does not name (another content at another path) still is.
    let other = InTmp::copy(&hook(&dir), "not-allowed");
    assert!(killed(ssh_with(other.path(), &dir.path("marker2"))));
    expect_killed(&d, "ssh", other.path());
    assert!(d
        .alerts_matching(|a| denied(a) && s(a, "library.path") == lib.path())
        .is_empty());
    d.stop();
}

#[test]
fn an_unpackaged_library_found_unverified_is_stopped_at_its_next_mapping() {
    let dir = TempDir::new("prevent-unverified");
    let target = Path::new("/usr/local/lib/libdetector-prevent-e2e.so");
    let _guard = Restore::path(target);
    std::fs::copy(hook(&dir), target).unwrap();
    let program = gcc(&dir, "loadlib.c", "ssh-add", false);
    let marker = dir.path("marker");
    let (d, _) = daemon(&dir, "prevent", "");
    let run = |marker: &Path| {
        trigger(
            Command::new(&program)
                .args(["path", target.to_str().unwrap()])
                .env("DETECTOR_MARKER", marker),
        )
    };
    // Root-owned, in a root-only directory: nothing the kernel can tell. The package database
    // does not list it: an alert, and the file version is listed for prevention.
    let st = run(&marker);
    assert!(
        st.success(),
        "stopped before the package database answered: {st}"
    );
    let a = d.expect_alert("the unpackaged library in ssh-add", |a| {
        has(a, "detections", "unverified_object") && s(a, "process.name") == "ssh-add"
    });
    assert!(has(&a, "library.unsafe_reasons", "not_from_package"), "{a}");
    let marker2 = dir.path("marker2");
    let mut st = run(&marker2);
    // The listing follows the alert on the policy thread: allow it a moment.
    for _ in 0..20 {
        if killed(st) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        let _ = std::fs::remove_file(&marker2);
        st = run(&marker2);
    }
    assert!(killed(st), "the listed library was not stopped: {st}");
    assert!(!marker2.exists());
    let a = expect_killed(&d, "ssh-add", target.to_str().unwrap());
    assert!(
        has(&a, "prevention.reasons", "not_vouched_by_package_database"),
        "{a}"
    );
    d.stop();
}

#[test]
fn ordinary_activity_is_never_stopped() {
    let dir = TempDir::new("prevent-benign");
    let (d, _) = daemon(&dir, "prevent", "");
    assert!(trigger(Command::new("ssh").arg("-V")).success());
    assert!(trigger(Command::new("su").args(["-s", "/bin/true", "nobody"])).success());
    let libm = std::fs::canonicalize("/lib/x86_64-linux-gnu/libm.so.6").expect("libm");
    assert!(trigger(Command::new("ssh").arg("-V").env("LD_PRELOAD", &libm)).success());
    // The ordinary activity of the detection's benign test, and more of the catalogue's
    // programs (some exit non-zero here, none may be killed).
    assert!(trigger(Command::new("ls").arg("/")).success());
    assert!(trigger(Command::new("git").arg("--version")).success());
    assert!(
        trigger(Command::new("python3").args(["-c", "import json, ssl, sqlite3, hashlib"]))
            .success()
    );
    let key = dir.path("key");
    assert!(trigger(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
    )
    .success());
    for (program, args) in [
        ("passwd", &["-S", "root"][..]),
        ("ssh-add", &["-l"][..]),
        ("chage", &["-l", "root"][..]),
        ("sudo", &["-n", "true"][..]),
        ("login", &["-h"][..]),
    ] {
        if let Ok(st) = Command::new(program)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
        {
            assert!(!killed(st), "{program} was killed");
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        d.alerts_matching(denied).is_empty(),
        "{:#?}",
        d.alerts_matching(denied)
    );
    d.stop();
}

#[test]
fn a_package_upgrade_with_prevention_on_is_never_stopped() {
    let dir = TempDir::new("prevent-apt");
    let (d, _) = daemon(&dir, "prevent", "");
    apt_reinstall(&["libpam-modules", "openssh-client"]);
    // What the upgrade installed runs.
    assert!(trigger(Command::new("ssh").arg("-V")).success());
    assert!(trigger(Command::new("su").args(["-s", "/bin/true", "nobody"])).success());
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        d.alerts_matching(denied).is_empty(),
        "{:#?}",
        d.alerts_matching(denied)
    );
    d.stop();
}

/// `detector check --json`, and whether it found BPF LSM available.
fn check() -> (Value, bool) {
    detector_tests::require_root();
    let out = Command::new(detector_tests::detector_bin())
        .args(["check", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let lsm = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "lsm")
        .expect("an lsm check")
        .clone();
    let available = lsm["available"] == true;
    (r, available)
}

#[test]
fn check_reports_the_stop_path() {
    let (r, lsm) = check();
    assert_eq!(r["stop_path"], if lsm { "deny" } else { "kill" }, "{r:#}");
    assert!(s(&r, "stop_reason").contains("bpf_send_signal"), "{r:#}");
}

#[test]
fn with_bpf_lsm_a_preloaded_ssh_runs_without_the_hook() {
    let (r, lsm) = check();
    if !lsm {
        let why = r["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "lsm")
            .map(|c| c["detail"].to_string())
            .unwrap_or_default();
        eprintln!("skipped: BPF LSM does not run on this kernel ({why}): no deny path to test");
        return;
    }
    let dir = TempDir::new("prevent-deny");
    let lib = InTmp::copy(&hook(&dir), "deny");
    let marker = dir.path("marker");
    let (d, _) = daemon(&dir, "prevent", "stop = \"auto\"\n");
    assert!(d.stderr().contains("BPF LSM"), "{}", d.stderr());
    let out = Command::new("ssh")
        .arg("-V")
        .env("LD_PRELOAD", lib.path())
        .env("DETECTOR_MARKER", &marker)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "ssh did not run: {}: {stderr}",
        out.status
    );
    assert!(stderr.contains("cannot be preloaded"), "{stderr}");
    assert!(
        stderr.contains("OpenSSH"),
        "ssh -V ran without the hook: {stderr}"
    );
    assert!(!marker.exists(), "the hook's constructor ran in ssh");
    let a = d.expect_alert("ssh's mapping of the hook denied", |a| {
        denied(a) && s(a, "process.name") == "ssh" && s(a, "library.path") == lib.path()
    });
    assert!(has(&a, "event.type", "denied"), "{a}");
    assert_eq!(s(&a, "event.action"), "deny", "{a}");
    assert_eq!(s(&a, "prevention.outcome"), "prevented", "{a}");
    d.stop();
}

/// A package manager is known by the file it runs, never by its name: a process that names
/// itself `dpkg` (prctl) and then runs the preloaded ssh is no package manager, and its ssh is
/// stopped.
#[test]
fn a_parent_calling_itself_dpkg_does_not_exempt_its_ssh() {
    let dir = TempDir::new("prevent-fake-dpkg");
    let lib = InTmp::copy(&hook(&dir), "fake-dpkg");
    let marker = dir.path("marker");
    let (d, _) = daemon(&dir, "prevent", "");
    // The parent keeps the name `dpkg`; its child ssh is SIGKILLed (-9) when stopped.
    let script = "import ctypes, os, subprocess, sys\n\
                  ctypes.CDLL(None).prctl(15, b'dpkg', 0, 0, 0)\n\
                  assert open('/proc/self/comm').read().strip() == 'dpkg'\n\
                  env = dict(os.environ, LD_PRELOAD=sys.argv[1], DETECTOR_MARKER=sys.argv[2])\n\
                  r = subprocess.run(['ssh', '-V'], env=env, stderr=subprocess.DEVNULL)\n\
                  sys.exit(r.returncode == -9 and 3 or 4)\n";
    let st = trigger(
        Command::new("python3")
            .args(["-c", script, lib.path()])
            .arg(&marker),
    );
    assert!(!marker.exists(), "the hook's constructor ran in ssh");
    assert_eq!(st.code(), Some(3), "ssh was not killed: {st}");
    expect_killed(&d, "ssh", lib.path());
    d.stop();
}
