//! `cargo xtask fuzz`: builds the fuzz targets of `fuzz/` (cargo-fuzz, nightly, AddressSanitizer,
//! debug assertions) and runs each for a while with libFuzzer, from its committed seed corpus
//! (`fuzz/corpus/<target>`; what a run adds goes to `fuzz/corpus-work/<target>`, not committed).
//! Prints executions and crashes per target; a crash fails the run, and its input is kept in
//! `fuzz/artifacts/<target>/`.
use std::{
    fs,
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context as _, Result};

/// The targets, as `fuzz/Cargo.toml` names them, with the longest input each is given.
pub const TARGETS: &[(&str, usize)] = &[
    ("decode", 16384),
    ("elf", 65536),
    ("config", 8192),
    ("ld_so_preload", 4096),
    ("ld_so_conf", 4096),
    ("pam_d", 4096),
    ("nsswitch", 4096),
    ("watch_diff", 8192),
    ("proc_environ", 8192),
    ("proc_maps", 8192),
    ("proc_cmdline", 4096),
    ("proc_status", 4096),
    ("dpkg", 8192),
    ("rpm_header", 8192),
];

/// One target's run.
pub struct Outcome {
    pub target: &'static str,
    pub executions: u64,
    pub crashed: bool,
    pub seconds: f64,
}

/// Builds, then runs every target (or those named) for `seconds` each, one at a time at a lower
/// CPU priority. Err when the build fails or a target crashed.
pub fn run(root: &Path, seconds: u64, only: &[String]) -> Result<()> {
    for name in only {
        if !TARGETS.iter().any(|(t, _)| t == name) {
            bail!("no fuzz target {name}: the targets are {}", names());
        }
    }
    let started = Instant::now();
    crate::setup::ensure_fuzz()?;
    println!("[xtask] cargo +nightly fuzz build (all targets)");
    let status = Command::new("cargo")
        .args(["+nightly", "fuzz", "build"])
        .current_dir(root)
        .status()
        .context("running cargo fuzz build")?;
    if !status.success() {
        bail!("cargo fuzz build failed");
    }
    let built = started.elapsed().as_secs_f64();
    let scratch = root.join("target/fuzz-scratch");
    let mut outcomes = Vec::new();
    for &(target, max_len) in TARGETS {
        if !only.is_empty() && !only.iter().any(|n| n == target) {
            continue;
        }
        let _ = fs::remove_dir_all(&scratch);
        fs::create_dir_all(&scratch)?;
        let outcome = run_target(root, target, max_len, seconds, &scratch);
        let _ = fs::remove_dir_all(&scratch);
        outcomes.push(outcome?);
    }
    println!();
    println!("| target | executions | exec/s | crashes |");
    println!("|---|---:|---:|---:|");
    for o in &outcomes {
        println!(
            "| {} | {} | {:.0} | {} |",
            o.target,
            o.executions,
            o.executions as f64 / o.seconds.max(0.001),
            u32::from(o.crashed)
        );
    }
    println!(
        "[xtask] fuzz: {} targets, {seconds} s each; build {built:.0} s, total {:.0} s",
        outcomes.len(),
        started.elapsed().as_secs_f64()
    );
    let crashed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.crashed)
        .map(|o| o.target)
        .collect();
    if !crashed.is_empty() {
        bail!(
            "fuzz targets crashed: {} (inputs in fuzz/artifacts/<target>/)",
            crashed.join(", ")
        );
    }
    Ok(())
}

fn names() -> String {
    TARGETS
        .iter()
        .map(|(t, _)| *t)
        .collect::<Vec<_>>()
        .join(", ")
}

fn run_target(
    root: &Path,
    target: &'static str,
    max_len: usize,
    seconds: u64,
    scratch: &Path,
) -> Result<Outcome> {
    let bin = root
        .join("fuzz/target")
        .join(host_triple())
        .join("release")
        .join(target);
    let seeds = root.join("fuzz/corpus").join(target);
    let work = root.join("fuzz/corpus-work").join(target);
    let artifacts = root.join("fuzz/artifacts").join(target);
    for d in [&seeds, &work, &artifacts] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    println!("[xtask] fuzz {target} for {seconds} s");
    let started = Instant::now();
    let out = Command::new("nice")
        .args(["-n", "10"])
        .arg(&bin)
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-max_len={max_len}"))
        .arg("-timeout=10")
        .arg("-rss_limit_mb=2048")
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg(&work)
        .arg(&seeds)
        .env("DETECTOR_FUZZ_DIR", scratch)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    let log = String::from_utf8_lossy(&out.stderr);
    let executions = log
        .lines()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    let crashed = !out.status.success();
    if crashed {
        // libFuzzer's report: the sanitizer's or the panic's message and the input's file.
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        for l in tail.iter().rev() {
            eprintln!("  {l}");
        }
    }
    Ok(Outcome {
        target,
        executions,
        crashed,
        seconds,
    })
}

/// The host's target triple, under which cargo-fuzz puts the binaries.
fn host_triple() -> String {
    let out = Command::new("rustc").arg("-vV").output();
    out.ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        })
        .unwrap_or_else(|| "x86_64-unknown-linux-gnu".to_owned())
}
