//! Root end-to-end: the watched places (PAM configuration, library symlinks, the package
//! database) changed by an attacker's tools and by the package manager, with the real daemon.
//! Every path changed is restored, even when a test fails.
use std::{
    collections::HashMap,
    path::Path,
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use detector_tests::{apt_reinstall, has, s, scaled, severity_rank, trigger, Daemon, Restore};
use serde_json::Value;

/// Atomic Red Team T1556.003 (Modify Authentication Process: Pluggable Authentication
/// Modules): the line that lets any user authenticate.
const ART_T1556_003: &str = "auth sufficient pam_succeed_if.so uid >= 0";

/// A library directory with a symbolic link no test or tool here depends on.
const LIB_DIR: &str = "/usr/lib/x86_64-linux-gnu";
const LINK: &str = "libgdbm.so.6";

/// A package database record no other test reads.
const MD5SUMS: &str = "/var/lib/dpkg/info/libyaml-0-2:amd64.md5sums";

/// Other test binaries may run on this machine at the same time as these tests. An alert is
/// another test's when its process, or its parent, was seen descending from a process other than
/// this test (`Parents`), or when it names another test's fixtures (`detector-*`) or executable
/// (under a `target/` directory). An alert whose ancestry was not seen counts as this test's.
fn from_this_test(a: &Value, parents: &Parents) -> bool {
    let pid = |k: &str| a["process"][k].as_u64().map(|p| p as u32);
    let parent = a["process"]["parent"]["pid"].as_u64().map(|p| p as u32);
    let seen = pid("pid")
        .and_then(|p| parents.descends_from_this_test(p))
        .or_else(|| parent.and_then(|p| parents.descends_from_this_test(p)));
    let text = a.to_string();
    seen != Some(false)
        && !text.contains("detector-")
        && !s(a, "process.executable").contains("/target/")
}

/// The parent of every process seen while it runs, from /proc polled every few milliseconds.
struct Parents {
    map: Arc<Mutex<HashMap<u32, u32>>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Parents {
    fn start() -> Parents {
        let map = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, st) = (map.clone(), stop.clone());
        let thread = thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                    let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                        continue;
                    };
                    let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                        continue;
                    };
                    // pid (comm) state ppid ...: comm may hold spaces and parentheses.
                    let ppid = stat
                        .rsplit_once(')')
                        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                        .and_then(|p| p.parse::<u32>().ok());
                    if let Some(ppid) = ppid {
                        m.lock().unwrap().insert(pid, ppid);
                    }
                }
                thread::sleep(Duration::from_millis(5));
            }
        });
        Parents {
            map,
            stop,
            thread: Some(thread),
        }
    }

    /// Whether `pid` is this test or was seen descending from it; `None` when its chain of
    /// parents up to this test or to init was not seen whole.
    fn descends_from_this_test(&self, pid: u32) -> Option<bool> {
        let me = std::process::id();
        let map = self.map.lock().unwrap();
        let mut p = pid;
        for _ in 0..64 {
            if p == me {
                return Some(true);
            }
            match map.get(&p) {
                Some(&pp) if pp > 1 => p = pp,
                Some(_) => return Some(false),
                // An ancestor not seen: the chain is not known.
                None => return None,
            }
        }
        None
    }
}

impl Drop for Parents {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits until the alerts have had time to settle and be judged (the daemon waits 250 ms after
/// a change, and for a package manager's end before it verifies what it changed).
fn settle() {
    thread::sleep(scaled(Duration::from_millis(1500)));
}

#[test]
fn sed_appending_the_art_t1556_003_line_to_su_l_is_high_and_names_su_l() {
    let path = "/etc/pam.d/su-l";
    assert!(Path::new(path).exists(), "{path}");
    let _guard = Restore::path(path);
    let d = Daemon::start();
    assert!(
        trigger(Command::new("sed").args(["-i", &format!("$a {ART_T1556_003}"), path])).success()
    );
    let a = d.expect_alert("sed's edit of /etc/pam.d/su-l", |a| {
        s(a, "file.path") == path && s(a, "process.name") == "sed"
    });
    assert_eq!(s(&a, "severity"), "high", "{a}");
    assert!(has(&a, "detections", "pam_config_change"), "{a}");
    assert!(has(&a, "threat.technique.id", "T1556.003"), "{a}");
    assert_eq!(
        a["file"]["diff"]["added"],
        serde_json::json!([ART_T1556_003]),
        "{a}"
    );
    assert_eq!(a["file"]["diff"]["removed"], serde_json::json!([]), "{a}");
    assert!(a["file"].get("package_manager").is_none(), "{a}");
    // sed's temporary file (/etc/pam.d/sedXXXXXX) is part of this change, not one of its own.
    let temp = a["file"]["paths"][0]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(temp.starts_with("/etc/pam.d/sed"), "{a}");
    settle();
    let others = d.alerts_matching(|x| {
        severity_rank(x) >= 2 && s(x, "process.name") == "sed" && s(x, "file.path") != path
    });
    assert!(others.is_empty(), "{others:#?}");
    d.stop();
}

#[test]
fn repointing_a_library_symlink_is_high_with_its_old_and_new_target() {
    let link = format!("{LIB_DIR}/{LINK}");
    let old = std::fs::read_link(&link).expect("the library's link");
    // Not named `lib*`: ldconfig, which another process may run meanwhile, leaves it alone.
    let copy_name = format!("detector-e2e-copy-of-{}", old.display());
    let copy = format!("{LIB_DIR}/{copy_name}");
    let _copy_guard = Restore::path(&copy);
    let _link_guard = Restore::path(&link);
    // The copy has the library's bytes: what links to it keeps working meanwhile.
    std::fs::copy(Path::new(LIB_DIR).join(&old), &copy).unwrap();
    let d = Daemon::start();
    assert!(trigger(
        Command::new("ln")
            .args(["-sf", &copy_name, LINK])
            .current_dir(LIB_DIR)
    )
    .success());
    let a = d.expect_alert("ln -sf repointing the library's link", |a| {
        s(a, "file.path") == link && s(a, "process.name") == "ln"
    });
    assert_eq!(s(&a, "severity"), "high", "{a}");
    assert!(has(&a, "detections", "library_change"), "{a}");
    assert_eq!(s(&a, "file.target_path"), copy_name, "{a}");
    assert_eq!(
        s(&a, "file.previous_target_path"),
        old.display().to_string(),
        "{a}"
    );
    d.stop();
}

#[test]
fn a_write_to_a_packages_md5sums_outside_the_package_manager_is_high() {
    assert!(Path::new(MD5SUMS).exists(), "{MD5SUMS}");
    let _guard = Restore::path(MD5SUMS);
    let d = Daemon::start();
    // What an attacker does after replacing a library: the record made to match it.
    assert!(
        trigger(Command::new("sed").args(["-i", "1s/^[0-9a-f]\\{8\\}/00000000/", MD5SUMS]))
            .success()
    );
    let a = d.expect_alert("sed's edit of the md5sums", |a| {
        s(a, "file.path") == MD5SUMS && s(a, "process.name") == "sed"
    });
    assert_eq!(s(&a, "severity"), "high", "{a}");
    assert!(has(&a, "detections", "package_database_change"), "{a}");
    d.stop();
}

#[test]
fn an_administrators_write_outside_the_watched_places_raises_nothing() {
    let benign = [
        "/etc/detector-e2e-watch.conf",
        "/var/lib/dpkg/detector-e2e-watch",
    ];
    let marker = "/etc/pam.d/zz-detector-e2e-watch-marker";
    let _guards: Vec<Restore> = benign.iter().chain([&marker]).map(Restore::path).collect();
    for p in benign {
        std::fs::write(p, "a = 1\n").unwrap();
    }
    let d = Daemon::start();
    for p in benign {
        assert!(trigger(Command::new("sed").args(["-i", "$a b = 2", p])).success());
        assert!(trigger(Command::new("sh").args(["-c", &format!("echo c = 3 >> {p}")])).success());
    }
    // Then a watched change: once its alert is out, the writes before it were judged.
    assert!(trigger(Command::new("sh").args(["-c", &format!(": > {marker}")])).success());
    d.expect_alert("the marker in /etc/pam.d", |a| s(a, "file.path") == marker);
    let about_benign = d.alerts_matching(|a| {
        let text = a.to_string();
        benign.iter().any(|p| text.contains(p))
    });
    assert!(about_benign.is_empty(), "{about_benign:#?}");
    d.stop();
}

/// The routine upgrade that made the sensor unbearable: apt reinstalling PAM, the loader's
/// tools and ssh, then pam-auth-update. Nothing of medium or above from any rule; the package
/// manager's changes are information that names it.
#[test]
fn a_package_upgrade_raises_nothing_of_medium_or_above() {
    let parents = Parents::start();
    let d = Daemon::start();
    let started = Instant::now();
    apt_reinstall(&[
        "libpam-modules",
        "libpam-runtime",
        "libc-bin",
        "openssh-client",
    ]);
    assert!(trigger(Command::new("pam-auth-update").arg("--package")).success());
    eprintln!("upgrade took {:?}", started.elapsed());
    let a = d.expect_alert("dpkg replacing a PAM module", |a| {
        has(a, "detections", "pam_module_change") && s(a, "file.package_manager") == "dpkg"
    });
    assert_eq!(s(&a, "severity"), "info", "{a}");
    let a = d.expect_alert("pam-auth-update, run by dpkg, rewriting common-auth", |a| {
        s(a, "file.path") == "/etc/pam.d/common-auth" && s(a, "file.package_manager") == "dpkg"
    });
    assert_eq!(s(&a, "severity"), "info", "{a}");
    // Run by the administrator: trusted as far as the package database vouches for its profiles.
    let a = d.expect_alert("pam-auth-update, run alone, rewriting common-auth", |a| {
        s(a, "file.path") == "/etc/pam.d/common-auth"
            && s(a, "file.package_manager") == "pam-auth-update"
    });
    assert_eq!(s(&a, "severity"), "info", "{a}");
    d.expect_alert("dpkg updating its own record", |a| {
        has(a, "detections", "package_database_change") && s(a, "file.package_manager") == "dpkg"
    });
    settle();
    let loud = d.alerts_matching(|a| severity_rank(a) >= 2 && from_this_test(a, &parents));
    assert!(loud.is_empty(), "alerts of medium or above:\n{loud:#?}");
    // Every change the package manager made is information naming it.
    let unnamed = d.alerts_matching(|a| {
        matches!(s(a, "process.name"), "dpkg" | "pam-auth-update")
            && a.get("file").is_some()
            && (s(a, "severity") != "info" || a["file"].get("package_manager").is_none())
    });
    assert!(unnamed.is_empty(), "{unnamed:#?}");
    d.stop();
}

const PAM_TYPES: &[&str] = &[
    "auth",
    "account",
    "password",
    "session",
    "session-noninteractive",
];

/// The malicious twin of pam-auth-update's trust: a profile no package installed, composed into
/// common-auth by pam-auth-update, is high.
#[test]
fn pam_auth_update_composing_a_profile_no_package_installed_is_high() {
    let profile = "/usr/share/pam-configs/detector-e2e-profile";
    let mut guards = vec![Restore::path(profile)];
    for t in PAM_TYPES {
        guards.push(Restore::path(format!("/etc/pam.d/common-{t}")));
        guards.push(Restore::path(format!("/var/lib/pam/{t}")));
    }
    for p in [
        "/var/lib/pam/seen",
        "/var/cache/debconf/config.dat",
        "/var/cache/debconf/config.dat-old",
    ] {
        guards.push(Restore::path(p));
    }
    // A harmless line: the test watches the change, not its effect.
    std::fs::write(
        profile,
        "Name: detector e2e profile\nDefault: yes\nPriority: 0\nAuth-Type: Additional\nAuth:\n\toptional\tpam_permit.so\n",
    )
    .unwrap();
    let d = Daemon::start();
    assert!(trigger(Command::new("pam-auth-update").arg("--package")).success());
    let a = d.expect_alert("pam-auth-update adding the profile to common-auth", |a| {
        s(a, "file.path") == "/etc/pam.d/common-auth" && s(a, "process.name") == "pam-auth-update"
    });
    assert_eq!(s(&a, "severity"), "high", "{a}");
    assert!(
        has(&a, "file.provenance_reasons", "pam_profile_unverified"),
        "{a}"
    );
    let added = a["file"]["diff"]["added"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        added
            .iter()
            .any(|l| l.as_str().unwrap_or("").contains("pam_permit.so")),
        "{a}"
    );
    d.stop();
    drop(guards);
}

/// The malicious twin of the package manager's trust: a library a package manager's hook leaves
/// behind (dpkg's `--pre-invoke`, run through `sh -c` as dpkg's child) is information while dpkg
/// runs, and high once it is done, since no package vouches for it.
#[test]
fn a_library_a_package_manager_leaves_that_no_package_vouches_for_is_high_once_it_is_done() {
    let lib = format!("{LIB_DIR}/libdetector-e2e-from-a-hook.so");
    let _guard = Restore::path(&lib);
    let source = std::fs::canonicalize(format!("{LIB_DIR}/{LINK}")).unwrap();
    let d = Daemon::start();
    let hook = format!("cp {} {lib}", source.display());
    // dpkg takes no lock timeout: another dpkg or apt may hold the lock for a while.
    let deadline = Instant::now() + scaled(Duration::from_secs(600));
    loop {
        let out = Command::new("dpkg")
            .arg(format!("--pre-invoke={hook}"))
            .args(["--triggers-only", "--pending"])
            .output()
            .expect("run dpkg");
        if out.status.success() {
            break;
        }
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("lock") && Instant::now() < deadline,
            "dpkg failed ({}): {err}",
            out.status
        );
        thread::sleep(Duration::from_secs(1));
    }
    let a = d.expect_alert("the hook's copy, while dpkg runs", |a| {
        s(a, "file.path") == lib && s(a, "file.package_manager") == "dpkg"
    });
    assert_eq!(s(&a, "severity"), "info", "{a}");
    let a = d.expect_alert("the copy, verified once dpkg is done", |a| {
        s(a, "file.path") == lib && has(a, "detections", "unverified_object")
    });
    assert_eq!(s(&a, "severity"), "high", "{a}");
    assert_eq!(a["file"]["verified"], serde_json::json!(false), "{a}");
    assert!(
        has(&a, "file.provenance_reasons", "not_from_package"),
        "{a}"
    );
    d.stop();
}

/// A root filesystem being built in a directory (debootstrap, mmdebstrap, a container image):
/// a process chrooted into it names its own files with absolute names. Renaming the tree's own
/// `/etc/pam.d` file is not a change of the host's PAM configuration; the same tool chrooted
/// into `/usr/local` creating a link in its `/lib` is, and the alert names the host's path.
#[test]
fn a_chroots_absolute_names_are_judged_as_the_host_names_them() {
    let tree = detector_tests::TempDir::new("watch-chroot");
    let root = tree.path("root");
    std::fs::create_dir_all(root.join("etc/pam.d")).unwrap();
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/usr/bin/busybox", root.join("bin/busybox")).unwrap();
    std::fs::write(
        root.join("etc/pam.d/su-new"),
        "auth sufficient pam_rootok.so\n",
    )
    .unwrap();
    // busybox picks its applet by its own name: the copy keeps it, in a directory of its own.
    let local_dir = "/usr/local/detector-e2e-chroot";
    let link = "/usr/local/lib/detector-e2e-chroot-link";
    let _b = Restore::path(local_dir);
    let _l = Restore::path(link);
    std::fs::create_dir_all(local_dir).unwrap();
    std::fs::copy("/usr/bin/busybox", format!("{local_dir}/busybox")).unwrap();
    let d = Daemon::start();
    assert!(trigger(Command::new("chroot").arg(&root).args([
        "/bin/busybox",
        "mv",
        "/etc/pam.d/su-new",
        "/etc/pam.d/su"
    ]))
    .success());
    assert!(root.join("etc/pam.d/su").exists());
    assert!(trigger(Command::new("chroot").args([
        "/usr/local",
        "/detector-e2e-chroot/busybox",
        "ln",
        "-s",
        "nowhere",
        "/lib/detector-e2e-chroot-link"
    ]))
    .success());
    let a = d.expect_alert("the link made through the chroot into /usr/local", |a| {
        s(a, "file.path") == link
    });
    assert!(severity_rank(&a) >= 3, "{a}");
    let host_pam = d.alerts_matching(|a| s(a, "file.path").starts_with("/etc/pam.d/su"));
    assert!(host_pam.is_empty(), "{host_pam:#?}");
    let tree_path = root.join("etc/pam.d/su");
    let in_tree = d.alerts_matching(|a| {
        severity_rank(a) >= 2 && s(a, "file.path") == tree_path.to_str().unwrap()
    });
    assert!(in_tree.is_empty(), "{in_tree:#?}");
    d.stop();
}

/// Debian's mirror, as mmdebstrap takes it (the one the systemd VM test builds from).
const MIRROR: &str = "deb http://deb.debian.org/debian bookworm main";

/// Runs `/usr/bin/mmdebstrap` (by that path: image builders are recognised by the program
/// exec'd) building Debian 12's `variant` into the directory `tree`, with `hooks`
/// (`--customize-hook=…`: shell commands run on the host once the tree is built, the tree's
/// path as `$1`). Panics with its output when it fails.
fn mmdebstrap(variant: &str, tree: &Path, hooks: &[&str]) {
    assert!(
        Path::new("/usr/bin/mmdebstrap").exists(),
        "mmdebstrap is not installed"
    );
    let started = Instant::now();
    let out = Command::new("/usr/bin/mmdebstrap")
        .args([
            &format!("--variant={variant}"),
            "--format=directory",
            "--quiet",
        ])
        .args(hooks.iter().map(|h| format!("--customize-hook={h}")))
        .arg("bookworm")
        .arg(tree)
        .arg(MIRROR)
        .output()
        .expect("run mmdebstrap");
    assert!(
        out.status.success(),
        "mmdebstrap failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("mmdebstrap {variant} took {:?}", started.elapsed());
}

/// Building a root filesystem image on a server is benign. mmdebstrap installs Debian's
/// Essential set into a directory: dpkg and its maintainer scripts run chrooted into the tree,
/// on the tree's own loader and libraries, and write its package database, its `/etc/pam.d`
/// and its `/usr/lib`. Its customize hooks then run commands chrooted into the tree the way
/// mmdebstrap's own hooks do (`chroot "$1" command`: a process on the tree's loader, gone before
/// the daemon can read its root, whose parent has the host's) after replacing the tree's loader
/// with a copy of itself, and rewrite the tree's `/etc/pam.d/su` and dpkg's `status` from
/// inside it. Nothing of medium or above: the tree's
/// files are judged against the tree's package database once the builder is done.
#[test]
fn an_image_build_raises_nothing_of_medium_or_above() {
    let dir = detector_tests::TempDir::new("image");
    let tree = dir.path("tree");
    let tree_name = tree.display().to_string();
    let parents = Parents::start();
    let d = Daemon::start();
    mmdebstrap(
        "essential",
        &tree,
        &[
            // A new version of the tree's loader (as an upgrade of its libc6 makes one): no
            // mapping of it was judged before.
            r#"chroot "$1" sh -c 'cd /usr/lib/x86_64-linux-gnu && cp -p ld-linux-x86-64.so.2 ld.new && mv ld.new ld-linux-x86-64.so.2'"#,
            r#"chroot "$1" /bin/true"#,
            r#"chroot "$1" sh -c 'readlink /bin; basename /usr/bin/dpkg-realpath' >/dev/null"#,
            r##"chroot "$1" sh -c 'cp /etc/pam.d/su /etc/pam.d/su.new && echo "# built here" >> /etc/pam.d/su.new && mv /etc/pam.d/su.new /etc/pam.d/su'"##,
            r#"chroot "$1" sh -c 'cp /var/lib/dpkg/status /var/lib/dpkg/status-new && mv /var/lib/dpkg/status-new /var/lib/dpkg/status'"#,
        ],
    );
    assert!(
        std::fs::read_to_string(tree.join("etc/pam.d/su"))
            .unwrap()
            .contains("# built here"),
        "the hook did not rewrite the tree's /etc/pam.d/su"
    );
    settle();
    let loud = loud_about(&d, &parents, &tree_name);
    assert!(loud.is_empty(), "alerts of medium or above:\n{loud:#?}");
    // The host's own PAM configuration and package database were not touched.
    let host = d.alerts_matching(|a| {
        let p = s(a, "file.path");
        p.starts_with("/etc/pam.d/su") || p.starts_with("/var/lib/dpkg/status")
    });
    assert!(host.is_empty(), "{host:#?}");
    d.stop();
}

/// The alerts of medium or above that are this test's (`from_this_test`) or name `tree` (whose
/// path, under the tests' temporary directory, `from_this_test` takes for another test's).
fn loud_about(d: &Daemon, parents: &Parents, tree: &str) -> Vec<Value> {
    d.alerts_matching(|a| {
        severity_rank(a) >= 2 && (a.to_string().contains(tree) || from_this_test(a, parents))
    })
}

/// debootstrap (a shell script) unpacks the base packages into a directory, then runs dpkg
/// chrooted into it to install them: until then the tree's package database lists none of its
/// files, and the tree's programs already run on its loader. Nothing of medium or above once
/// the tree's files are verified against its database, when debootstrap is done.
#[test]
fn debootstrap_building_a_tree_raises_nothing_of_medium_or_above() {
    assert!(
        Path::new("/usr/sbin/debootstrap").exists(),
        "debootstrap is not installed (apt-get install debootstrap)"
    );
    let dir = detector_tests::TempDir::new("debootstrap");
    let tree = dir.path("tree");
    let parents = Parents::start();
    let d = Daemon::start();
    let started = Instant::now();
    let out = Command::new("/usr/sbin/debootstrap")
        .args(["--variant=minbase", "bookworm"])
        .arg(&tree)
        .arg("http://deb.debian.org/debian")
        .output()
        .expect("run debootstrap");
    assert!(
        out.status.success(),
        "debootstrap failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("debootstrap took {:?}", started.elapsed());
    settle();
    let loud = loud_about(&d, &parents, &tree.display().to_string());
    assert!(loud.is_empty(), "alerts of medium or above:\n{loud:#?}");
    d.stop();
}

/// The malicious twin: an image builder is no exemption. Its customize hook runs on the host,
/// outside the tree: a library it copies into the host's /usr/local/lib is high, and names no
/// builder.
#[test]
fn an_image_builders_hook_writing_a_library_into_the_hosts_usr_local_lib_is_high() {
    let dir = detector_tests::TempDir::new("image-hook");
    let tree = dir.path("tree");
    let lib = "/usr/local/lib/libdetector-e2e-from-an-image-hook.so";
    let _guard = Restore::path(lib);
    let source = std::fs::canonicalize(format!("{LIB_DIR}/{LINK}")).unwrap();
    let d = Daemon::start();
    mmdebstrap(
        "essential",
        &tree,
        &[&format!("cp {} {lib}", source.display())],
    );
    assert!(Path::new(lib).exists(), "the hook did not copy {lib}");
    let a = d.expect_alert("the hook's copy into the host's /usr/local/lib", |a| {
        s(a, "file.path") == lib
    });
    assert_eq!(s(&a, "severity"), "high", "{a}");
    assert!(has(&a, "detections", "library_change"), "{a}");
    assert!(a["file"].get("package_manager").is_none(), "{a}");
    assert!(a["file"].get("mount_namespace").is_none(), "{a}");
    d.stop();
}
