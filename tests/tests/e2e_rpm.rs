//! Package provenance from rpm's database, for real: a package built with rpmbuild (a
//! gcc-built program that loads a library, named `ssh` so that it is in the credential
//! catalogue; the library; copies of the host's loader and C library it runs with) installed by
//! rpm into a root of its own (`rpm --root`), and the program run chrooted there. The daemon
//! judges the process by its root and that root's rpm database: the packaged library raises
//! nothing, the same library modified in place is `modified_since_package` naming the rpm
//! package, a library no package installed is `not_from_package`. The root is removed at the
//! end, even on failure.
use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use detector_tests::{gcc, has, s, severity_rank, system_loader, Daemon, Restore, TempDir};
use serde_json::Value;

/// The package's name as the alerts give it (`rpm -q`'s `name-version-release.arch`).
const PACKAGE: &str = "detector-e2e-rpm-1.0-1.x86_64";
/// Where the root is made (not under /tmp: a world-writable place is unsafe on its own).
const ROOT: &str = "/var/lib/detector-e2e-rpm-root";
/// The packaged library, inside the root.
const LIB: &str = "/usr/lib64/libdetector-e2e-rpm.so.1";
/// Inside the root, the directory the host's loader searches by default.
const LIBDIR: &str = "/usr/lib/x86_64-linux-gnu";

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The shared objects `program` needs, from ldd (the loader and the vDSO left out).
fn needed(program: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(program).output().expect("ldd");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (_, rest) = l.split_once(" => ")?;
            let path = rest.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// Builds the package with rpmbuild in `dir`; its path.
fn build_package(dir: &TempDir) -> PathBuf {
    let program = gcc(dir, "loadlib.c", "loadlib", false);
    let lib = gcc(dir, "plain_ext.c", "libplain.so", true);
    let sources = dir.path("sources");
    std::fs::create_dir_all(&sources).unwrap();
    std::fs::copy(&program, sources.join("ssh")).unwrap();
    std::fs::copy(&lib, sources.join("libdetector-e2e-rpm.so.1")).unwrap();
    std::fs::copy(system_loader(), sources.join("ld-linux-x86-64.so.2")).unwrap();
    let mut install = vec![
        "mkdir -p %{buildroot}/usr/bin %{buildroot}/usr/lib64 %{buildroot}/lib64 %{buildroot}/usr/lib/x86_64-linux-gnu".to_owned(),
        "cp %{_sourcedir}/ssh %{buildroot}/usr/bin/ssh".to_owned(),
        format!("cp %{{_sourcedir}}/libdetector-e2e-rpm.so.1 %{{buildroot}}{LIB}"),
        "cp %{_sourcedir}/ld-linux-x86-64.so.2 %{buildroot}/lib64/".to_owned(),
    ];
    let mut files = vec![
        "/usr/bin/ssh".to_owned(),
        LIB.to_owned(),
        "/lib64/ld-linux-x86-64.so.2".to_owned(),
    ];
    let deps = needed(&program);
    assert!(!deps.is_empty(), "ldd found nothing for {program:?}");
    for dep in deps {
        let name = dep.file_name().unwrap().to_str().unwrap().to_owned();
        std::fs::copy(&dep, sources.join(&name)).unwrap();
        install.push(format!("cp %{{_sourcedir}}/{name} %{{buildroot}}{LIBDIR}/"));
        files.push(format!("{LIBDIR}/{name}"));
    }
    let spec = format!(
        "Name: detector-e2e-rpm\nVersion: 1.0\nRelease: 1\nSummary: detector test\nLicense: MIT\n\
         BuildArch: x86_64\nAutoReqProv: no\n%description\ndetector's rpm provenance test\n\
         %install\n{}\n%files\n%attr(0755,root,root) /usr/bin/ssh\n{}\n",
        install.join("\n"),
        files[1..].join("\n")
    );
    let spec_path = dir.path("detector-e2e-rpm.spec");
    std::fs::write(&spec_path, spec).unwrap();
    let top = dir.path("top");
    run(Command::new("rpmbuild")
        .arg("-bb")
        .args(["--define", &format!("_topdir {}", top.display())])
        .args(["--define", &format!("_sourcedir {}", sources.display())])
        .args(["--define", "__os_install_post %{nil}"])
        .args(["--define", "debug_package %{nil}"])
        .args(["--define", "_build_id_links none"])
        .arg(&spec_path));
    let rpm = top.join("RPMS/x86_64/detector-e2e-rpm-1.0-1.x86_64.rpm");
    assert!(rpm.is_file(), "rpmbuild made no {rpm:?}");
    rpm
}

/// The program run chrooted into `root`, loading `lib` (a path inside the root) and waiting
/// until dropped (killed then).
struct Chrooted(Child);

impl Chrooted {
    fn start(root: &Path, lib: &str) -> Chrooted {
        let mut child = Command::new("chroot")
            .arg(root)
            .args(["/usr/bin/ssh", "path", lib])
            .env("LOADLIB_WAIT", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("chroot");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let mut c = Chrooted(child);
        assert_eq!(
            line.trim(),
            "loaded",
            "the chrooted program did not load {lib}"
        );
        assert!(c.0.try_wait().unwrap().is_none());
        c.0.stdout.take();
        c
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Chrooted {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn about(a: &Value, pid: u32, lib: &str) -> bool {
    a["process"]["pid"] == pid
        && s(a, "library.path").ends_with(lib)
        && has(a, "detections", "unverified_object")
}

#[test]
fn rpm_vouches_for_its_package_in_a_chroot_and_names_it_when_modified() {
    let dir = TempDir::new("rpm");
    let package = build_package(&dir);
    let root = Path::new(ROOT);
    let _ = std::fs::remove_dir_all(root);
    let _root = Restore::path(root);
    std::fs::create_dir_all(root).unwrap();
    run(Command::new("rpm")
        .arg("--root")
        .arg(root)
        .args(["--dbpath", "/var/lib/rpm", "--nodeps", "-i"])
        .arg(&package));
    assert!(
        root.join("var/lib/rpm/rpmdb.sqlite").is_file(),
        "rpm made no sqlite database"
    );
    let cfg = dir.path("detector.toml");
    std::fs::write(&cfg, "[thresholds]\nstats_interval_secs = 1\n").unwrap();
    let d = Daemon::start_with(&["--config", cfg.to_str().unwrap()]);

    // Packaged and unchanged: vouched for by the root's rpm database, nothing raised.
    let benign = Chrooted::start(root, LIB);
    let pid = benign.pid();
    std::thread::sleep(Duration::from_millis(2000));
    let loud = d.alerts_matching(|a| {
        a.get("rule").is_some() && severity_rank(a) >= 2 && a["process"]["pid"] == pid
    });
    assert!(
        loud.is_empty(),
        "the packaged program and library raised: {loud:#?}"
    );
    drop(benign);

    // The same library modified in place (renamed over, as an attacker would).
    let inside = root.join(&LIB[1..]);
    let mut bytes = std::fs::read(&inside).unwrap();
    bytes.extend_from_slice(b"\0detector-e2e-modified");
    let side = inside.with_file_name("libdetector-e2e-rpm.so.1.new");
    std::fs::write(&side, &bytes).unwrap();
    std::fs::rename(&side, &inside).unwrap();
    let modified = Chrooted::start(root, LIB);
    let pid = modified.pid();
    let a = d.expect_alert("the modified packaged library in the chrooted ssh", |a| {
        about(a, pid, LIB)
    });
    assert!(severity_rank(&a) >= 3, "{a:#}");
    assert_eq!(a["library"]["verified"], false, "{a:#}");
    assert_eq!(s(&a, "library.package"), PACKAGE, "{a:#}");
    assert!(
        has(&a, "library.unsafe_reasons", "modified_since_package"),
        "{a:#}"
    );
    assert!(has(&a, "detections", "credential_process"), "{a:#}");
    drop(modified);

    // A library no package installed.
    let unpackaged = "/usr/lib64/libdetector-e2e-unpackaged.so";
    let plain = gcc(&dir, "plain_ext.c", "libunpackaged.so", true);
    std::fs::copy(&plain, root.join(&unpackaged[1..])).unwrap();
    let other = Chrooted::start(root, unpackaged);
    let pid = other.pid();
    let a = d.expect_alert("the unpackaged library in the chrooted ssh", |a| {
        about(a, pid, unpackaged)
    });
    assert!(severity_rank(&a) >= 3, "{a:#}");
    assert_eq!(a["library"]["verified"], false, "{a:#}");
    assert!(
        has(&a, "library.unsafe_reasons", "not_from_package"),
        "{a:#}"
    );
    drop(other);
    d.stop();
}
