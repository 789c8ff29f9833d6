//! Root end-to-end: every way a shared object gets into a process, seen in the kernel.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use detector_tests::{gcc, has, s, trigger, Daemon, Restore, TempDir};
use serde_json::Value;

fn lib_is(a: &Value, path: &Path) -> bool {
    s(a, "library.path") == path.to_str().unwrap()
}

fn reasons(a: &Value) -> Vec<String> {
    a["library"]["unsafe_reasons"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A copy of the hook library on tmpfs (/dev/shm), removed on drop.
struct ShmLib(PathBuf);

impl ShmLib {
    fn new(from: &Path, tag: &str) -> Self {
        let p = PathBuf::from(format!(
            "/dev/shm/detector-e2e-{tag}-{}.so",
            std::process::id()
        ));
        std::fs::copy(from, &p).expect("copy to /dev/shm");
        ShmLib(p)
    }
}

impl Drop for ShmLib {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn loader_run_directly_with_preload() {
    let dir = TempDir::new("ldso");
    let lib = gcc(&dir, "read_hook.c", "libldso.so", true);
    let d = Daemon::start();
    let loader = "/lib64/ld-linux-x86-64.so.2";
    assert!(trigger(
        Command::new(loader)
            .arg("--preload")
            .arg(&lib)
            .arg("/usr/bin/true")
    )
    .success());
    let a = d.expect_alert("ld.so --preload", |a| {
        lib_is(a, &lib) && has(a, "detections", "preload_argv")
    });
    assert_eq!(s(&a, "preload.source"), "argv");
    assert_eq!(s(&a, "preload.variable"), "--preload");
    assert_eq!(s(&a, "process.executable"), loader);
    d.stop();
}

#[test]
fn dlopen_from_dev_shm() {
    let dir = TempDir::new("shm");
    let lib = gcc(&dir, "read_hook.c", "libshm.so", true);
    let loadlib = gcc(&dir, "loadlib.c", "loadlib", false);
    let shm = ShmLib::new(&lib, "dlopen");
    let d = Daemon::start();
    assert!(trigger(Command::new(&loadlib).arg("path").arg(&shm.0)).success());
    let a = d.expect_alert("dlopen from /dev/shm", |a| lib_is(a, &shm.0));
    assert!(has(&a, "detections", "unsafe_library"));
    assert!(reasons(&a).contains(&"tmpfs".to_owned()), "{a}");
    assert_eq!(s(&a, "library.fs"), "tmpfs");
    assert_eq!(s(&a, "process.name"), "loadlib");
    d.stop();
}

#[test]
fn memfd_library_through_proc_self_fd() {
    let dir = TempDir::new("memfd");
    let lib = gcc(&dir, "read_hook.c", "libmemfd.so", true);
    let loadlib = gcc(&dir, "loadlib.c", "loadlib", false);
    let d = Daemon::start();
    let st = trigger(Command::new(&loadlib).arg("memfd").arg(&lib));
    assert!(st.success());
    let a = d.expect_alert("a memfd library", |a| {
        s(a, "library.path").starts_with("/memfd:payload") && s(a, "process.name") == "loadlib"
    });
    assert!(reasons(&a).contains(&"memfd".to_owned()), "{a}");
    assert_eq!(a["library"]["exists"], false);
    d.stop();
}

#[test]
fn library_deleted_before_it_was_mapped() {
    let dir = TempDir::new("deleted");
    let lib = gcc(&dir, "read_hook.c", "libgone.so", true);
    let loadlib = gcc(&dir, "loadlib.c", "loadlib", false);
    let d = Daemon::start();
    assert!(trigger(Command::new(&loadlib).arg("deleted").arg(&lib)).success());
    assert!(!lib.exists());
    let a = d.expect_alert("a deleted library", |a| lib_is(a, &lib));
    assert!(reasons(&a).contains(&"deleted".to_owned()), "{a}");
    assert!(a["library"]["inode"].as_u64().unwrap() > 0);
    d.stop();
}

/// Loaded from /dev/shm, then deleted at once: by the time user space looks the file is gone;
/// the alert still says what it was, from what the kernel saw at mapping time.
#[test]
fn library_deleted_after_it_was_loaded() {
    let dir = TempDir::new("unlinked");
    let lib = gcc(&dir, "read_hook.c", "libunlinked.so", true);
    let loadlib = gcc(&dir, "loadlib.c", "loadlib", false);
    let shm = ShmLib::new(&lib, "unlinked");
    let d = Daemon::start();
    assert!(trigger(Command::new(&loadlib).arg("unlink").arg(&shm.0)).success());
    assert!(!shm.0.exists());
    let a = d.expect_alert("a library deleted after loading", |a| lib_is(a, &shm.0));
    assert_eq!(s(&a, "library.fs"), "tmpfs");
    assert_eq!(a["library"]["uid"], 0);
    assert!(a["library"]["inode"].as_u64().unwrap() > 0);
    d.stop();
}

#[test]
fn process_that_exits_within_a_millisecond() {
    let dir = TempDir::new("quick");
    let lib = gcc(&dir, "read_hook.c", "libquick.so", true);
    let shm = ShmLib::new(&lib, "quick");
    let d = Daemon::start();
    // true with a preloaded library lives about a millisecond: everything must come from the
    // kernel, /proc is gone by the time user space looks.
    assert!(trigger(
        Command::new("/usr/bin/true")
            .arg("quick-marker")
            .env("LD_PRELOAD", &shm.0)
    )
    .success());
    let a = d.expect_alert("preload into a short-lived process", |a| {
        lib_is(a, &shm.0) && s(a, "process.command_line") == "/usr/bin/true quick-marker"
    });
    assert_eq!(s(&a, "process.executable"), "/usr/bin/true");
    assert_eq!(
        a["process"]["parent"]["pid"].as_u64(),
        Some(std::process::id() as u64)
    );
    assert!(has(&a, "detections", "preload_env") && has(&a, "detections", "unsafe_library"));
    d.stop();
}

#[test]
fn write_and_rename_onto_etc_ld_so_preload() {
    let _guard = Restore::path("/etc/ld.so.preload");
    let d = Daemon::start();
    // The content stays harmless (no library): the test watches the change, not its effect.
    let content = std::fs::read("/etc/ld.so.preload").unwrap_or_default();
    assert!(trigger(
        Command::new("sh")
            .arg("-c")
            .arg("cat /etc/ld.so.preload > /dev/null 2>&1; : >> /etc/ld.so.preload")
    )
    .success());
    let a = d.expect_alert("a write to /etc/ld.so.preload", |a| {
        s(a, "file.path") == "/etc/ld.so.preload"
            && s(a, "file.operation") == "open_write"
            && s(a, "process.name") == "sh"
    });
    assert!(has(&a, "detections", "loader_config_change"));
    assert_eq!(s(&a, "severity"), "high");
    let tmp = "/etc/ld.so.preload.detector-e2e";
    std::fs::write(tmp, &content).unwrap();
    assert!(trigger(Command::new("mv").arg(tmp).arg("/etc/ld.so.preload")).success());
    let a = d.expect_alert("a rename onto /etc/ld.so.preload", |a| {
        s(a, "file.operation") == "rename"
            && s(a, "process.name") == "mv"
            && s(a, "file.path") == "/etc/ld.so.preload"
    });
    assert_eq!(
        a["file"]["paths"],
        serde_json::json!([tmp, "/etc/ld.so.preload"])
    );
    d.stop();
}

fn tamper(mode: &str) -> (Daemon, u32, TempDir) {
    let dir = TempDir::new("tamper");
    let bin = gcc(&dir, "tamper.c", "tamper", false);
    let d = Daemon::start();
    let out = Command::new(&bin).arg(mode).output().expect("run tamper");
    assert!(
        out.status.success(),
        "tamper {mode} failed: {:?}",
        out.status
    );
    let child: u32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("child pid");
    (d, child, dir)
}

#[test]
fn ptrace_poketext_into_child() {
    let (d, child, _dir) = tamper("ptrace");
    let a = d.expect_alert("PTRACE_POKETEXT", |a| {
        a["target"]["pid"] == child
            && s(a, "target.operation") == "ptrace"
            && a["target"]["request"] == 4
    });
    assert!(has(&a, "detections", "memory_tamper"));
    assert!(has(&a, "threat.technique.id", "T1055.008"));
    assert_eq!(s(&a, "process.name"), "tamper");
    assert_eq!(s(&a, "target.name"), "tamper");
    d.stop();
}

#[test]
fn process_vm_writev_into_child() {
    let (d, child, _dir) = tamper("vmwrite");
    let a = d.expect_alert("process_vm_writev", |a| {
        a["target"]["pid"] == child && s(a, "target.operation") == "process_vm_writev"
    });
    assert!(has(&a, "threat.technique.id", "T1055.008"));
    d.stop();
}

#[test]
fn proc_pid_mem_write_into_child() {
    let (d, child, _dir) = tamper("procmem");
    let a = d.expect_alert("/proc/<pid>/mem write", |a| {
        a["target"]["pid"] == child && s(a, "target.operation") == "proc_mem"
    });
    assert!(has(&a, "threat.technique.id", "T1055.009"));
    d.stop();
}

/// Removes the test's files from /etc/pam.d, even when the test fails.
struct PamFilesGuard(&'static [&'static str]);

impl Drop for PamFilesGuard {
    fn drop(&mut self) {
        for f in self.0 {
            let _ = std::fs::remove_file(format!("/etc/pam.d/{f}"));
        }
    }
}

/// Relative names: the kernel resolves the cwd (/etc/pam.d) for the rename and the unlink.
#[test]
fn relative_rename_and_unlink_in_etc_pam_d() {
    let _guard = PamFilesGuard(&["zz-detector-e2e", "zz-detector-e2e2"]);
    let d = Daemon::start();
    let script = "cd /etc/pam.d && : > zz-detector-e2e && mv zz-detector-e2e zz-detector-e2e2 && rm zz-detector-e2e2";
    assert!(trigger(Command::new("sh").arg("-c").arg(script)).success());
    let a = d.expect_alert("a relative rename in /etc/pam.d", |a| {
        s(a, "file.operation") == "rename" && s(a, "process.name") == "mv"
    });
    assert_eq!(
        a["file"]["paths"],
        serde_json::json!(["/etc/pam.d/zz-detector-e2e", "/etc/pam.d/zz-detector-e2e2"])
    );
    assert!(has(&a, "detections", "pam_config_change"));
    assert!(has(&a, "threat.technique.id", "T1556.003"));
    d.expect_alert("a relative unlink in /etc/pam.d", |a| {
        s(a, "file.operation") == "unlink" && s(a, "file.path") == "/etc/pam.d/zz-detector-e2e2"
    });
    d.stop();
}
