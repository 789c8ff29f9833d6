//! `cargo xtask vm-test`: the LD_PRELOAD atomic tests on real Debian kernels, under qemu.
//!
//! For each kernel: `apt-get download` its Debian package, extract the vmlinuz, boot it (KVM where
//! it works, else TCG) with an initramfs holding busybox-static, the detector, the real cat,
//! ls, whoami and ssh with their libraries, a gcc-built read() hook library and the runner
//! (tests/vm/init.sh, as /init), and read the runner's RESULT lines from the serial console.
//! Prints a kernel x test table, keeps every serial log under target/vm-test/, and fails when
//! any test does.
use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

/// The runner's tests, in the order it prints them.
const TESTS: &[&str] = &[
    "armed",
    "read_hook_cat",
    "atomic_1_ld_so_preload",
    "atomic_1_write",
    "atomic_2_ls",
    "ssh",
    "clean_stop",
];
/// Programs the runner starts (dynamically linked, so LD_PRELOAD and ld.so.preload apply).
const PROGRAMS: &[&str] = &["cat", "ls", "whoami", "ssh"];
/// One boot, start to power-off, at most (TCG is slow; a hung kernel must not hang CI).
const BOOT_TIMEOUT: Duration = Duration::from_secs(900);

pub fn run(root: &Path, kernels: &[String]) -> Result<()> {
    let kernels: Vec<String> = if kernels.is_empty() {
        vec!["6.1".into(), "6.12".into()]
    } else {
        kernels.to_vec()
    };
    let work = root.join("target/vm-test");
    fs::create_dir_all(&work)?;
    let initrd = initramfs(root, &work)?;
    let mut rows = Vec::new();
    for k in &kernels {
        let vmlinuz = kernel(&work, k)?;
        let log = work.join(format!("serial-{k}.log"));
        say(&format!("booting {} ({})", k, vmlinuz.display()));
        let started = Instant::now();
        let accel = boot(&vmlinuz, &initrd, &log)?;
        say(&format!(
            "{k}: powered off after {:.0} s ({accel})",
            started.elapsed().as_secs_f64()
        ));
        let mut row = Row::parse(k, &fs::read_to_string(&log).unwrap_or_default());
        row.accel = accel;
        rows.push(row);
    }
    print_table(&rows);
    let failed: Vec<String> = rows
        .iter()
        .flat_map(|r| {
            TESTS
                .iter()
                .filter(|t| !r.passed.contains(**t))
                .map(move |t| format!("{} {t}", r.kernel))
        })
        .collect();
    say(&format!(
        "serial logs: {}/serial-<kernel>.log",
        work.display()
    ));
    if !failed.is_empty() {
        bail!("vm-test failed: {}", failed.join(", "));
    }
    Ok(())
}

struct Row {
    kernel: String,
    accel: &'static str,
    release: String,
    capture: String,
    lsm: String,
    fentry: String,
    passed: BTreeSet<String>,
}

impl Row {
    fn parse(kernel: &str, log: &str) -> Row {
        let mut row = Row {
            kernel: kernel.to_owned(),
            accel: "?",
            release: "?".into(),
            capture: "none".into(),
            lsm: "?".into(),
            fentry: "?".into(),
            passed: BTreeSet::new(),
        };
        for line in log.lines() {
            let line = line.trim_end_matches('\r');
            if let Some(rest) = line.strip_prefix("RESULT ") {
                let mut parts = rest.split_whitespace();
                if let (Some(name), Some("pass")) = (parts.next(), parts.next()) {
                    row.passed.insert(name.to_owned());
                }
            } else if let Some(rest) = line.strip_prefix("VM kernel ") {
                row.release = rest.split_whitespace().next().unwrap_or("?").to_owned();
            } else if let Some(json) = line.strip_prefix("VM check ") {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(json) {
                    row.capture = v["capture_path"].as_str().unwrap_or("none").to_owned();
                    for c in v["checks"].as_array().into_iter().flatten() {
                        let yes = if c["available"] == true { "yes" } else { "no" };
                        match c["name"].as_str() {
                            Some("lsm") => row.lsm = yes.into(),
                            Some("fentry") => row.fentry = yes.into(),
                            _ => {}
                        }
                    }
                }
            }
        }
        row
    }
}

fn print_table(rows: &[Row]) {
    let mut header = vec![
        "kernel",
        "release",
        "qemu",
        "capture path",
        "bpf LSM",
        "fentry",
    ];
    header.extend(TESTS);
    let mut lines = vec![header.iter().map(|s| s.to_string()).collect::<Vec<_>>()];
    for r in rows {
        let mut cells = vec![
            r.kernel.clone(),
            r.release.clone(),
            r.accel.to_owned(),
            r.capture.clone(),
            r.lsm.clone(),
            r.fentry.clone(),
        ];
        cells.extend(TESTS.iter().map(|t| {
            if r.passed.contains(*t) {
                "pass"
            } else {
                "FAIL"
            }
            .to_owned()
        }));
        lines.push(cells);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| lines.iter().map(|l| l[i].len()).max().unwrap_or(0))
        .collect();
    println!();
    for l in &lines {
        let cells: Vec<String> = l
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
    println!();
}

/// The Debian package for `version` ("6.1": the newest linux-image-6.1.0-N-cloud-amd64; "6.12":
/// the newest linux-image-6.12.P+deb12-amd64), downloaded and extracted once; its vmlinuz.
fn kernel(work: &Path, version: &str) -> Result<PathBuf> {
    let mut names = candidates(version)?;
    if names.is_empty() {
        say("apt-get update (no kernel packages in the package lists)");
        sh(Command::new("apt-get").args(["update", "-q"]))?;
        names = candidates(version)?;
    }
    let debs = work.join("debs");
    fs::create_dir_all(&debs)?;
    for name in names.iter().rev().take(3) {
        let dir = work.join(format!("x-{name}"));
        if let Some(v) = vmlinuz_in(&dir) {
            return Ok(v);
        }
        let existing = find_deb(&debs, name);
        let deb = match existing {
            Some(d) => d,
            None => {
                say(&format!("apt-get download {name}"));
                let ok = Command::new("apt-get")
                    .args(["download", "-q", name])
                    .current_dir(&debs)
                    .status()
                    .is_ok_and(|s| s.success());
                match (ok, find_deb(&debs, name)) {
                    (true, Some(d)) => d,
                    _ => {
                        say(&format!(
                            "{name} could not be downloaded; trying an older one"
                        ));
                        continue;
                    }
                }
            }
        };
        sh(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&dir))?;
        if let Some(v) = vmlinuz_in(&dir) {
            return Ok(v);
        }
        bail!("{} holds no boot/vmlinuz-*", deb.display());
    }
    bail!("no Debian kernel package for {version} could be downloaded (looked for: {names:?})")
}

/// Package names for `version`, oldest to newest.
fn candidates(version: &str) -> Result<Vec<String>> {
    let out = Command::new("apt-cache")
        .args(["pkgnames", "linux-image-"])
        .output()
        .context("running apt-cache")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut found: Vec<(u64, String)> = text
        .lines()
        .filter_map(|name| {
            let n = match version {
                "6.1" => name
                    .strip_prefix("linux-image-6.1.0-")?
                    .strip_suffix("-cloud-amd64")?,
                "6.12" => name
                    .strip_prefix("linux-image-6.12.")?
                    .strip_suffix("+deb12-amd64")?,
                _ => return None,
            };
            Some((n.parse().ok()?, name.to_owned()))
        })
        .collect();
    if !matches!(version, "6.1" | "6.12") {
        bail!("unknown kernel {version}: this test knows 6.1 and 6.12");
    }
    found.sort();
    Ok(found.into_iter().map(|(_, n)| n).collect())
}

fn find_deb(dir: &Path, name: &str) -> Option<PathBuf> {
    find_file(dir, |f| {
        f.starts_with(&format!("{name}_")) && f.ends_with(".deb")
    })
}

fn vmlinuz_in(dir: &Path) -> Option<PathBuf> {
    find_file(&dir.join("boot"), |f| f.starts_with("vmlinuz-"))
}

/// The first entry of `dir` whose file name satisfies `pred`.
fn find_file(dir: &Path, pred: impl Fn(&str) -> bool) -> Option<PathBuf> {
    fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|f| f.to_str()).is_some_and(&pred))
}

/// Builds target/vm-test/initrd.gz from scratch (it holds this build's detector).
fn initramfs(root: &Path, work: &Path) -> Result<PathBuf> {
    let tree = work.join("root");
    if tree.exists() {
        fs::remove_dir_all(&tree)?;
    }
    for d in [
        "bin", "sbin", "usr/bin", "etc", "proc", "sys", "dev", "tmp", "root", "payload",
    ] {
        fs::create_dir_all(tree.join(d))?;
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .context("busybox not found (package busybox-static)")?;
    copy(busybox, &tree.join("bin/busybox"))?;
    // /init's interpreter; it installs the other applets itself.
    std::os::unix::fs::symlink("busybox", tree.join("bin/sh"))?;
    let detector = root.join("target/release/detector");
    copy(&detector, &tree.join("bin/detector"))?;
    let mut dynamic = vec![detector];
    for p in PROGRAMS {
        let path = which(p)?;
        copy(&path, &tree.join(format!("usr/bin/{p}")))?;
        dynamic.push(path);
    }
    let hook = tree.join("payload/libhook.so");
    sh(Command::new("gcc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&hook)
        .arg(root.join("tests/fixtures/read_hook.c"))
        .arg("-ldl"))?;
    dynamic.push(hook);
    let mut libs = BTreeSet::new();
    for bin in &dynamic {
        libs.extend(shared_libraries(bin)?);
    }
    for lib in &libs {
        copy(lib, &tree.join(lib.strip_prefix("/").unwrap_or(lib)))?;
    }
    fs::write(tree.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    fs::write(tree.join("etc/group"), "root:x:0:\n")?;
    fs::write(tree.join("etc/hostname"), "vm-test\n")?;
    let init = tree.join("init");
    copy(&root.join("tests/vm/init.sh"), &init)?;
    fs::set_permissions(&init, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let initrd = work.join("initrd.gz");
    sh(Command::new("sh")
        .arg("-c")
        .arg("find . -print0 | cpio --null -o -H newc --quiet | gzip -1 > \"$0\"")
        .arg(&initrd)
        .current_dir(&tree))?;
    say(&format!(
        "built {} ({} libraries, {} KiB)",
        initrd.display(),
        libs.len(),
        fs::metadata(&initrd)?.len() / 1024
    ));
    Ok(initrd)
}

/// The absolute paths ldd names for `bin` (its libraries and the loader).
fn shared_libraries(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .with_context(|| format!("running ldd {}", bin.display()))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let path = match l.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

fn which(program: &str) -> Result<PathBuf> {
    ["/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(program))
        .find(|p| p.exists())
        .with_context(|| format!("{program} not found in /usr/bin or /bin"))
}

/// Copies the content (following symlinks) with the mode.
fn copy(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// Boots with KVM when /dev/kvm is there, and again with TCG when KVM fails (nested KVM often
/// does); returns the accelerator that ran the tests.
fn boot(vmlinuz: &Path, initrd: &Path, log: &Path) -> Result<&'static str> {
    if Path::new("/dev/kvm").exists() {
        match boot_with(vmlinuz, initrd, log, &["-accel", "kvm", "-cpu", "host"]) {
            Ok(()) if fs::read_to_string(log).is_ok_and(|l| l.contains("VM kernel ")) => {
                return Ok("kvm")
            }
            Ok(()) => say("KVM booted nothing; falling back to TCG"),
            Err(e) => say(&format!("KVM failed ({e:#}); falling back to TCG")),
        }
    }
    boot_with(vmlinuz, initrd, log, &["-accel", "tcg", "-cpu", "max"])?;
    Ok("tcg")
}

fn boot_with(vmlinuz: &Path, initrd: &Path, log: &Path, accel: &[&str]) -> Result<()> {
    let _ = fs::remove_file(log);
    let mut child = Command::new("qemu-system-x86_64")
        .args(accel)
        .args(["-m", "1024", "-smp", "2"])
        .args(["-display", "none", "-monitor", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 lsm=bpf panic=-1 loglevel=4"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting qemu-system-x86_64 (package qemu-system-x86)")?;
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                bail!(
                    "qemu exited with {status}: {}",
                    err.lines().next().unwrap_or("")
                );
            }
            return Ok(());
        }
        if started.elapsed() > BOOT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            say(&format!(
                "the VM did not power off within {} s; killed",
                BOOT_TIMEOUT.as_secs()
            ));
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn sh(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn say(msg: &str) {
    println!("[vm-test] {msg}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_serial_log() {
        let log = "VM kernel 6.1.0-56-cloud-amd64 lsm=bpf\r\n\
VM check {\"capture_path\":\"tracepoints\",\"checks\":[{\"name\":\"lsm\",\"available\":true},{\"name\":\"fentry\",\"available\":false}]}\n\
RESULT armed pass\nRESULT ssh FAIL\nRESULT read_hook_cat pass\n";
        let r = Row::parse("6.1", log);
        assert_eq!(r.release, "6.1.0-56-cloud-amd64");
        assert_eq!(
            (r.capture.as_str(), r.lsm.as_str(), r.fentry.as_str()),
            ("tracepoints", "yes", "no")
        );
        assert!(r.passed.contains("armed") && r.passed.contains("read_hook_cat"));
        assert!(!r.passed.contains("ssh"));
    }
}
