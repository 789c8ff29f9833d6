//! Build, test and run orchestration: `cargo xtask <command>`.
//!
//! Every command first makes sure the toolchain pieces are installed (idempotent, and it says
//! what it installs), so that the README's two commands work on a fresh machine.
mod bench;
mod setup;

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
    /// The whole test suite: format and lint checks, unit tests, root end-to-end tests.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build, then measure the in-kernel cost of detector's eBPF programs (markdown on stdout).
    Bench,
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
        Cmd::Bench => bench::run(&root),
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

fn test(root: &Path, extra: &[String]) -> Result<()> {
    build()?;
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&["clippy", "--all-targets", "--", "-D", "warnings"])?;
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
    let status = Command::new("cargo")
        .args(&args)
        .env("DETECTOR_BIN", &bin)
        .status()
        .context("running cargo test")?;
    if !status.success() {
        bail!("tests failed");
    }
    Ok(())
}

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
