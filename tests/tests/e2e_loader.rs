//! Root end-to-end: the dynamic loader the kernel maps at exec, judged by the package database.
//! A rootkit's loader (Medusa, OrBit, vlany, bdvl: a copy of ld.so whose built-in
//! "/etc/ld.so.preload" names another file of the same length) is put in place inside a private
//! mount namespace only — a bind mount over the loader's path that the host never sees — and
//! a program given a copy of the loader as its interpreter; each beside its benign twin.
use std::{
    io::Write as _,
    os::unix::fs::PermissionsExt as _,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use detector_tests::{
    gcc, has, rewrite_string, s, severity_rank, system_loader, trigger, write_program, Daemon,
    Restore, TempDir,
};
use serde_json::Value;

/// `unshare --mount --propagation private sh -c SCRIPT`, which then waits for its stdin to
/// close: the namespace, and the shell whose root the daemon reads its files through, live until
/// the test is done. Killed on drop.
struct Namespace(Child);

impl Namespace {
    fn run(script: &str) -> Namespace {
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!("{script}; read _"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("unshare (util-linux)");
        Namespace(child)
    }

    /// The shell's pid (unshare execs it): the parent of what the script runs.
    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Whether `a` is about the shell or a process it ran.
    fn owns(&self, a: &Value) -> bool {
        a["process"]["pid"] == self.pid() || a["process"]["parent"]["pid"] == self.pid()
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.0.stdin.take() {
            let _ = stdin.write_all(b"\n");
        }
        if !matches!(self.0.try_wait(), Ok(Some(_))) {
            std::thread::sleep(Duration::from_millis(100));
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// A harmless gcc-built library installed root-owned in /usr/local/lib (removed on drop).
fn usr_local_library(dir: &TempDir, name: &str) -> (std::path::PathBuf, Restore) {
    let built = gcc(dir, "plain_ext.c", name, true);
    let path = Path::new("/usr/local/lib").join(name);
    let restore = Restore::path(&path);
    std::fs::copy(&built, &path).expect("install into /usr/local/lib");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    (path, restore)
}

/// A Medusa-style loader inside a private mount namespace: ssh started there runs the rootkit's
/// loader, which preloads what the rewritten file lists. The loader is named by the path the
/// process sees (the host's loader is untouched), as not what its package installed; the
/// library it preloads into ssh, as from no package.
#[test]
fn rootkit_loader_in_a_private_mount_namespace() {
    let dir = TempDir::new("medusa");
    let loader = system_loader();
    let loader_path = loader.to_str().unwrap();
    // The rewritten built-in preload file, as long as "/etc/ld.so.preload".
    let hidden = "/tmp/detect-e2e.pl";
    let (lib, _lib_back) = usr_local_library(&dir, "libdetector-e2e-medusa.so");
    let _hidden_back = Restore::path(hidden);
    std::fs::write(hidden, format!("{}\n", lib.display())).unwrap();
    let rogue = dir.path("ld-rootkit.so");
    let bytes = std::fs::read(&loader).expect("read the loader");
    write_program(
        &rogue,
        &rewrite_string(&bytes, "/etc/ld.so.preload", hidden),
    );

    let d = Daemon::start();
    let ns = Namespace::run(&format!(
        "mount --bind {} {loader_path} && ssh -V 2>/dev/null",
        rogue.display()
    ));
    let a = d.expect_alert("the rootkit's loader under ssh", |a| {
        ns.owns(a) && has(a, "detections", "unverified_loader")
    });
    assert_eq!(s(&a, "process.name"), "ssh", "{a}");
    assert_eq!(s(&a, "library.path"), loader_path, "{a}");
    assert!(severity_rank(&a) >= 3, "{a}");
    assert_eq!(a["library"]["verified"], false, "{a}");
    assert!(
        has(&a, "library.unsafe_reasons", "modified_since_package"),
        "{a}"
    );
    let m = std::fs::metadata(&rogue).unwrap();
    assert_eq!(
        a["library"]["inode"],
        std::os::unix::fs::MetadataExt::ino(&m),
        "the copy the kernel mapped, not the host's loader: {a}"
    );
    let l = d.expect_alert("the library it preloaded into ssh", |a| {
        ns.owns(a) && s(a, "library.path") == lib.to_str().unwrap()
    });
    assert_eq!(s(&l, "process.name"), "ssh", "{l}");
    assert!(severity_rank(&l) >= 3, "{l}");
    assert_eq!(l["library"]["verified"], false, "{l}");
    assert!(has(&l, "library.unsafe_reasons", "not_from_package"), "{l}");
    // unshare ran the host's loader before it entered the namespace where that path leads to
    // the rootkit's: it is judged by the file it mapped.
    let others = d.alerts_matching(|a| {
        ns.owns(a) && has(a, "detections", "unverified_loader") && s(a, "process.name") != "ssh"
    });
    assert!(others.is_empty(), "{others:#?}");
    drop(ns);
    // The host's loader was never touched.
    assert_eq!(std::fs::read(&loader).unwrap(), bytes);
    d.stop();
}

/// The twin: ssh in a private mount namespace with the system's loader raises nothing of medium
/// or above, though its loader, program and libraries were all verified through the namespace.
#[test]
fn ssh_in_a_private_mount_namespace_with_the_real_loader_raises_nothing() {
    let cfg = TempDir::new("ns-benign");
    let conf = cfg.path("detector.toml");
    std::fs::write(&conf, "[thresholds]\nstats_interval_secs = 1\n").unwrap();
    let d = Daemon::start_with(&["--config", conf.to_str().unwrap()]);
    let ns = Namespace::run("ssh -V 2>/dev/null");
    // ssh's program and loader at least were vouched for.
    d.expect_alert("a stats record with files vouched for", |a| {
        s(a, "record") == "stats" && a["verification"]["vouched"].as_u64().unwrap_or(0) >= 2
    });
    std::thread::sleep(Duration::from_millis(500));
    let loud = d.alerts_matching(|a| ns.owns(a) && severity_rank(a) >= 2);
    assert!(loud.is_empty(), "ssh in a namespace raised: {loud:#?}");
    drop(ns);
    d.stop();
}

/// A program whose PT_INTERP names a copy of the loader in /tmp (patchelf), run by a process
/// outside the credential catalogue: the copy is from no package.
#[test]
fn program_with_a_copied_loader_as_interpreter() {
    let dir = TempDir::new("interp");
    let interp = dir.path("ld-copy.so");
    write_program(&interp, &std::fs::read(system_loader()).unwrap());
    let program = dir.path("copied-interp");
    std::fs::copy("/usr/bin/true", &program).unwrap();
    let st = Command::new("patchelf")
        .arg("--set-interpreter")
        .arg(&interp)
        .arg(&program)
        .status()
        .expect("patchelf (cargo xtask setup installs it)");
    assert!(st.success(), "patchelf --set-interpreter: {st}");
    let d = Daemon::start();
    assert!(trigger(&mut Command::new(&program)).success());
    let a = d.expect_alert("the copied loader", |a| {
        has(a, "detections", "unverified_loader")
            && s(a, "library.path") == interp.to_str().unwrap()
    });
    assert_eq!(s(&a, "severity"), "high", "{a}");
    assert_eq!(s(&a, "process.name"), "copied-interp", "{a}");
    assert!(!has(&a, "detections", "credential_process"), "{a}");
    assert_eq!(a["library"]["verified"], false, "{a}");
    assert!(has(&a, "library.unsafe_reasons", "not_from_package"), "{a}");
    d.stop();
}

/// The twin: ordinary programs, whose loader is the system's, raise no unverified_loader,
/// though the loader was reported and vouched for.
#[test]
fn ordinary_execs_raise_no_unverified_loader() {
    let cfg = TempDir::new("execs-benign");
    let conf = cfg.path("detector.toml");
    std::fs::write(&conf, "[thresholds]\nstats_interval_secs = 1\n").unwrap();
    let d = Daemon::start_with(&["--config", conf.to_str().unwrap()]);
    trigger(Command::new("ls").arg("/"));
    trigger(&mut Command::new("/usr/bin/true"));
    trigger(Command::new("git").arg("--version"));
    trigger(Command::new("python3").args(["-c", "import json"]));
    trigger(Command::new("ssh").arg("-V"));
    d.expect_alert("a stats record with files vouched for", |a| {
        s(a, "record") == "stats" && a["verification"]["vouched"].as_u64().unwrap_or(0) >= 1
    });
    std::thread::sleep(Duration::from_millis(500));
    let loaders = d.alerts_matching(|a| has(a, "detections", "unverified_loader"));
    assert!(loaders.is_empty(), "ordinary execs raised: {loaders:#?}");
    d.stop();
}

/// The system library directory covered, in a private mount namespace, by an overlay whose
/// lower layer is the host's own directory (its packages are the host's dpkg database's) and
/// whose upper layer is a directory of the test's, removed on drop, even on failure.
struct Overlay {
    dir: std::path::PathBuf,
    _back: Restore,
}

impl Overlay {
    const LIBDIR: &'static str = "/usr/lib/x86_64-linux-gnu";

    fn new(tag: &str) -> Overlay {
        let dir = std::path::PathBuf::from(format!(
            "/var/lib/detector-e2e-overlay-{tag}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let back = Restore::path(&dir);
        std::fs::create_dir_all(dir.join("up")).unwrap();
        std::fs::create_dir_all(dir.join("work")).unwrap();
        Overlay { dir, _back: back }
    }

    fn upper(&self) -> std::path::PathBuf {
        self.dir.join("up")
    }

    /// `sh -c` script text that mounts the overlay, then runs `then`.
    fn mount_then(&self, then: &str) -> String {
        let d = self.dir.display();
        let lib = Self::LIBDIR;
        format!(
            "mount -t overlay overlay -o lowerdir={lib},upperdir={d}/up,workdir={d}/work {lib} && {then}"
        )
    }
}

/// A container-style overlay whose upper layer replaces the loader: ssh started in that
/// namespace runs it. The kernel reports the interpreter it mapped as the layer's own file (its
/// device and inode, its path inside the layer); the daemon finds it in the overlay's upper
/// layer by that identity and judges it by the package database: the packaged loader's path,
/// other bytes.
#[test]
fn a_loader_replaced_in_an_overlay_upper_layer_is_modified_since_package() {
    let overlay = Overlay::new("loader");
    let loader = system_loader();
    let mut bytes = std::fs::read(&loader).expect("read the loader");
    bytes.extend_from_slice(b"\0detector-e2e-overlay");
    let name = loader.file_name().unwrap().to_str().unwrap();
    let replaced = overlay.upper().join(name);
    write_program(&replaced, &bytes);
    let d = Daemon::start();
    let ns = Namespace::run(&overlay.mount_then("ssh -V 2>/dev/null"));
    let a = d.expect_alert("the loader from the overlay's upper layer under ssh", |a| {
        ns.owns(a) && has(a, "detections", "unverified_loader") && s(a, "process.name") == "ssh"
    });
    assert_eq!(
        s(&a, "library.path"),
        format!("{}/{name}", Overlay::LIBDIR),
        "the path as the process sees it: {a}"
    );
    let m = std::fs::metadata(&replaced).unwrap();
    assert_eq!(
        a["library"]["inode"],
        std::os::unix::fs::MetadataExt::ino(&m),
        "the upper layer's file: {a}"
    );
    assert!(severity_rank(&a) >= 3, "{a}");
    assert_eq!(a["library"]["verified"], false, "{a}");
    assert!(
        has(&a, "library.unsafe_reasons", "modified_since_package"),
        "{a}"
    );
    assert!(s(&a, "library.package").starts_with("libc6"), "{a}");
    drop(ns);
    assert_eq!(std::fs::read(&loader).unwrap().len() + 21, bytes.len());
    d.stop();
}

/// The twin: the same overlay with nothing in its upper layer. ssh's loader and libraries all
/// come through the overlay from the lower layer, the host's own files: vouched for, nothing of
/// medium or above.
#[test]
fn an_unchanged_overlay_of_the_library_directory_raises_nothing() {
    let overlay = Overlay::new("benign");
    let cfg = TempDir::new("overlay-benign");
    let conf = cfg.path("detector.toml");
    std::fs::write(&conf, "[thresholds]\nstats_interval_secs = 1\n").unwrap();
    let d = Daemon::start_with(&["--config", conf.to_str().unwrap()]);
    let ns = Namespace::run(&overlay.mount_then("ssh -V 2>/dev/null"));
    d.expect_alert("a stats record with files vouched for", |a| {
        s(a, "record") == "stats" && a["verification"]["vouched"].as_u64().unwrap_or(0) >= 2
    });
    std::thread::sleep(Duration::from_millis(1000));
    let loud = d.alerts_matching(|a| ns.owns(a) && severity_rank(a) >= 2);
    assert!(
        loud.is_empty(),
        "ssh over an unchanged overlay raised: {loud:#?}"
    );
    drop(ns);
    d.stop();
}
