//! Package provenance in the live pipeline, for real: objects that no package vouches for,
//! loaded into credential processes the way Ebury (a trojaned libkeyutils) and Plague (a
//! replaced pam_unix.so) do it, and through a new loader search directory; and their benign
//! twins. Every change to /usr and /etc is put back by a `Restore` guard, even on failure.
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use detector_tests::{gcc, has, s, severity_rank, trigger, Daemon, Restore, TempDir};
use serde_json::Value;

const LIBDIR: &str = "/usr/lib/x86_64-linux-gnu";

fn run(argv: &[&str]) {
    let st = Command::new(argv[0]).args(&argv[1..]).status().unwrap();
    assert!(st.success(), "{argv:?} failed: {st}");
}

/// The real file the libkeyutils.so.1 link leads to.
fn libkeyutils() -> PathBuf {
    std::fs::canonicalize(Path::new(LIBDIR).join("libkeyutils.so.1")).expect("libkeyutils.so.1")
}

/// ssh loads libkeyutils (through Kerberos on Debian 12): the tests' premise.
fn ssh_loads(lib: &str) -> bool {
    let out = Command::new("ldd").arg("/usr/bin/ssh").output().unwrap();
    String::from_utf8_lossy(&out.stdout).contains(lib)
}

/// A gcc-built library that does nothing, at `path`.
fn harmless_library(dir: &TempDir, path: &Path) {
    let built = gcc(dir, "plain_ext.c", "libharmless.so", true);
    std::fs::copy(&built, path).unwrap();
}

fn unverified_in(a: &Value, process: &str, path: &Path) -> bool {
    s(a, "process.name") == process
        && s(a, "library.path") == path.to_str().unwrap()
        && has(a, "detections", "unverified_object")
}

/// Ebury's trojan, ready: a copy of the real libkeyutils beside it with a harmless library added
/// as a DT_NEEDED; `repoint` makes the `libkeyutils.so.1` link lead to it. The link, the copy
/// and the helper are restored on drop.
struct Ebury {
    trojan: PathBuf,
    link: PathBuf,
    tag: &'static str,
    _guards: [Restore; 3],
    _dir: TempDir,
}

impl Ebury {
    fn prepare(tag: &'static str) -> Ebury {
        assert!(
            ssh_loads("libkeyutils.so.1"),
            "ssh does not load libkeyutils"
        );
        let dir = TempDir::new(tag);
        let real = libkeyutils();
        let trojan = real.with_file_name(format!("libkeyutils.so.1.detector-{tag}"));
        let helper = Path::new(LIBDIR).join(format!("libdetector-{tag}-helper.so"));
        let link = Path::new(LIBDIR).join("libkeyutils.so.1");
        let guards = [
            Restore::path(&link),
            Restore::path(&trojan),
            Restore::path(&helper),
        ];
        harmless_library(&dir, &helper);
        std::fs::copy(&real, &trojan).unwrap();
        run(&[
            "patchelf",
            "--add-needed",
            helper.to_str().unwrap(),
            trojan.to_str().unwrap(),
        ]);
        Ebury {
            trojan,
            link,
            tag,
            _guards: guards,
            _dir: dir,
        }
    }

    /// The link renamed over by a new one leading to the trojan, the way a rootkit installs it.
    fn repoint(&self) {
        let side = self
            .link
            .with_file_name(format!("libkeyutils.so.1.detector-{}-link", self.tag));
        std::os::unix::fs::symlink(self.trojan.file_name().unwrap(), &side).unwrap();
        std::fs::rename(&side, &self.link).unwrap();
    }
}

#[test]
fn ebury_a_trojaned_libkeyutils_in_ssh_is_high_and_not_from_package() {
    let ebury = Ebury::prepare("ebury");
    let trojan = ebury.trojan.clone();
    let d = Daemon::start();
    ebury.repoint();
    trigger(Command::new("ssh").arg("-V"));
    let a = d.expect_alert("the trojaned libkeyutils in ssh", |a| {
        unverified_in(a, "ssh", &trojan)
    });
    assert!(severity_rank(&a) >= 3, "{a:#}");
    assert_eq!(a["library"]["verified"], false, "{a:#}");
    assert!(
        has(&a, "library.unsafe_reasons", "not_from_package"),
        "{a:#}"
    );
    assert!(has(&a, "detections", "credential_process"), "{a:#}");
    d.stop();
}

#[test]
fn plague_a_replaced_pam_unix_in_su_is_modified_since_package() {
    let dir = TempDir::new("plague");
    let module = gcc(&dir, "pam_evil.c", "pam_evil.so", true);
    let pam_unix = Path::new(LIBDIR).join("security/pam_unix.so");
    let d = Daemon::start();
    let _guard = Restore::path(&pam_unix);
    // A sibling renamed over it: processes that have the real module mapped keep their pages.
    let side = pam_unix.with_file_name("pam_unix.so.detector-plague");
    std::fs::copy(&module, &side).unwrap();
    std::fs::rename(&side, &pam_unix).unwrap();
    trigger(Command::new("su").args(["-s", "/bin/true", "nobody"]));
    let a = d.expect_alert("the replaced pam_unix.so in su", |a| {
        unverified_in(a, "su", &pam_unix)
    });
    assert!(severity_rank(&a) >= 3, "{a:#}");
    assert_eq!(a["library"]["verified"], false, "{a:#}");
    assert!(
        has(&a, "library.unsafe_reasons", "modified_since_package"),
        "{a:#}"
    );
    assert!(
        s(&a, "library.package").starts_with("libpam-modules"),
        "{a:#}"
    );
    d.stop();
}

#[test]
fn a_library_first_found_through_a_new_loader_directory_is_high_in_ssh() {
    assert!(
        ssh_loads("libkeyutils.so.1"),
        "ssh does not load libkeyutils"
    );
    let conf = Path::new("/etc/ld.so.conf.d/00-detector-provenance.conf");
    let libs = Path::new("/usr/local/lib/detector-provenance");
    let copy = libs.join("libkeyutils.so.1");
    // Dropped in reverse: the directory goes first, then the file, then ldconfig runs.
    let _conf = Restore::path(conf).then_run(&["ldconfig"]);
    let _libs = Restore::path(libs);
    std::fs::create_dir_all(libs).unwrap();
    std::fs::copy(libkeyutils(), &copy).unwrap();
    run(&[
        "patchelf",
        "--add-needed",
        "libm.so.6",
        copy.to_str().unwrap(),
    ]);
    std::fs::write(conf, format!("{}\n", libs.display())).unwrap();
    run(&["ldconfig"]);
    // Checked before the daemon starts: `ldd` makes the loader map the copy, and the kernel
    // reports a root-owned file's first mapping only, until the daemon has found it unpackaged
    // in that ordinary process and forgotten it; ssh run within that window would not be
    // reported.
    assert!(
        ssh_loads(copy.to_str().unwrap()),
        "the loader does not pick the copy"
    );
    let d = Daemon::start();
    trigger(Command::new("ssh").arg("-V"));
    let a = d.expect_alert("the copy found through ld.so.conf.d in ssh", |a| {
        unverified_in(a, "ssh", &copy)
    });
    assert!(severity_rank(&a) >= 3, "{a:#}");
    assert!(
        has(&a, "library.unsafe_reasons", "not_from_package"),
        "{a:#}"
    );
    d.stop();
}

/// A credential process that maps a new root-owned file a few milliseconds after an ordinary
/// process first mapped it is still verified: the kernel keeps reporting a file version's
/// mappings while the daemon decides about it. Here the ordinary process is `ldd`, whose loader
/// maps what ssh would load, and ssh follows at once.
#[test]
fn a_trojan_first_mapped_by_an_ordinary_process_is_still_verified_in_ssh_right_after() {
    let ebury = Ebury::prepare("seen-window");
    let trojan = ebury.trojan.clone();
    let d = Daemon::start();
    ebury.repoint();
    assert!(
        trigger(Command::new("ldd").arg("/usr/bin/ssh")).success(),
        "ldd /usr/bin/ssh failed"
    );
    trigger(Command::new("ssh").arg("-V"));
    let a = d.expect_alert("the trojan in ssh right after ldd mapped it", |a| {
        unverified_in(a, "ssh", &trojan)
    });
    assert!(severity_rank(&a) >= 3, "{a:#}");
    d.stop();
}

/// Runs `cmd` to a successful end; its pid.
fn run_pid(cmd: &mut Command) -> u32 {
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let st = child.wait().unwrap();
    assert!(st.success(), "{cmd:?}: {st}");
    pid
}

/// Alerts of medium or above about one of `pids` (other tests on the machine raise their own).
fn loud_for(d: &Daemon, pids: &[u32]) -> Vec<Value> {
    d.alerts_matching(|a| {
        a.get("rule").is_some()
            && severity_rank(a) >= 2
            && a["process"]["pid"]
                .as_u64()
                .is_some_and(|p| pids.contains(&(p as u32)))
    })
}

#[test]
fn untouched_ssh_and_su_raise_nothing_of_medium_or_above() {
    let dir = TempDir::new("untouched");
    let cfg = dir.path("detector.toml");
    std::fs::write(&cfg, "[thresholds]\nstats_interval_secs = 1\n").unwrap();
    let d = Daemon::start_with(&["--config", cfg.to_str().unwrap()]);
    let pids = [
        run_pid(Command::new("ssh").arg("-V")),
        run_pid(Command::new("su").args(["-s", "/bin/true", "nobody"])),
    ];
    std::thread::sleep(Duration::from_millis(1500));
    let loud = loud_for(&d, &pids);
    assert!(loud.is_empty(), "untouched ssh and su raised: {loud:#?}");
    // What was already mapped at start was verified: the stats record counts it.
    d.expect_alert(
        "a stats record with files the package database vouched for",
        |a| a["record"] == "stats" && a["verification"]["vouched"].as_u64().unwrap_or(0) > 0,
    );
    d.stop();
}

#[test]
fn an_unpackaged_library_in_usr_local_lib_in_an_ordinary_program_raises_nothing() {
    let dir = TempDir::new("applib");
    let loadlib = gcc(&dir, "loadlib.c", "loadlib", false);
    let lib = Path::new("/usr/local/lib/libdetector-provenance-app.so");
    let _guard = Restore::path(lib);
    harmless_library(&dir, lib);
    let d = Daemon::start();
    let pid = run_pid(Command::new(&loadlib).args(["path", lib.to_str().unwrap()]));
    std::thread::sleep(Duration::from_millis(1500));
    let mine = |a: &Value| s(a, "library.path") == lib.to_str().unwrap();
    let mut loud = loud_for(&d, &[pid]);
    loud.extend(d.alerts_matching(|a| mine(a) && severity_rank(a) >= 2));
    assert!(
        loud.is_empty(),
        "an application's own library raised: {loud:#?}"
    );
    d.stop();
}

#[test]
fn a_modified_packaged_library_mapped_while_dpkg_runs_is_judged_once_dpkg_is_done() {
    // pam_exec.so: packaged (libpam-modules), in no stock PAM stack, loaded by no other test.
    let dir = TempDir::new("held");
    let loadlib = gcc(&dir, "loadlib.c", "loadlib", false);
    let module = Path::new(LIBDIR).join("security/pam_exec.so");
    let d = Daemon::start();
    let _guard = Restore::path(&module);
    let side = module.with_file_name("pam_exec.so.detector-held");
    harmless_library(&dir, &side);
    std::fs::rename(&side, &module).unwrap();
    // A package manager at work: dpkg reading selections from a pipe that stays open 3 s (an
    // empty list changes nothing).
    let mut dpkg = Command::new("sh")
        .args(["-c", "sleep 3 | dpkg --set-selections"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let pid = run_pid(Command::new(&loadlib).args(["path", module.to_str().unwrap()]));
    let about_it =
        |a: &Value| a["process"]["pid"] == pid && s(a, "library.path") == module.to_str().unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let early = d.alerts_matching(about_it);
    let still_running = dpkg.try_wait().unwrap().is_none();
    assert!(
        still_running,
        "dpkg ended too soon for this test to mean anything"
    );
    assert!(early.is_empty(), "alerted while dpkg ran: {early:#?}");
    assert!(dpkg.wait().unwrap().success());
    let a = d.expect_alert("the modified library, once dpkg is done", about_it);
    assert_eq!(s(&a, "severity"), "medium", "{a:#}");
    assert!(
        has(&a, "library.unsafe_reasons", "modified_since_package"),
        "{a:#}"
    );
    d.stop();
}
