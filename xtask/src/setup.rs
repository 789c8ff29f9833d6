//! Installs what the build and the tests need, only from the package registries, and only
//! what is missing. Prints each thing it checks and each thing it installs.
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _, Result};

const NIGHTLY: &str = "nightly";
const LLVM_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
];
/// What the root e2e tests run, each with why.
const TEST_PACKAGES: &[(&[&str], &str)] = &[
    (
        &["gcc", "libc6-dev"],
        "to build the hook libraries the tests load",
    ),
    (
        &["openssh-client"],
        "ssh, the credential program the tests preload into",
    ),
    (
        &["util-linux"],
        "su, whose PAM stack a test extends, and unshare, for a private mount namespace",
    ),
    (
        &["rsyslog"],
        "a real syslog collector the tests send alerts to",
    ),
    (
        &["patchelf"],
        "to trojan a copy of a packaged library the way Ebury does (an added DT_NEEDED), and to give a test program a copy of the loader as its interpreter",
    ),
    (
        &["rpm"],
        "rpmbuild and rpm, to build a package and install it into a root with an rpm database",
    ),
    (
        &["openssh-server", "sshpass"],
        "a real sshd (the tests run their own, on a loopback port; the package's service is not started) and password logins to it",
    ),
    (
        &["strace", "gdb"],
        "the debuggers the memory-read tests attach to credential processes (gcore is gdb's)",
    ),
    (
        &["python3", "git"],
        "ordinary activity the tests expect no alert from, and a service user's Python",
    ),
];
const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn ensure() -> Result<()> {
    ensure_rust_src()?;
    let mut apt = Apt::default();
    if !ok("bpf-linker", &["--version"]) {
        apt.install(LLVM_PACKAGES, "LLVM 22, to build bpf-linker")?;
        say(&format!("installing bpf-linker {BPF_LINKER_VERSION} from crates.io (built against LLVM 22, about 3 minutes)"));
        run(Command::new("cargo")
            .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
            .args(["--no-default-features", "--features", "llvm-22"])
            .env("LLVM_PREFIX", "/usr/lib/llvm-22"))?;
    } else {
        say("ok: bpf-linker");
    }
    for (packages, why) in TEST_PACKAGES {
        apt.install(packages, why)?;
    }
    Ok(())
}

fn ensure_rust_src() -> Result<()> {
    let out = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", NIGHTLY])
        .output()
        .context("running rustup (the machine's Rust toolchain manager)")?;
    if !out.status.success() {
        bail!("the {NIGHTLY} toolchain is not installed; the eBPF programs need it (rustup toolchain install {NIGHTLY})");
    }
    if String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.starts_with("rust-src"))
    {
        say("ok: rust-src for nightly");
        return Ok(());
    }
    say("installing rust-src for the nightly toolchain (build-std=core for the BPF target)");
    run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", NIGHTLY]))
}

const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// cargo-fuzz, for `cargo xtask fuzz` (libFuzzer itself comes with the fuzz crate's
/// `libfuzzer-sys`, built with the machine's C++ compiler).
pub fn ensure_fuzz() -> Result<()> {
    ensure_rust_src()?;
    if ok("cargo", &["fuzz", "--version"]) {
        say("ok: cargo-fuzz");
        return Ok(());
    }
    ensure_all(&[(&["g++"], "to build libFuzzer (libfuzzer-sys)")])?;
    say(&format!(
        "installing cargo-fuzz {CARGO_FUZZ_VERSION} from crates.io (about a minute)"
    ));
    run(Command::new("cargo").args([
        "install",
        "cargo-fuzz",
        "--locked",
        "--version",
        CARGO_FUZZ_VERSION,
    ]))
}

/// What `cargo xtask vm-test` needs on top of the tests' packages.
const VM_PACKAGES: &[(&[&str], &str)] = &[
    (
        &["qemu-system-x86"],
        "to boot Debian kernels for the VM tests",
    ),
    (
        &["busybox-static", "cpio"],
        "to build the VM tests' initramfs",
    ),
    (&["e2fsprogs"], "mke2fs, for the guest's /usr image"),
];

pub fn ensure_vm() -> Result<()> {
    ensure_all(VM_PACKAGES)
}

/// What the Sigma rules' test needs from Debian (the rest comes from PyPI into a virtualenv).
const SIGMA_PACKAGES: &[(&[&str], &str)] = &[(
    &["python3-venv"],
    "a virtualenv for pySigma, sigma-cli and its backends from PyPI",
)];

pub fn ensure_sigma() -> Result<()> {
    ensure_all(SIGMA_PACKAGES)
}

/// What `cargo xtask package` needs, and the package's e2e test.
const PACKAGE_PACKAGES: &[(&[&str], &str)] = &[
    (
        &["dpkg-dev", "binutils"],
        "dpkg-shlibdeps (the package's Depends) and strip, to build the .deb",
    ),
    (&["lintian"], "to check the .deb"),
    (
        &["man-db", "bash-completion"],
        "man and the completion loader, which the package's e2e test uses",
    ),
];

pub fn ensure_package() -> Result<()> {
    ensure_all(PACKAGE_PACKAGES)
}

/// What `cargo xtask vm-test --systemd` needs on top of the VM tests' packages.
const VM_SYSTEMD_PACKAGES: &[(&[&str], &str)] = &[(
    &["mmdebstrap"],
    "to build the Debian 12 root filesystem the systemd VM test boots",
)];

pub fn ensure_vm_systemd() -> Result<()> {
    ensure_all(VM_SYSTEMD_PACKAGES)
}

/// The peers `cargo xtask bench` measures against.
const BENCH_PACKAGES: &[(&[&str], &str)] = &[(
    &["bpftrace", "auditd"],
    "peers for the benchmark: a bpftrace capture and auditd with an execve rule",
)];

pub fn ensure_bench() -> Result<()> {
    ensure_all(BENCH_PACKAGES)
}

fn ensure_all(list: &[(&[&str], &str)]) -> Result<()> {
    let mut apt = Apt::default();
    for (packages, why) in list {
        apt.install(packages, why)?;
    }
    Ok(())
}

#[derive(Default)]
struct Apt {
    updated: bool,
}

impl Apt {
    fn install(&mut self, packages: &[&str], why: &str) -> Result<()> {
        let missing: Vec<&str> = packages
            .iter()
            .copied()
            .filter(|p| !dpkg_installed(p))
            .collect();
        if missing.is_empty() {
            say(&format!("ok: {}", packages.join(" ")));
            return Ok(());
        }
        if !self.updated {
            say("apt-get update");
            run(Command::new("apt-get").args(["update", "-q"]))?;
            self.updated = true;
        }
        say(&format!("installing {} ({why})", missing.join(" ")));
        // A service a package would start (sshd on port 22) is not started: invoke-rc.d asks
        // policy-rc.d, and 101 means "not allowed".
        let _policy = NoServiceStart::new()?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))
    }
}

const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

/// `/usr/sbin/policy-rc.d` refusing every service start while it lives, when the machine has
/// none of its own (one it has is left alone).
struct NoServiceStart(bool);

impl NoServiceStart {
    fn new() -> Result<Self> {
        if std::path::Path::new(POLICY_RC_D).exists() {
            return Ok(NoServiceStart(false));
        }
        std::fs::write(POLICY_RC_D, "#!/bin/sh\nexit 101\n")
            .with_context(|| format!("writing {POLICY_RC_D}"))?;
        std::fs::set_permissions(
            POLICY_RC_D,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        Ok(NoServiceStart(true))
    }
}

impl Drop for NoServiceStart {
    fn drop(&mut self) {
        if self.0 {
            let _ = std::fs::remove_file(POLICY_RC_D);
        }
    }
}

fn dpkg_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn ok(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn say(msg: &str) {
    eprintln!("[setup] {msg}");
}

fn run(cmd: &mut Command) -> Result<()> {
    // Installers talk on stderr, so that commands printing results on stdout (bench) stay clean.
    let status = cmd
        .stdout(Stdio::from(std::io::stderr()))
        .status()
        .with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}
