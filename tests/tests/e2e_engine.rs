//! Root end-to-end: correlation, severity, inheritance, aggregation, configuration, reload,
//! readiness and stats, with the real daemon and real triggers.
use std::{
    os::unix::net::UnixDatagram,
    path::Path,
    process::{Command, Output},
    time::Duration,
};

use detector_tests::{
    detector_bin, gcc, has, require_root, s, severity_rank, trigger, trigger_pid, Daemon, Restore,
    TempDir,
};
use serde_json::Value;

fn write(dir: &TempDir, name: &str, text: &str) -> String {
    let p = dir.path(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn preload_into_ssh_is_high_and_names_the_hook() {
    let dir = TempDir::new("ssh");
    let lib = gcc(&dir, "read_hook.c", "libsshhook.so", true);
    let d = Daemon::start();
    trigger(Command::new("ssh").arg("-V").env("LD_PRELOAD", &lib));
    let a = d.expect_alert("a preload into ssh", |a| {
        s(a, "process.name") == "ssh" && s(a, "library.path") == lib.to_str().unwrap()
    });
    assert!(severity_rank(&a) >= 3, "{a}");
    assert_eq!(s(&a, "rule.name"), "credential_api_hooking");
    for d in ["preload_env", "credential_process", "credential_hooks"] {
        assert!(has(&a, "detections", d), "{d} missing: {a}");
    }
    assert!(
        has(&a, "threat.technique.id", "T1056.004") && has(&a, "threat.technique.id", "T1574.006")
    );
    assert_eq!(a["library"]["hooks"], serde_json::json!(["read"]));
    assert_eq!(s(&a, "library.hash.sha256").len(), 64);
    assert_eq!(
        a["event"]["risk_score"].as_u64().unwrap() as usize,
        a["detections"].as_array().unwrap().len()
    );
    d.stop();
}

#[test]
fn su_loading_a_pam_module_from_tmp_is_high() {
    let dir = TempDir::new("pam");
    let module = gcc(&dir, "pam_evil.c", "pam_evil.so", true);
    let original = std::fs::read("/etc/pam.d/su").expect("/etc/pam.d/su");
    let _guard = Restore::path("/etc/pam.d/su");
    let mut edited = format!("auth optional {}\n", module.display()).into_bytes();
    edited.extend_from_slice(&original);
    let d = Daemon::start();
    std::fs::write("/etc/pam.d/su", &edited).unwrap();
    trigger(Command::new("su").args(["-s", "/bin/true", "nobody"]));
    let a = d.expect_alert("su mapping a PAM module from /tmp", |a| {
        s(a, "process.name") == "su" && s(a, "library.path") == module.to_str().unwrap()
    });
    assert!(severity_rank(&a) >= 3, "{a}");
    assert!(has(&a, "detections", "unsafe_library") && has(&a, "detections", "credential_process"));
    assert!(
        a["library"]["hooks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h == "pam_sm_authenticate"),
        "{a}"
    );
    // The edit itself is a PAM configuration change.
    d.expect_alert("the /etc/pam.d/su edit", |a| {
        s(a, "file.path") == "/etc/pam.d/su"
    });
    d.stop();
}

#[test]
fn ordinary_activity_raises_nothing_of_medium_or_above() {
    let d = Daemon::start();
    let system_lib = [
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
        "/lib/x86_64-linux-gnu/libm.so.6",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("libm");
    trigger(Command::new("ls").arg("/"));
    trigger(Command::new("git").arg("--version"));
    trigger(Command::new("python3").args(["-c", "import json, ssl, sqlite3, hashlib"]));
    trigger(Command::new("su").args(["-s", "/bin/true", "nobody"]));
    trigger(Command::new("ls").arg("/").env("LD_PRELOAD", system_lib));
    // The root-owned system library preload is seen, as low.
    let low = d.expect_alert("LD_PRELOAD of a system library", |a| {
        s(a, "library.path") == system_lib
    });
    assert_eq!(s(&low, "severity"), "low");
    std::thread::sleep(Duration::from_millis(500));
    let loud = d.alerts_matching(|a| a.get("rule").is_some() && severity_rank(a) >= 2);
    assert!(loud.is_empty(), "ordinary activity raised: {loud:#?}");
    d.stop();
}

#[test]
fn preload_inherited_from_a_shell_names_the_ancestor() {
    let dir = TempDir::new("inherit");
    let lib = gcc(&dir, "read_hook.c", "libinherit.so", true);
    let d = Daemon::start();
    let mut shell = Command::new("/bin/sh")
        .args(["-c", "ssh -V 2>/dev/null; true"])
        .env("LD_PRELOAD", &lib)
        .spawn()
        .unwrap();
    let shell_pid = shell.id();
    shell.wait().unwrap();
    let a = d.expect_alert("ssh with a preload inherited from sh", |a| {
        s(a, "process.name") == "ssh" && s(a, "library.path") == lib.to_str().unwrap()
    });
    assert_eq!(a["preload"]["inherited_from"]["pid"], shell_pid, "{a}");
    assert_eq!(s(&a, "preload.inherited_from.executable"), "/bin/sh");
    d.stop();
}

#[test]
fn repeats_are_aggregated() {
    let dir = TempDir::new("aggregate");
    let lib = gcc(&dir, "read_hook.c", "librepeat.so", true);
    let cfg = write(
        &dir,
        "detector.toml",
        "[thresholds]\naggregate_window_secs = 2\n",
    );
    let d = Daemon::start_with(&["--config", &cfg]);
    for _ in 0..5 {
        trigger(Command::new("/usr/bin/true").env("LD_PRELOAD", &lib));
    }
    let is_it = |a: &Value| {
        s(a, "library.path") == lib.to_str().unwrap()
            && s(a, "process.executable") == "/usr/bin/true"
    };
    let summary = d.expect_alert("a summary with count 5", |a| is_it(a) && a["count"] == 5);
    assert!(s(&summary, "event.start") <= s(&summary, "event.end"));
    assert_eq!(
        d.alerts_matching(|a| is_it(a) && a["count"] == 1).len(),
        1,
        "repeats were re-emitted"
    );
    d.stop();
}

fn run_with_config(cfg: &str) -> Output {
    Command::new(detector_bin())
        .args(["run", "--config", cfg])
        .output()
        .unwrap()
}

#[test]
fn bad_config_is_one_line_with_file_and_line() {
    let dir = TempDir::new("badcfg");
    let cfg = write(
        &dir,
        "bad.toml",
        "[catalogue]\nextra = [\"vault\"]\n\n[thresholds]\nmin_severity = \"loud\"\n",
    );
    let out = run_with_config(&cfg);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("detector: error:"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains(&format!("{cfg}:5")), "{line}");
    assert_eq!(
        err.lines()
            .filter(|l| l.starts_with("detector: error:"))
            .count(),
        1
    );
    let out = run_with_config(&dir.path("missing.toml").display().to_string());
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn sighup_reloads_and_keeps_the_old_config_when_the_new_one_is_bad() {
    let dir = TempDir::new("reload");
    let lib = gcc(&dir, "read_hook.c", "libreload.so", true);
    let cfg = write(
        &dir,
        "detector.toml",
        "[thresholds]\naggregate_window_secs = 0\n",
    );
    let d = Daemon::start_with(&["--config", &cfg]);
    let hup = || unsafe { libc::kill(d.pid() as i32, libc::SIGHUP) };
    write(&dir, "detector.toml", "[thresholds]\naggregate_window_secs = 0\n\n[[allow.process]]\nexe = \"/usr/bin/true\"\nreason = \"test\"\n");
    hup();
    wait_for(|| d.stderr().contains("configuration reloaded"));
    trigger(
        Command::new("/usr/bin/true")
            .arg("allowed-marker")
            .env("LD_PRELOAD", &lib),
    );
    trigger(
        Command::new("/usr/bin/cat")
            .arg("/dev/null")
            .env("LD_PRELOAD", &lib),
    );
    d.expect_alert("cat, not allowlisted", |a| s(a, "process.name") == "cat");
    assert!(d
        .alerts_matching(|a| s(a, "process.command_line").contains("allowed-marker"))
        .is_empty());
    write(&dir, "detector.toml", "[thresholds\n");
    hup();
    wait_for(|| d.stderr().contains("keeping the running configuration"));
    trigger(
        Command::new("/usr/bin/true")
            .arg("still-allowed")
            .env("LD_PRELOAD", &lib),
    );
    trigger(
        Command::new("/usr/bin/ls")
            .arg("/dev/null")
            .env("LD_PRELOAD", &lib),
    );
    d.expect_alert("ls after a bad reload", |a| s(a, "process.name") == "ls");
    assert!(d
        .alerts_matching(|a| s(a, "process.command_line").contains("still-allowed"))
        .is_empty());
    d.stop();
}

fn wait_for(cond: impl Fn() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("condition not met within 5 s");
}

#[test]
fn tells_systemd_it_is_ready_and_writes_stats() {
    require_root();
    let dir = TempDir::new("notify");
    let sock_path = dir.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let cfg = write(
        &dir,
        "detector.toml",
        "[thresholds]\nstats_interval_secs = 1\n",
    );
    let d = Daemon::start_env(
        &["--config", &cfg],
        &[("NOTIFY_SOCKET", sock_path.as_os_str())],
    );
    let mut buf = [0u8; 64];
    let n = sock.recv(&mut buf).expect("READY=1 from the daemon");
    assert_eq!(&buf[..n], b"READY=1");
    let stats = d.expect_alert("a stats record", |a| s(a, "record") == "stats");
    assert!(
        stats["events"]["exec"].is_u64() && stats["lost"]["exec"].is_u64(),
        "{stats}"
    );
    // Every kind and channel named from the one table, no retired kind; every queue's drops
    // and every channel's failed kernel reads reported.
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&stats["events"]),
        [
            "exec",
            "exit",
            "file_change",
            "loader_env",
            "mem_read",
            "mem_tamper",
            "mmap",
            "preload_list",
            "signal"
        ],
        "{stats}"
    );
    let channels = [
        "exec",
        "file_change",
        "lifecycle",
        "mem_read",
        "mem_tamper",
        "mmap",
        "preload_list",
        "signal",
    ];
    assert_eq!(keys(&stats["lost"]), channels, "{stats}");
    assert_eq!(keys(&stats["read_errors"]), channels, "{stats}");
    assert_eq!(
        keys(&stats["dropped"]),
        ["enrichment", "findings", "outputs"],
        "{stats}"
    );
    assert!(stats["enrichment"]["late"].is_u64(), "{stats}");
    d.stop();
}

/// Atomic Red Team T1574.006 test #1: a library named in /etc/ld.so.preload, then a program
/// run (here ssh, a credential program). The list is removed as soon as ssh has run, before
/// the daemon can have looked at it: ssh is judged by what its loader read, from the kernel.
#[test]
fn atomic_t1574_006_1_etc_ld_so_preload() {
    let dir = TempDir::new("preloadfile");
    let lib = gcc(&dir, "read_hook.c", "libpreloadfile.so", true);
    let lib = lib.to_str().unwrap().to_owned();
    let d = Daemon::start();
    let guard = Restore::path("/etc/ld.so.preload");
    std::fs::write("/etc/ld.so.preload", format!("{lib}\n")).unwrap();
    let ssh = trigger_pid(Command::new("ssh").arg("-V"));
    drop(guard);
    let a = d.expect_alert("ssh loading a library from /etc/ld.so.preload", |a| {
        a["process"]["pid"] == ssh && s(a, "library.path") == lib
    });
    for det in [
        "preload_file",
        "credential_process",
        "credential_hooks",
        "unsafe_library",
    ] {
        assert!(has(&a, "detections", det), "{det} missing: {a}");
    }
    assert_eq!(s(&a, "severity"), "critical");
    assert_eq!(s(&a, "preload.source"), "file");
    assert_eq!(s(&a, "preload.variable"), "/etc/ld.so.preload");
    assert_eq!(
        s(&a, "preload.value"),
        lib,
        "the list as ssh's loader read it: {a}"
    );
    assert_eq!(a["preload"]["list"]["captured"], true, "{a}");
    d.expect_alert("the write to /etc/ld.so.preload", |a| {
        s(a, "file.path") == "/etc/ld.so.preload" && has(a, "detections", "loader_config_change")
    });
    d.stop();
}

/// The list written, `ssh -V` run, the list removed within milliseconds, all while the daemon
/// is stopped (as busy as it gets: it reads no event and looks at no file until the list is
/// gone): ssh is still blamed, with the list as its loader read it.
#[test]
fn a_list_gone_before_the_daemon_looks_still_blames_the_process_that_loaded_it() {
    let dir = TempDir::new("preloadrace");
    let lib = gcc(&dir, "read_hook.c", "libpreloadrace.so", true);
    let lib = lib.to_str().unwrap().to_owned();
    let d = Daemon::start_with(&["--ring-buffer-kib", "65536"]);
    let ssh = {
        let _frozen = d.freeze();
        let _list = Restore::path("/etc/ld.so.preload");
        std::fs::write("/etc/ld.so.preload", format!("# test\n{lib}\n")).unwrap();
        trigger_pid(Command::new("ssh").arg("-V"))
        // The list is removed here, then the daemon continues.
    };
    let a = d.expect_alert("ssh, whose loader read a list removed since", |a| {
        a["process"]["pid"] == ssh && s(a, "library.path") == lib
    });
    assert!(severity_rank(&a) >= 3, "{a}");
    assert_eq!(s(&a, "process.name"), "ssh");
    assert!(has(&a, "detections", "preload_file"), "{a}");
    assert_eq!(s(&a, "preload.value"), lib, "{a}");
    d.stop();
}

/// A root-owned library in /usr/local/lib: a file only root controls, whose mapping the kernel
/// reports once ever (the seen-cache). Named in the list, it is reported for every process
/// whose loader read the list: ssh run twice, the daemon stopped throughout, both blamed.
#[test]
fn a_root_owned_library_from_the_list_is_blamed_on_every_process_that_loaded_it() {
    let dir = TempDir::new("preloadseen");
    let built = gcc(&dir, "read_hook.c", "libseen.so", true);
    let lib = format!(
        "/usr/local/lib/libdetector-e2e-seen-{}.so",
        std::process::id()
    );
    let _installed = Restore::path(&lib);
    std::fs::copy(&built, &lib).unwrap();
    std::fs::set_permissions(&lib, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cfg = write(
        &dir,
        "detector.toml",
        "[thresholds]\naggregate_window_secs = 0\n",
    );
    let d = Daemon::start_with(&["--config", &cfg, "--ring-buffer-kib", "65536"]);
    let (first, second) = {
        let _frozen = d.freeze();
        let _list = Restore::path("/etc/ld.so.preload");
        std::fs::write("/etc/ld.so.preload", format!("{lib}\n")).unwrap();
        (
            trigger_pid(Command::new("ssh").arg("-V")),
            trigger_pid(Command::new("ssh").arg("-V")),
        )
    };
    for (run, pid) in [("first", first), ("second", second)] {
        let a = d.expect_alert(&format!("the {run} ssh loading {lib}"), |a| {
            a["process"]["pid"] == pid && s(a, "library.path") == lib
        });
        assert!(severity_rank(&a) >= 3, "{a}");
        assert!(has(&a, "detections", "preload_file"), "{a}");
        assert_eq!(a["library"]["uid"], 0, "{a}");
    }
    d.stop();
}

/// Benign twins: ssh run with no list gets no preload_file finding; nor does an ssh that ran
/// with no list and exited before a list was written, though the list is still there when the
/// daemon handles its events.
#[test]
fn no_list_no_blame_and_a_list_written_after_the_exit_does_not_blame() {
    let dir = TempDir::new("preloadlate");
    let lib = gcc(&dir, "plain_ext.c", "liblate.so", true);
    let lib = lib.to_str().unwrap().to_owned();
    let d = Daemon::start();
    let plain = trigger_pid(Command::new("ssh").arg("-V"));
    let guard = {
        let _frozen = d.freeze();
        let late = trigger_pid(Command::new("ssh").arg("-V"));
        let guard = Restore::path("/etc/ld.so.preload");
        std::fs::write("/etc/ld.so.preload", format!("{lib}\n")).unwrap();
        (late, guard)
        // The daemon continues with the list in place.
    };
    let (late, guard) = guard;
    // The write comes after ssh's events: once it is alerted on, ssh's exec and exit were
    // handled with the list in place.
    d.expect_alert("the write to /etc/ld.so.preload", |a| {
        s(a, "file.path") == "/etc/ld.so.preload" && has(a, "detections", "loader_config_change")
    });
    drop(guard);
    std::thread::sleep(Duration::from_millis(500));
    let blamed = d.alerts_matching(|a| {
        has(a, "detections", "preload_file")
            && (a["process"]["pid"] == plain || a["process"]["pid"] == late)
    });
    assert!(
        blamed.is_empty(),
        "blamed for a list its loader never read: {blamed:#?}"
    );
    d.stop();
}

/// `[capture] syscalls = false` (the low-overhead mode): exec-time preloads are still caught,
/// the daemon says what it does not capture, and a dlopen from /dev/shm is not seen.
#[test]
fn without_syscall_channels_exec_preloads_are_still_caught() {
    let dir = TempDir::new("lite");
    let lib = gcc(&dir, "read_hook.c", "liblite.so", true);
    let loadlib = gcc(&dir, "loadlib.c", "loadlib", false);
    let cfg = write(&dir, "detector.toml", "[capture]\nsyscalls = false\n");
    let d = Daemon::start_with(&["--config", &cfg]);
    assert!(
        d.stderr().contains("syscall channels off"),
        "{}",
        d.stderr()
    );
    trigger(Command::new("ssh").arg("-V").env("LD_PRELOAD", &lib));
    let a = d.expect_alert("ssh preload without syscall channels", |a| {
        s(a, "process.name") == "ssh" && s(a, "library.path") == lib.to_str().unwrap()
    });
    assert_eq!(s(&a, "severity"), "critical");
    let shm = std::path::PathBuf::from(format!("/dev/shm/detector-lite-{}.so", std::process::id()));
    std::fs::copy(&lib, &shm).unwrap();
    let st = trigger(Command::new(&loadlib).arg("path").arg(&shm));
    let _ = std::fs::remove_file(&shm);
    assert!(st.success());
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        d.alerts_matching(|a| s(a, "library.path") == shm.to_str().unwrap())
            .is_empty(),
        "a mapping was captured with the syscall channels off"
    );
    d.stop();
}

/// A service user's Python loading a native extension from its own virtualenv, and a runtime
/// unpacking its native library to /tmp and loading it (as the JVM does): an application's own
/// library, seen and low. Its benign twin that never had a name (the same library from a memfd)
/// stays medium.
#[test]
fn applications_own_libraries_are_low_and_a_memfd_twin_stays_medium() {
    let dir = TempDir::new("apps");
    // The virtualenv belongs to the service user, as `python -m venv` run by it would make it.
    let venv = dir.path("venv/lib/python3.11/site-packages");
    std::fs::create_dir_all(&venv).unwrap();
    let ext = gcc(
        &dir,
        "plain_ext.c",
        "venv/lib/python3.11/site-packages/_speedups.so",
        true,
    );
    let chown = Command::new("chown")
        .args(["-R", "nobody:nogroup"])
        .arg(dir.path("venv"))
        .status()
        .unwrap();
    assert!(chown.success());
    std::fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let unpacked = gcc(&dir, "plain_ext.c", "libnative-4417.so", true);
    let loadlib = gcc(&dir, "loadlib.c", "loadlib", false);
    let d = Daemon::start();
    let python = format!(
        "import ctypes; assert ctypes.CDLL({:?}).ext_answer() == 42",
        ext
    );
    let st = trigger(
        Command::new("su")
            .args(["-s", "/bin/sh", "nobody", "-c"])
            .arg(format!("/usr/bin/python3 -c '{python}'")),
    );
    assert!(
        st.success(),
        "python as nobody could not load its extension"
    );
    assert!(trigger(Command::new(&loadlib).arg("path").arg(&unpacked)).success());
    assert!(trigger(Command::new(&loadlib).arg("memfd").arg(&unpacked)).success());
    let venv_alert = d.expect_alert("the virtualenv's extension", |a| {
        s(a, "library.path") == ext.to_str().unwrap()
    });
    assert_eq!(s(&venv_alert, "severity"), "low", "{venv_alert:#}");
    assert_eq!(venv_alert["process"]["user"]["id"], 65534, "{venv_alert:#}");
    let unpacked_alert = d.expect_alert("the unpacked native library", |a| {
        s(a, "library.path") == unpacked.to_str().unwrap() && s(a, "process.name") == "loadlib"
    });
    assert_eq!(s(&unpacked_alert, "severity"), "low", "{unpacked_alert:#}");
    let memfd = d.expect_alert("the same library from a memfd", |a| {
        s(a, "process.name") == "loadlib" && s(a, "library.path").starts_with("/memfd:")
    });
    assert_eq!(s(&memfd, "severity"), "medium", "{memfd:#}");
    assert!(has(&memfd, "library.unsafe_reasons", "memfd"), "{memfd:#}");
    d.stop();
}
