//! `cargo xtask vm-test --systemd`: the .deb under a real systemd, on Debian kernels 6.1 and 6.12.
//!
//! A Debian 12 root filesystem is built with mmdebstrap from Debian's packages (`PACKAGES`), plus
//! `vmtest.service`, which runs the checks at boot, and some masked units; it is kept as an ext4
//! image in target/vm-systemd/, named after a hash of that recipe, and built again only when the
//! recipe changes. Each kernel (fetched as `vm-test` fetches it) boots it from a small busybox
//! initramfs (tests/vm/systemd/init.sh: the modules for a virtio disk and ext4, then
//! switch_root to systemd) with the image as its first virtio disk, written through a qemu
//! snapshot (the image stays as built), and a second disk holding the payload: the .deb,
//! read_hook.so (tests/fixtures/read_hook.c, built here with gcc) and the checks
//! (tests/vm/systemd/run.sh). The checks print `CHECK <name> pass|FAIL ...` lines on the serial
//! console; this prints a check x kernel table and fails when any check in `CHECKS` failed or
//! has no result. KVM or TCG as `vm-test` decides (`DETECTOR_VM_KVM=off`: TCG).
use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use crate::vm::{self, Kvm, Machine};

/// What mmdebstrap installs on top of the `apt` variant (Essential packages and apt).
const PACKAGES: &[&str] = &[
    "systemd-sysv",
    "dbus",
    "rsyslog",
    "openssh-client",
    "openssh-server",
    "procps",
    "jq",
];
const SUITE: &str = "bookworm";
/// Debian's mirror, as sources.list lines (mmdebstrap takes each argument as one).
const MIRRORS: &[&str] = &[
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
];
const HOSTNAME: &str = "vm-systemd\n";
/// The root filesystem is the first virtio disk, mounted read-write by the initramfs already.
const FSTAB: &str = "/dev/vda / ext4 rw 0 0\n";
/// The unit that runs the checks once the system is up, from the payload disk.
const VMTEST_UNIT: &str = "[Unit]
Description=detector systemd VM test (tests/vm/systemd/run.sh)
After=multi-user.target rsyslog.service ssh.service

[Service]
Type=simple
ExecStart=/bin/sh -c 'mount -o ro /dev/vdb /mnt && exec /bin/sh /mnt/run.sh'
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
TTYReset=no
TTYVHangup=no

[Install]
WantedBy=multi-user.target
";
/// Units masked in the guest: the serial login prompt (the console carries the results), and
/// timers whose work is of no use in a guest that lives minutes.
const MASKED: &[&str] = &[
    "serial-getty@ttyS0.service",
    "getty@tty1.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
];
/// Room left free on the root image for the package, the journal and the logs.
const FREE_MIB: u64 = 768;
/// The kernel modules the initramfs loads, in load order (each after those its `depends=` names;
/// those built in are skipped): a virtio PCI disk and ext4.
const MODULES: &[&str] = &[
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "virtio_blk",
    "crc16",
    "crc32c_generic",
    "mbcache",
    "jbd2",
    "ext4",
];
/// The checks run.sh makes, in order; each must pass on each kernel.
const CHECKS: &[&str] = &[
    "pid1",
    "install",
    "ready",
    "journal_cat",
    "journal_ssh",
    "devshm",
    "syslog",
    "reload",
    "stop",
    "restart",
    "selftest",
    "purge",
];
/// One boot, start to power-off, at most.
const BOOT_TIMEOUT: Duration = Duration::from_secs(1200);

pub fn run(root: &Path, deb: &Path, kernels: &[String]) -> Result<()> {
    let kernels: Vec<String> = if kernels.is_empty() {
        vec!["6.1".into(), "6.12".into()]
    } else {
        kernels.to_vec()
    };
    let work = root.join("target/vm-systemd");
    fs::create_dir_all(&work)?;
    let image = rootfs(&work)?;
    let payload = payload(root, &work, deb)?;
    let initrd = initramfs(root, &work)?;
    let kernels_dir = root.join("target/vm-test");
    fs::create_dir_all(&kernels_dir)?;
    let mut kvm = Kvm::at_start();
    say(&format!("accelerator: {}", kvm.describe()));
    let mut rows = Vec::new();
    for k in &kernels {
        let vmlinuz = vm::kernel(&kernels_dir, k)?;
        let initrd = vm::with_modules(&work, k, &vmlinuz, &initrd, MODULES)?;
        let log = work.join(format!("serial-{k}.log"));
        let machine = Machine {
            vmlinuz: &vmlinuz,
            initrd: &initrd,
            // A soft lockup ends the boot at once, with every CPU's backtrace (which the
            // checks' script lets reach the console).
            append: "systemd.show_status=error softlockup_panic=1 softlockup_all_cpu_backtrace=1"
                .into(),
            extra: vec![
                "-drive".into(),
                format!("file={},format=raw,if=virtio,snapshot=on", image.display()),
                "-drive".into(),
                format!(
                    "file={},format=raw,if=virtio,readonly=on",
                    payload.display()
                ),
            ],
            memory_mib: 1536,
            timeout: BOOT_TIMEOUT,
        };
        say(&format!("booting {k} ({})", vmlinuz.display()));
        let started = Instant::now();
        let (accel, why) = vm::boot(k, &machine, &log, &work, &mut kvm)?;
        let secs = started.elapsed().as_secs();
        say(&format!("{k}: done after {secs} s with {accel} ({why})"));
        let text = fs::read_to_string(&log).unwrap_or_default();
        if !text.contains("SYSTEMD done") {
            say(&format!(
                "the {k} guest ended before its checks did; the last lines of {}:",
                log.display()
            ));
            for l in vm::last_lines(&text, 40) {
                println!("    | {l}");
            }
        }
        for l in text.lines().filter_map(|l| l.strip_prefix("SECURITY ")) {
            if l.contains("Overall exposure level") {
                say(&format!("{k}: systemd-analyze security: {}", l.trim()));
            }
        }
        rows.push(Row {
            kernel: k.clone(),
            accel,
            secs,
            results: parse(&text),
        });
    }
    print_table(&rows);
    say(&format!(
        "serial logs: {}/serial-<kernel>.log",
        work.display()
    ));
    let failed: Vec<String> = rows
        .iter()
        .flat_map(|r| {
            CHECKS
                .iter()
                .filter(|c| r.results.get(**c).is_none_or(|(pass, _)| !pass))
                .map(move |c| format!("{} {c}", r.kernel))
        })
        .collect();
    if !failed.is_empty() {
        bail!("vm-test --systemd failed: {}", failed.join(", "));
    }
    Ok(())
}

struct Row {
    kernel: String,
    accel: &'static str,
    secs: u64,
    /// check -> (passed, "<seconds>s <detail>").
    results: BTreeMap<String, (bool, String)>,
}

/// The `CHECK <name> pass|FAIL <rest>` lines of a serial log.
fn parse(log: &str) -> BTreeMap<String, (bool, String)> {
    log.lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("CHECK "))
        .filter_map(|rest| {
            let mut parts = rest.splitn(3, ' ');
            let (name, verdict) = (parts.next()?, parts.next()?);
            let detail = parts.next().unwrap_or("").to_owned();
            Some((name.to_owned(), (verdict == "pass", detail)))
        })
        .collect()
}

fn print_table(rows: &[Row]) {
    println!();
    for r in rows {
        println!(
            "kernel {} ({}, {} s from boot to power-off)",
            r.kernel, r.accel, r.secs
        );
        for c in CHECKS {
            match r.results.get(*c) {
                Some((true, d)) => println!("  {c:<12} pass  {d}"),
                Some((false, d)) => println!("  {c:<12} FAIL  {d}"),
                None => println!("  {c:<12} FAIL  (no result)"),
            }
        }
    }
    println!();
}

/// The recipe the root image is built from (everything `customize` writes included); its hash
/// names the image.
fn recipe() -> String {
    format!(
        "suite {SUITE}\nmirrors {MIRRORS:?}\npackages {PACKAGES:?}\nmasked {MASKED:?}\n\
         free {FREE_MIB}\nhostname {HOSTNAME}fstab {FSTAB}unit {VMTEST_UNIT}"
    )
}

/// target/vm-systemd/rootfs-<hash>.img: built with mmdebstrap when missing, else reused; older
/// images are removed.
fn rootfs(work: &Path) -> Result<PathBuf> {
    let key = sha256(recipe().as_bytes())?;
    let name = format!("rootfs-{}.img", &key[..16]);
    let image = work.join(&name);
    if image.exists() {
        say(&format!(
            "root filesystem: {} (cached; its recipe is unchanged)",
            image.display()
        ));
        return Ok(image);
    }
    for e in fs::read_dir(work)?.flatten() {
        let f = e.file_name().to_string_lossy().into_owned();
        if f.starts_with("rootfs-") && f != name {
            say(&format!("removing {f} (an older recipe)"));
            let p = e.path();
            if p.is_dir() {
                fs::remove_dir_all(&p)?;
            } else {
                fs::remove_file(&p)?;
            }
        }
    }
    let dir = work.join(format!("rootfs-{}.d", &key[..16]));
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    say(&format!(
        "mmdebstrap {SUITE} with {} into {} (a few minutes, once per recipe)",
        PACKAGES.join(","),
        dir.display()
    ));
    let started = Instant::now();
    vm::sh(
        Command::new("mmdebstrap")
            .args(["--variant=apt", "--format=directory", "--quiet"])
            .arg(format!("--include={}", PACKAGES.join(",")))
            .arg("--aptopt=Acquire::Check-Valid-Until \"false\"")
            .arg(SUITE)
            .arg(&dir)
            .args(MIRRORS),
    )?;
    customize(&dir)?;
    let size_mib = vm::du_kib(&dir)? / 1024 + FREE_MIB;
    let partial = work.join(format!("{name}.partial"));
    vm::sh(
        Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-L", "vmroot", "-d"])
            .arg(&dir)
            .arg(&partial)
            .arg(format!("{size_mib}M"))
            .stdout(Stdio::null()),
    )?;
    fs::rename(&partial, &image)?;
    fs::remove_dir_all(&dir)?;
    say(&format!(
        "built {} ({size_mib} MiB) in {} s",
        image.display(),
        started.elapsed().as_secs()
    ));
    Ok(image)
}

/// What the guest needs beyond its packages: a name, its fstab, the checks' unit, masked units.
fn customize(dir: &Path) -> Result<()> {
    fs::write(dir.join("etc/hostname"), HOSTNAME)?;
    fs::write(dir.join("etc/fstab"), FSTAB)?;
    let system = dir.join("etc/systemd/system");
    fs::write(system.join("vmtest.service"), VMTEST_UNIT)?;
    let wants = system.join("multi-user.target.wants");
    fs::create_dir_all(&wants)?;
    std::os::unix::fs::symlink("../vmtest.service", wants.join("vmtest.service"))?;
    for unit in MASKED {
        let link = system.join(unit);
        if fs::symlink_metadata(&link).is_ok() {
            fs::remove_file(&link)?;
        }
        std::os::unix::fs::symlink("/dev/null", link)?;
    }
    Ok(())
}

/// target/vm-systemd/payload.img (ext2): the .deb, read_hook.so and run.sh.
fn payload(root: &Path, work: &Path, deb: &Path) -> Result<PathBuf> {
    let dir = work.join("payload");
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    fs::create_dir_all(&dir)?;
    vm::copy(deb, &dir.join(deb.file_name().context("the .deb's name")?))?;
    vm::copy(&root.join("tests/vm/systemd/run.sh"), &dir.join("run.sh"))?;
    vm::sh(
        Command::new("gcc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(dir.join("read_hook.so"))
            .arg(root.join("tests/fixtures/read_hook.c"))
            .arg("-ldl"),
    )?;
    let image = work.join("payload.img");
    let size_kib = vm::du_kib(&dir)? * 5 / 4 + 4096;
    vm::sh(
        Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext2", "-E", "root_owner=0:0", "-d"])
            .arg(&dir)
            .arg(&image)
            .arg(format!("{size_kib}k"))
            .stdout(Stdio::null()),
    )?;
    Ok(image)
}

/// target/vm-systemd/initrd.gz: busybox-static and tests/vm/systemd/init.sh as /init.
fn initramfs(root: &Path, work: &Path) -> Result<PathBuf> {
    let tree = work.join("initramfs");
    if tree.exists() {
        fs::remove_dir_all(&tree)?;
    }
    for d in ["bin", "proc", "sys", "dev", "newroot"] {
        fs::create_dir_all(tree.join(d))?;
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .context("busybox not found (package busybox-static)")?;
    vm::copy(busybox, &tree.join("bin/busybox"))?;
    std::os::unix::fs::symlink("busybox", tree.join("bin/sh"))?;
    let init = tree.join("init");
    vm::copy(&root.join("tests/vm/systemd/init.sh"), &init)?;
    fs::set_permissions(&init, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let initrd = work.join("initrd.gz");
    vm::sh(
        Command::new("sh")
            .arg("-c")
            .arg("find . -print0 | cpio --null -o -H newc --quiet | gzip -1 > \"$0\"")
            .arg(&initrd)
            .current_dir(&tree),
    )?;
    Ok(initrd)
}

/// The hex SHA-256 of `data` (sha256sum).
fn sha256(data: &[u8]) -> Result<String> {
    let dir = std::env::temp_dir().join(format!("xtask-recipe-{}", std::process::id()));
    fs::write(&dir, data)?;
    let out = Command::new("sha256sum").arg(&dir).output();
    let _ = fs::remove_file(&dir);
    let out = out.context("running sha256sum")?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .map(str::to_owned)
        .context("sha256sum printed nothing")
}

fn say(msg: &str) {
    println!("[vm-systemd] {msg}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_check_lines() {
        let log = "VM kernel 6.1.0-40-cloud-amd64\r\n\
CHECK pid1 pass 0.0s PID 1 is systemd, system running\r\n\
CHECK ready FAIL 12.5s rc 1, states: activating failed\n\
    | journal line\n";
        let r = parse(log);
        assert_eq!(
            r["pid1"],
            (true, "0.0s PID 1 is systemd, system running".to_owned())
        );
        assert!(!r["ready"].0);
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn the_checks_are_the_runners() {
        let script = include_str!("../../tests/vm/systemd/run.sh");
        for c in CHECKS {
            assert!(
                script.contains(&format!("\ncheck {c} check_{c}\n")),
                "run.sh makes no check {c}"
            );
        }
    }
}
