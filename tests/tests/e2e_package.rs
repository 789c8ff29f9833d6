//! The Debian package on this host: `apt-get install ./detector_….deb`, the installed binary,
//! man page and completions, then `apt-get purge detector`, which must leave the file system as
//! it found it. The package is `DETECTOR_DEB` (set by `cargo xtask test`) or the one
//! target/debian/ holds (`cargo xtask package`). A guard purges the package whatever happens.
use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use detector_tests::require_root;

/// Where a package's files, its maintainer scripts' traces (deb-systemd-helper's enablement
/// links and state) and dpkg's record of it live.
const WATCHED: &[&str] = &[
    "/etc",
    "/usr",
    "/var/lib/systemd",
    "/var/lib/dpkg/info",
    "/var/log/detector",
];

fn deb() -> PathBuf {
    if let Some(p) = std::env::var_os("DETECTOR_DEB") {
        return PathBuf::from(p);
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debian");
    let debs: Vec<PathBuf> = fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    match debs.as_slice() {
        [one] => one.clone(),
        _ => panic!(
            "no single .deb in {} ({debs:?}): run `cargo xtask package` or set DETECTOR_DEB",
            dir.display()
        ),
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}:\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "detector"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("ok installed"))
}

fn purge() -> Output {
    run(Command::new("apt-get").args(["purge", "-y", "-q", "detector"]))
}

/// Purges the package when the test ends, passed or not.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        if installed() || std::path::Path::new("/var/lib/dpkg/info/detector.list").exists() {
            let _ = Command::new("apt-get")
                .args(["purge", "-y", "-q", "detector"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .output();
        }
    }
}

/// Every path (files, directories, links) under `WATCHED`.
fn snapshot() -> BTreeSet<PathBuf> {
    fn walk(p: &Path, out: &mut BTreeSet<PathBuf>) {
        out.insert(p.to_path_buf());
        let Ok(meta) = fs::symlink_metadata(p) else {
            return;
        };
        if meta.is_dir() {
            for e in fs::read_dir(p).into_iter().flatten().flatten() {
                walk(&e.path(), out);
            }
        }
    }
    let mut out = BTreeSet::new();
    for w in WATCHED {
        if Path::new(w).exists() {
            walk(Path::new(w), &mut out);
        }
    }
    out
}

/// Of `paths`, those no installed package other than detector owns (another package installed
/// meanwhile by someone else is not the purge's leftover), Python's byte-code caches (written by
/// any python3 run meanwhile) left out.
fn unowned(paths: impl Iterator<Item = PathBuf>) -> Vec<PathBuf> {
    paths
        .filter(|p| !p.components().any(|c| c.as_os_str() == "__pycache__"))
        .filter(|p| {
            let out = Command::new("dpkg-query").arg("-S").arg(p).output();
            match out {
                Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .all(|l| l.starts_with("detector:") || l.starts_with("detector ")),
                _ => true,
            }
        })
        .collect()
}

/// Processes running /usr/bin/detector.
fn installed_daemons() -> Vec<u32> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_link(format!("/proc/{pid}/exe"))
                .is_ok_and(|p| p == Path::new("/usr/bin/detector"))
        })
        .collect()
}

#[test]
fn install_use_and_purge_the_deb() {
    require_root();
    let deb = deb();
    assert!(
        !installed(),
        "detector is installed on this machine already; this test installs and purges it"
    );
    let before = snapshot();
    let _guard = Installed;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .arg(&deb));
    assert!(installed());

    // What the package installed, from dpkg's own list.
    let list =
        String::from_utf8(run(Command::new("dpkg").args(["-L", "detector"])).stdout).unwrap();
    for f in [
        "/usr/bin/detector",
        "/lib/systemd/system/detector.service",
        "/etc/detector/detector.toml",
        "/usr/share/man/man1/detector.1.gz",
        "/usr/share/bash-completion/completions/detector",
        "/usr/share/zsh/vendor-completions/_detector",
        "/usr/share/fish/vendor_completions.d/detector.fish",
        "/usr/share/doc/detector/README.md",
        "/usr/share/doc/detector/changelog.Debian.gz",
        "/usr/share/doc/detector/copyright",
    ] {
        assert!(
            list.lines().any(|l| l == f),
            "dpkg -L lists no {f}:\n{list}"
        );
        assert!(Path::new(f).is_file(), "{f} is not installed");
    }
    let conffiles = String::from_utf8(
        run(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "detector"])).stdout,
    )
    .unwrap();
    assert!(
        conffiles.contains("/etc/detector/detector.toml"),
        "conffiles: {conffiles}"
    );
    let unit = fs::read_to_string("/lib/systemd/system/detector.service").unwrap();
    assert!(unit.contains("\nExecStart=/usr/bin/detector run"), "{unit}");

    // Without systemd as PID 1 the postinst records the enablement and starts nothing.
    let pid1 = fs::read_to_string("/proc/1/comm").unwrap();
    let wants = Path::new("/etc/systemd/system/multi-user.target.wants/detector.service");
    if !Path::new("/run/systemd/system").exists() {
        assert!(
            installed_daemons().is_empty(),
            "the postinst started the daemon though PID 1 is {}",
            pid1.trim()
        );
    }
    assert!(
        fs::symlink_metadata(wants).is_ok(),
        "the postinst did not enable the unit ({} missing)",
        wants.display()
    );

    // The installed binary works.
    let check = run(Command::new("/usr/bin/detector").args(["check", "--json"]));
    let report: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert!(
        report["capture_path"].is_string(),
        "detector check --json: {report}"
    );

    // man finds and formats the page.
    let man = run(Command::new("man")
        .args(["-P", "cat", "detector"])
        .env("MANWIDTH", "80"));
    let page = String::from_utf8_lossy(&man.stdout);
    assert!(
        page.contains("SYNOPSIS") && page.contains("detector") && page.contains("completions"),
        "man detector:\n{page}"
    );

    // bash loads the completions and completes the subcommands from them.
    let completion = run(Command::new("bash").args([
        "-c",
        "source /usr/share/bash-completion/completions/detector && complete -p detector && \
         COMP_WORDS=(detector sc) COMP_CWORD=1 COMP_LINE='detector sc' COMP_POINT=11 && \
         _detector detector sc detector && echo \"words: ${COMPREPLY[*]}\"",
    ]));
    let text = String::from_utf8_lossy(&completion.stdout);
    assert!(
        text.contains("-F _detector detector") && text.contains("words: scan"),
        "bash completion:\n{text}"
    );
    for f in [
        "/usr/share/zsh/vendor-completions/_detector",
        "/usr/share/fish/vendor_completions.d/detector.fish",
    ] {
        let script = fs::read_to_string(f).unwrap();
        assert!(script.contains("scan"), "{f} does not complete scan");
    }

    // A file of the admin's in /etc/detector and an alert log: purge removes them too.
    fs::write("/etc/detector/local.toml", "# the admin's\n").unwrap();
    fs::create_dir_all("/var/log/detector").unwrap();
    fs::write("/var/log/detector/alerts.jsonl", "{}\n").unwrap();

    purge();
    assert!(!installed());
    let after = snapshot();
    let left = unowned(after.difference(&before).cloned());
    let gone = unowned(before.difference(&after).cloned());
    assert!(
        left.is_empty() && gone.is_empty(),
        "apt-get purge left {left:?} behind and removed {gone:?}"
    );
    assert!(fs::symlink_metadata(wants).is_err());
}
