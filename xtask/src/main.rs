//! Build, test and run orchestration: `cargo xtask <command>`.
//!
//! Every command first makes sure the toolchain pieces are installed (idempotent, and it says
//! what it installs), so that the README's two commands work on a fresh machine.
mod bench;
mod dispatch;
mod fuzz;
mod load;
mod package;
mod setup;
mod sigma;
mod soak;
mod vm;
mod vm_systemd;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what is missing (nightly rust-src, LLVM 22, bpf-linker, gcc).
    Setup,
    /// Build target/release/detector with the eBPF object embedded.
    Build,
    /// Build, then run `detector` with the given arguments (e.g. `cargo xtask run -- run`).
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The whole test suite: the package and its lintian check, format and lint checks, unit
    /// tests, root end-to-end tests (the package's included), the Sigma rules over the alerts
    /// the e2e tests saved, a short fuzzing pass, and the VM tests on Debian kernels 6.1 and
    /// 6.12, without and then with systemd (the last four skipped when a test filter is given).
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Check and convert the Sigma rules in contrib/sigma and run them over the alerts the last
    /// e2e run saved (target/e2e-alerts): each must match its attacks and no benign run.
    Sigma,
    /// Build, then measure what detector costs against its budgets: workloads with and without it
    /// and with peers (bpftrace, auditd), latency, memory, per-program BPF cost (markdown on
    /// stdout; exits non-zero when a budget is missed).
    Bench {
        /// Only the kernel's dispatch cost per classic-tracepoint program run (about 30 s).
        #[arg(long)]
        dispatch_only: bool,
        /// Only the detection latency (about 15 s).
        #[arg(long, conflicts_with = "dispatch_only")]
        latency_only: bool,
    },
    /// Build the fuzz targets of fuzz/ (nightly, cargo-fuzz) and run each with libFuzzer from
    /// its seed corpus; prints executions and crashes per target, fails on a crash.
    Fuzz {
        /// How long each target runs.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Only this target (repeatable).
        #[arg(long = "target", value_name = "NAME")]
        targets: Vec<String>,
    },
    /// Build, then run the daemon for N minutes under mixed load (exec, dlopen, open, rename and
    /// fork storms, floods aimed at the sensor) with real attacks injected at random times; fails
    /// when an attack is not alerted, events are lost uncounted, RSS grows 5 MiB or more after
    /// the warm-up, or the daemon dies. Root; holds /tmp/detector-e2e.lock; writes
    /// target/soak/report.md. Not part of `test`.
    Soak {
        /// How long the load and the attacks run.
        #[arg(long, default_value_t = 30)]
        minutes: u64,
        /// The attack schedule's seed (default: from the clock; printed either way).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Build, then make target/debian/detector_<version>_amd64.deb (dpkg-deb) and check it with
    /// lintian (an error fails).
    Package,
    /// Build, then run the end-to-end test binaries listed in xtask/src/vm.rs (the LD_PRELOAD
    /// atomic tests) in qemu on Debian kernels (default: 6.1 and 6.12); prints a test x kernel
    /// table, keeps the serial logs in target/vm-test/.
    VmTest {
        /// A kernel to test: 6.1 (linux-image-6.1.0-*-cloud-amd64) or 6.12
        /// (linux-image-6.12.*+deb12-amd64); repeatable.
        #[arg(long = "kernel", value_name = "VERSION")]
        kernels: Vec<String>,
        /// Instead: build the .deb and boot a Debian 12 root filesystem (mmdebstrap, cached in
        /// target/vm-systemd/) with systemd as PID 1, install the package there and check the
        /// service (xtask/src/vm_systemd.rs).
        #[arg(long)]
        systemd: bool,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let root = workspace_root();
    std::env::set_current_dir(&root)?;
    match cli.command {
        Cmd::Setup => setup::ensure(),
        Cmd::Build => build(),
        Cmd::Run { args } => {
            build()?;
            let bin = root.join("target/release/detector");
            let status = Command::new(&bin)
                .args(&args)
                .status()
                .with_context(|| format!("running {}", bin.display()))?;
            std::process::exit(status.code().unwrap_or(1));
        }
        Cmd::Test { args } => test(&root, &args),
        Cmd::Sigma => sigma::run(&root),
        Cmd::Bench {
            dispatch_only,
            latency_only,
        } => bench::run(&root, dispatch_only, latency_only),
        Cmd::Fuzz { seconds, targets } => fuzz::run(&root, seconds, &targets),
        Cmd::Package => package(&root).map(drop),
        Cmd::Soak { minutes, seed } => soak::run(&root, minutes, seed),
        Cmd::VmTest { kernels, systemd } => {
            build()?;
            setup::ensure_vm()?;
            if systemd {
                let deb = package(&root)?;
                setup::ensure_vm_systemd()?;
                vm_systemd::run(&root, &deb, &kernels)
            } else {
                vm::run(&root, &kernels)
            }
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn build() -> Result<()> {
    setup::ensure()?;
    cargo(&["build", "--release", "--package", "detector"])?;
    println!("[xtask] built target/release/detector");
    Ok(())
}

fn package(root: &Path) -> Result<PathBuf> {
    build()?;
    setup::ensure_package()?;
    package::build(root)
}

fn test(root: &Path, extra: &[String]) -> Result<()> {
    // The package first: its lintian check is part of the suite, and e2e_package installs it.
    let deb = package(root)?;
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&["clippy", "--all-targets", "--", "-D", "warnings"])?;
    // The eBPF programs, as detector/build.rs (aya-build) builds them: nightly, BPF target,
    // core built from source; a target directory of their own.
    cargo(&[
        "+nightly",
        "clippy",
        "--package",
        "detector-ebpf",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--target-dir",
        "target/ebpf-clippy",
        "--",
        "-D",
        "warnings",
    ])?;
    let bin = root.join("target/release/detector");
    let mut args = vec![
        "test",
        "--release",
        "--workspace",
        "--exclude",
        "detector-ebpf",
        "--no-fail-fast",
    ];
    args.extend(extra.iter().map(String::as_str));
    // Each e2e test's daemon output is saved there for the Sigma rules' test.
    let alerts = root.join(sigma::ALERTS_DIR);
    let _ = std::fs::remove_dir_all(&alerts);
    let status = Command::new("cargo")
        .args(&args)
        .env("DETECTOR_BIN", &bin)
        .env("DETECTOR_ALERTS_DIR", &alerts)
        .env("DETECTOR_DEB", &deb)
        .status()
        .context("running cargo test")?;
    // The Sigma test, a short fuzzing pass and the VM tests run whatever the host tests said, so
    // that one run reports everything.
    let (sigma, fuzzed, vm, vm_systemd) = if extra.is_empty() {
        (
            sigma::run(root),
            fuzz::run(root, FUZZ_SECONDS_IN_TEST, &[]),
            setup::ensure_vm().and_then(|()| vm::run(root, &[])),
            setup::ensure_vm()
                .and_then(|()| setup::ensure_vm_systemd())
                .and_then(|()| vm_systemd::run(root, &deb, &[])),
        )
    } else {
        (Ok(()), Ok(()), Ok(()), Ok(()))
    };
    if !status.success() {
        bail!("tests failed");
    }
    sigma?;
    fuzzed?;
    match (vm, vm_systemd) {
        (Err(a), Err(b)) => Err(a.context(format!("and {b:#}"))),
        (a, b) => a.and(b),
    }
}

/// How long the test command fuzzes each target.
const FUZZ_SECONDS_IN_TEST: u64 = 10;

fn cargo(args: &[&str]) -> Result<()> {
    println!("[xtask] cargo {}", args.join(" "));
    let status = Command::new("cargo")
        .args(args)
        .status()
        .with_context(|| format!("running cargo {}", args[0]))?;
    if !status.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    Ok(())
}
