//! The hunting CLI, for real: `scan` finds what is loaded in running processes, `analyze` names
//! a hook library's interposed APIs, `check` proves the capture path, `run --format text` is
//! readable; exit codes as documented.
use std::{
    path::Path,
    process::{Command, Output, Stdio},
};

use detector_tests::{
    detector_bin, gcc, has, require_root, s, trigger, Daemon, Holder, Restore, TempDir,
};
use serde_json::Value;

fn detector(args: &[&str]) -> Output {
    Command::new(detector_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run detector")
}

fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn scan_finds_a_preload_started_before_it_with_its_pid() {
    require_root();
    let dir = TempDir::new("scan-preload");
    let hook = gcc(&dir, "read_hook.c", "libscanhook.so", true);
    let loadlib = gcc(&dir, "loadlib.c", "loadlib", false);
    let held = Holder::start(&loadlib, "path", Path::new("libm.so.6"), Some(&hook));
    let out = detector(&["scan", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let found = json_lines(&out);
    let a = found
        .iter()
        .find(|a| {
            a["process"]["pid"] == held.0.id() && s(a, "library.path") == hook.to_str().unwrap()
        })
        .unwrap_or_else(|| panic!("pid {} not found in {found:#?}", held.0.id()));
    assert!(has(a, "detections", "preload_env") && has(a, "detections", "credential_hooks"));
    assert_eq!(s(a, "event.dataset"), "detector.sweep");
    assert_eq!(s(a, "preload.variable"), "LD_PRELOAD");
    assert!(stderr(&out).contains("findings"), "{}", stderr(&out));
}

#[test]
fn scan_finds_a_memfd_library() {
    require_root();
    let dir = TempDir::new("scan-memfd");
    let payload = gcc(&dir, "read_hook.c", "libscanmemfd.so", true);
    let loadlib = gcc(&dir, "loadlib.c", "loadlib", false);
    let held = Holder::start(&loadlib, "memfd", &payload, None);
    let pid = held.0.id().to_string();
    let out = detector(&["scan", "--json", "--pid", &pid]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let found = json_lines(&out);
    let a = found
        .iter()
        .find(|a| s(a, "library.path").starts_with("/memfd:payload"))
        .unwrap_or_else(|| panic!("no memfd finding in {found:#?}"));
    assert_eq!(a["process"]["pid"], held.0.id());
    assert!(has(a, "library.unsafe_reasons", "memfd"));
    assert_eq!(a["library"]["hooks"], serde_json::json!(["read"]));
}

#[test]
fn scan_exit_codes() {
    require_root();
    // A clean process and the stock configuration: nothing found, exit 0.
    let mut clean = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = clean.id().to_string();
    let out = detector(&["scan", "--json", "--pid", &pid]);
    let _ = clean.kill();
    let _ = clean.wait();
    assert_eq!(
        out.status.code(),
        Some(0),
        "a clean process on a clean host should scan clean:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    assert!(out.stdout.is_empty());
    // Errors: exit 2 with one line.
    for args in [
        &["scan", "--config", "/nonexistent/detector.toml"][..],
        &["scan", "--pid", "4000000000"][..],
    ] {
        let out = detector(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("detector: error:"), "{err}");
    }
}

#[test]
fn scan_verifies_a_running_credential_process_and_the_configured_modules_on_a_clean_system() {
    require_root();
    let dir = TempDir::new("scan-clean");
    let socket = dir.path("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&socket)
        .stdout(Stdio::null())
        .spawn()
        .expect("ssh-agent");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = detector(&["scan", "--json"]);
    let pid = agent.id();
    let _ = agent.kill();
    let _ = agent.wait();
    let found = json_lines(&out);
    // Other tests on this machine may leave findings of their own: only these matter here.
    let unverified: Vec<&Value> = found
        .iter()
        .filter(|a| has(a, "detections", "unverified_object") || a["process"]["pid"] == pid)
        .collect();
    assert!(
        unverified.is_empty(),
        "a clean system's objects were not vouched for: {unverified:#?}\n{}",
        stderr(&out)
    );
}

#[test]
fn scan_finds_a_replaced_pam_module_by_the_configuration_that_names_it() {
    require_root();
    let dir = TempDir::new("scan-plague");
    let module = gcc(&dir, "pam_evil.c", "pam_evil.so", true);
    let pam_unix = Path::new("/usr/lib/x86_64-linux-gnu/security/pam_unix.so");
    let out = {
        let _guard = Restore::path(pam_unix);
        let side = pam_unix.with_file_name("pam_unix.so.detector-scan");
        std::fs::copy(&module, &side).unwrap();
        std::fs::rename(&side, pam_unix).unwrap();
        detector(&["scan", "--json"])
    };
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let found = json_lines(&out);
    let a = found
        .iter()
        .find(|a| s(a, "library.path") == pam_unix.to_str().unwrap())
        .unwrap_or_else(|| panic!("pam_unix.so not found in {found:#?}"));
    assert!(has(a, "detections", "unverified_object"), "{a:#}");
    assert!(
        has(a, "library.unsafe_reasons", "modified_since_package"),
        "{a:#}"
    );
    assert!(
        s(a, "library.package").starts_with("libpam-modules"),
        "{a:#}"
    );
    assert!(s(a, "config.path").starts_with("/etc/pam.d/"), "{a:#}");
    assert!(matches!(s(a, "severity"), "high" | "critical"), "{a:#}");
}

#[test]
fn scan_without_root_scans_what_it_can_and_says_what_it_could_not() {
    require_root();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(detector_bin())
        .args(["scan", "--json"])
        .output()
        .expect("setpriv");
    let err = stderr(&out);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{err}");
    assert!(
        err.contains("could not be read (pid ") && err.contains("run as root to read them all"),
        "{err}"
    );
}

#[test]
fn analyze_names_the_read_hook() {
    let dir = TempDir::new("analyze");
    let hook = gcc(&dir, "read_hook.c", "libanalyze.so", true);
    let out = detector(&["analyze", "--json", hook.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let r = &json_lines(&out)[0];
    assert_eq!(r["hooks"], serde_json::json!(["read"]));
    assert_eq!(s(r, "hash.sha256").len(), 64);
    assert_eq!(r["constructors"], false);
    let dpkg = Path::new("/var/lib/dpkg/info").is_dir();
    if dpkg {
        // Built here, so no package installed it.
        assert_eq!(r["package"], Value::Null, "{r}");
        assert_eq!(r["verified"], false, "{r}");
        assert_eq!(
            r["provenance_reasons"],
            serde_json::json!(["not_from_package"])
        );
    }
    // A library that provides its own APIs is not a hook: exit 0.
    let libm = [
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
        "/lib/x86_64-linux-gnu/libm.so.6",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("libm");
    let out = detector(&["analyze", "--json", libm]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    if dpkg {
        // libc6's file, its bytes as packaged.
        let r = &json_lines(&out)[0];
        assert!(s(r, "package").starts_with("libc6"), "{r}");
        assert_eq!(r["verified"], true, "{r}");
        assert!(r.get("provenance_reasons").is_none(), "{r}");
    }
    // Not an ELF file, missing file: one line each, exit 2.
    let out = detector(&["analyze", "/etc/hostname", "/nonexistent.so"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 2, "{err}");
    assert!(err.contains("/etc/hostname: not an ELF file"), "{err}");
}

#[test]
fn check_proves_the_capture_path() {
    require_root();
    let out = detector(&["check", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["capture_path"], "tracepoints", "{r:#}");
    let names: Vec<&str> = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for n in [
        "btf",
        "ring_buffer",
        "tracepoints",
        "tp_btf",
        "lsm",
        "fentry",
    ] {
        assert!(names.contains(&n), "{n} missing: {r:#}");
    }
    assert!(
        s(&r, "reason").contains("programs loaded, attached and detached"),
        "{r:#}"
    );
}

#[test]
fn run_format_text_is_readable() {
    let dir = TempDir::new("text");
    let lib = gcc(&dir, "read_hook.c", "libtext.so", true);
    let d = Daemon::start_with(&["--format", "text"]);
    trigger(Command::new("ssh").arg("-V").env("LD_PRELOAD", &lib));
    let line = d.expect_line("a text line for the ssh preload", |l| {
        l.contains("ssh[") && l.contains(lib.to_str().unwrap())
    });
    for part in [
        "CRITICAL",
        "credential_api_hooking",
        "hooks read",
        "preload_env",
    ] {
        assert!(line.contains(part), "{part} missing: {line}");
    }
    // Not a terminal: no colour codes.
    assert!(!line.contains('\x1b'), "{line:?}");
    d.stop();
}

#[test]
fn completions_and_man_page() {
    let out = detector(&["completions", "bash"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("scan") && text.contains("analyze") && text.contains("--format"));
    let out = detector(&["man"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(".ie") || text.contains(".TH detector"),
        "{text}"
    );
}
