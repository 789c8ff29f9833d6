//! Root end-to-end: changes to the watched places made inside a container — another mount
//! namespace whose root is an overlay of the host's root filesystem, as a container runtime
//! makes it (`unshare`, overlayfs, `pivot_root`). The container's files are not the host's:
//! its package manager's changes are verified against its own package database, and another
//! writer's are high, naming the container's path and namespace. Nothing on the host changes
//! (the overlay's upper layer is a tmpfs of the container's own).
use std::{path::Path, process::Command};

use detector_tests::{has, s, severity_rank, trigger, Daemon, TempDir};
use serde_json::Value;

const LIB_DIR: &str = "/usr/lib/x86_64-linux-gnu";
/// The library the test package installs.
const PACKAGED: &str = "/usr/lib/x86_64-linux-gnu/libdetector-e2e-container.so.1";
/// The library another writer drops beside it.
const DROPPED: &str = "/usr/lib/x86_64-linux-gnu/libdetector-e2e-container-drop.so.1";

/// A package `detector-e2e-container` holding a copy of a host library at [`PACKAGED`].
fn package(dir: &TempDir, lib: &Path) -> String {
    let root = dir.path("pkg");
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(root.join(&LIB_DIR[1..])).unwrap();
    std::fs::copy(lib, root.join(&PACKAGED[1..])).unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        "Package: detector-e2e-container\nVersion: 1.0\nArchitecture: amd64\n\
         Maintainer: detector tests <root@localhost>\nDescription: a library installed in a \
         container by the detector's tests\n",
    )
    .unwrap();
    let deb = dir.path("detector-e2e-container.deb");
    let out = Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&root)
        .arg(&deb)
        .output()
        .expect("run dpkg-deb");
    assert!(out.status.success(), "dpkg-deb: {out:?}");
    deb.display().to_string()
}

/// Runs `script` in a container: a new mount namespace whose root is an overlay of the host's
/// root filesystem with its upper layer on a tmpfs mounted there only (with /dev bound in and
/// a /proc of its own). Returns whether the script succeeded.
fn in_container(dir: &TempDir, script: &str) -> bool {
    let t = dir.path("ctr");
    std::fs::create_dir_all(&t).unwrap();
    let t = t.display();
    let setup = format!(
        "set -e; mount -t tmpfs tmpfs {t}; mkdir {t}/u {t}/w {t}/m; \
         mount -t overlay overlay -o lowerdir=/,upperdir={t}/u,workdir={t}/w {t}/m; \
         mount --rbind /dev {t}/m/dev; cd {t}/m; mkdir -p old; pivot_root . old; \
         mount -t proc proc /proc; umount -l /old; exec sh -ec \"$0\""
    );
    trigger(
        Command::new("unshare")
            .args(["--mount", "--fork", "--propagation", "private", "sh", "-c"])
            .arg(setup)
            .arg(script),
    )
    .success()
}

fn sha256(path: &str) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn in_namespace(a: &Value) -> bool {
    s(a, "file.mount_namespace").starts_with("mnt:[")
}

/// dpkg installing a package in the container, then a shell dropping an unpackaged library
/// beside it: the package's change is information only (its own database vouches for it once
/// dpkg is done), the dropped library is high, read through the container's root. The shell
/// outlives `mv` by a second: the daemon looks through the writer's root, or its parent's, and
/// a container whose every process is gone before the reader reads its change is `unknown`.
#[test]
fn a_containers_package_manager_is_verified_by_its_own_database_and_a_drop_is_high() {
    let dir = TempDir::new("container");
    let lib = std::fs::canonicalize(format!("{LIB_DIR}/libgdbm.so.6")).unwrap();
    let deb = package(&dir, &lib);
    let d = Daemon::start();
    let script = format!(
        "dpkg -i {deb} >/dev/null; dpkg -s detector-e2e-container >/dev/null; sleep 2; \
         cp {lib} {LIB_DIR}/.drop; mv {LIB_DIR}/.drop {DROPPED}; sleep 1",
        lib = lib.display()
    );
    assert!(in_container(&dir, &script), "the container's script failed");
    for p in [PACKAGED, DROPPED] {
        assert!(!Path::new(p).exists(), "{p} appeared on the host");
    }
    let a = d.expect_alert("the dropped library, in the container", |a| {
        s(a, "file.path") == DROPPED && in_namespace(a)
    });
    assert_eq!(s(&a, "severity"), "high", "{a}");
    assert_eq!(a["file"]["exists"], true, "{a}");
    assert_eq!(
        s(&a, "file.hash.sha256"),
        sha256(lib.to_str().unwrap()),
        "{a}"
    );
    assert!(
        has(&a, "file.provenance_reasons", "not_from_package"),
        "{a}"
    );
    let info = d.expect_alert("dpkg's change, in the container", |a| {
        s(a, "file.path") == PACKAGED && s(a, "file.package_manager") == "dpkg"
    });
    assert!(in_namespace(&info), "{info}");
    assert_eq!(s(&info, "severity"), "info", "{info}");
    let noisy = d.alerts_matching(|a| severity_rank(a) >= 2 && s(a, "file.path") == PACKAGED);
    assert!(noisy.is_empty(), "the packaged library alerted: {noisy:#?}");
    d.stop();
}

/// Python that forks a child into a new user namespace whose root the parent maps to host uid
/// 100000 (as a rootless container's runtime maps it); the child becomes that root and loads
/// `sys.argv[1]` with ctypes, and stays two seconds. Exits with the child's status.
const LOAD_IN_USER_NAMESPACE: &str = r#"
import ctypes, os, sys, time
r, w = os.pipe()
r2, w2 = os.pipe()
pid = os.fork()
if pid == 0:
    assert ctypes.CDLL(None, use_errno=True).unshare(0x10000000) == 0  # CLONE_NEWUSER
    os.write(w, b"x")
    os.read(r2, 1)
    os.setgid(0)
    os.setuid(0)
    ctypes.CDLL(sys.argv[1])
    time.sleep(2)  # the namespace's maps are read while its process runs
    os._exit(0)
os.read(r, 1)
for m in ("uid_map", "gid_map"):
    with open(f"/proc/{pid}/{m}", "w") as f:
        f.write("0 100000 65536\n")
os.write(w2, b"x")
sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"#;

/// A rootless container's files belong to the host uid its user namespace maps root to: a
/// library of that uid, in a directory of that uid, loaded by a process of that namespace is
/// its root's, not "owned by non-root"; a copy of it loaded by a host process is.
#[test]
fn a_library_owned_by_a_user_namespaces_root_is_that_namespaces_roots() {
    let dir = TempDir::new("container-userns");
    let tree = dir.path("tree");
    std::fs::create_dir_all(&tree).unwrap();
    let lib = detector_tests::gcc(&dir, "plain_ext.c", "libuserns.so", true);
    let in_tree = tree.join("libuserns.so");
    std::fs::copy(&lib, &in_tree).unwrap();
    // The twin's own copy: a file version is reported once (the kernel's seen-cache).
    let twin = tree.join("libuserns-twin.so");
    std::fs::copy(&lib, &twin).unwrap();
    for p in [&tree, &in_tree, &twin] {
        std::os::unix::fs::chown(p, Some(100000), Some(100000)).unwrap();
    }
    std::fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let d = Daemon::start();
    let path = in_tree.to_str().unwrap();
    assert!(trigger(
        Command::new("python3")
            .args(["-c", LOAD_IN_USER_NAMESPACE])
            .arg(&in_tree)
    )
    .success());
    let ours = d.expect_alert("the namespace's python3 loading its root's library", |a| {
        s(a, "library.path") == path && a["process"]["user"]["id"] == 100000
    });
    for r in ["owned_by_non_root", "directory_writable_by_non_root"] {
        assert!(!has(&ours, "library.unsafe_reasons", r), "{r}: {ours}");
    }
    assert!(severity_rank(&ours) < 2, "{ours}");
    // The twin: a host process loading a copy of it, owned alike.
    let twin = twin.to_str().unwrap();
    let status = Command::new("python3")
        .arg("-c")
        .arg(format!("import ctypes; ctypes.CDLL(\"{twin}\")"))
        .status()
        .unwrap();
    assert!(status.success());
    let host = d.expect_alert("a host python3 loading the copy", |a| {
        s(a, "library.path") == twin && a["process"]["user"]["id"] == 0
    });
    assert!(
        has(&host, "library.unsafe_reasons", "owned_by_non_root"),
        "{host}"
    );
    d.stop();
}
