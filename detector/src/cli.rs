//! Command-line flags, defined once.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "detector",
    version,
    about = "Catches credential theft through shared-object hooking (MITRE T1056.004, T1574.006)"
)]
pub struct Cli {
    /// Log verbosity on stderr (error, warn, info, debug, trace); RUST_LOG overrides it.
    #[arg(long, global = true, default_value = "info")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    pub fn log_level(&self) -> &str {
        &self.log_level
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Load the eBPF programs and print one JSON alert per line on stdout until SIGINT/SIGTERM.
    Run(RunArgs),
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Configuration file (TOML). Missing at the default path: built-in defaults.
    #[arg(long, value_name = "PATH", default_value = crate::config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// Touch this file once every program is attached (scripts and tests wait for it).
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
    /// Seconds between checks of the kernel's lost-event counters.
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub loss_interval: u64,
    /// Size of the kernel-to-daemon ring buffer in KiB: a power of two, at least 64.
    #[arg(long, value_name = "KIB", default_value_t = 8192, value_parser = ring_size)]
    pub ring_buffer_kib: u32,
}

fn ring_size(s: &str) -> Result<u32, String> {
    let v: u32 = s.parse().map_err(|e| format!("{e}"))?;
    if !(64..=1 << 20).contains(&v) || !v.is_power_of_two() {
        return Err("must be a power of two from 64 to 1048576".into());
    }
    Ok(v)
}
