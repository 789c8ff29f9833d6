//! Command-line flags, defined once.
use std::path::PathBuf;

use clap::{builder::TypedValueParser as _, Args, CommandFactory as _, Parser, Subcommand};
use detector_common::EventKind;

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
    /// Load the eBPF programs and report, until SIGINT/SIGTERM, every shared object that gets into
    /// a process by a loader mechanism or from an unsafe place (the daemon).
    Run(RunArgs),
    /// Sweep running processes and the loader and PAM configuration once, without eBPF.
    /// Exit 0 when clean, 1 when there are findings, 2 on error.
    Scan(ScanArgs),
    /// Look at shared objects: which credential APIs they interpose, constructors, SHA-256,
    /// owner and mode. Exit 0, 1 when one interposes a credential API, 2 on error.
    Analyze(AnalyzeArgs),
    /// Say what this kernel offers (BTF, ring buffer, tracepoints, tp_btf, LSM, fentry) and which
    /// capture path the daemon will use, and why. Exit 0 when the daemon can run, else 2.
    Check(CheckArgs),
    /// Load the eBPF programs and print every event they capture, decoded, one JSON object per
    /// line, until SIGINT/SIGTERM: no rules, no enrichment, no process table.
    Events(EventsArgs),
    /// Prove the sensor works on this host: run harmless atomic tests (LD_PRELOAD read() hook
    /// into cat, ls and ssh, ld.so --preload, LD_AUDIT, a PAM module, a memfd library) against a
    /// detector started for the test or the running service, check each alert and print a
    /// table. Exit 0 when every test was alerted as expected, 1 when not, 2 on error.
    Selftest(SelftestArgs),
    /// The selftest's memfd load: copies LIB into a memfd and dlopens /proc/self/fd/N.
    #[command(hide = true, name = "selftest-memfd-load")]
    SelftestMemfdLoad(MemfdLoadArgs),
    /// Print a shell completion script on stdout.
    Completions(CompletionsArgs),
    /// Print the man page (roff) on stdout.
    Man,
}

/// How findings are written.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line (the alert schema).
    Json,
    /// A readable, coloured line per alert (colour only on a terminal, and not with NO_COLOR).
    Text,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Configuration file (TOML). Missing at the default path: built-in defaults.
    #[arg(long, value_name = "PATH", default_value = crate::config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// How alerts are written on stdout (the configuration's other outputs are always JSON).
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
    /// Touch this file once every program is attached (scripts and tests wait for it).
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
    /// Seconds between checks of the kernel's lost-event counters.
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub loss_interval: u64,
    /// Size of the kernel-to-daemon ring buffer in KiB: a power of two, at least 64.
    #[arg(long, value_name = "KIB", default_value_t = RING_BUFFER_KIB, value_parser = ring_size)]
    pub ring_buffer_kib: u32,
}

/// The kernel-to-user-space ring buffer's default size in KiB.
pub const RING_BUFFER_KIB: u32 = 4096;

#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Touch this file once every program is attached (scripts and tests wait for it).
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
    /// Print only events of this kind (repeatable; default: every kind).
    #[arg(long, value_name = "KIND", value_parser = event_kind())]
    pub kind: Vec<EventKind>,
    /// Print only events of this process (repeatable): its pid, as in the events' `pid` field.
    #[arg(long, value_name = "PID")]
    pub pid: Vec<u32>,
}

#[derive(Args, Debug)]
pub struct ScanArgs {
    /// JSON lines (the daemon's alert schema) even on a terminal; without it a terminal gets a
    /// table and a pipe gets JSON lines.
    #[arg(long)]
    pub json: bool,
    /// Sweep only these processes (repeatable); the configuration files are always checked.
    #[arg(long, value_name = "PID")]
    pub pid: Vec<u32>,
    /// Configuration file for the catalogue, allowlists and minimum severity.
    #[arg(long, value_name = "PATH", default_value = crate::config::DEFAULT_PATH)]
    pub config: PathBuf,
}

#[derive(Args, Debug)]
pub struct AnalyzeArgs {
    /// Shared objects to look at.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// One JSON object per file, even on a terminal.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// A JSON object instead of the readable report.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct SelftestArgs {
    /// Check the alerts of the running service (read from its configured output file, else
    /// from the journal) instead of starting a detector for the test.
    #[arg(long)]
    pub against_service: bool,
    /// With --against-service: the service's configuration file, which says where its alerts go.
    #[arg(long, value_name = "PATH", default_value = crate::config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// With --against-service: the systemd unit whose journal holds its stdout.
    #[arg(long, value_name = "UNIT", default_value = "detector")]
    pub unit: String,
    /// Seconds to wait for the expected alerts once every test has run.
    #[arg(long, value_name = "SECONDS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub timeout: u64,
    /// Seconds to wait for the detector started for the test to be ready.
    #[arg(long, value_name = "SECONDS", default_value_t = 90, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub ready_timeout: u64,
}

#[derive(Args, Debug)]
pub struct MemfdLoadArgs {
    /// The shared object to load.
    pub lib: PathBuf,
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// An event kind by its name (`EventKind::name`).
fn event_kind() -> impl clap::builder::TypedValueParser<Value = EventKind> {
    clap::builder::PossibleValuesParser::new(EventKind::ALL.map(EventKind::name)).map(|name| {
        EventKind::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .expect("a possible value is a kind's name")
    })
}

fn ring_size(s: &str) -> Result<u32, String> {
    let v: u32 = s.parse().map_err(|e| format!("{e}"))?;
    if !(64..=1 << 20).contains(&v) || !v.is_power_of_two() {
        return Err("must be a power of two from 64 to 1048576".into());
    }
    Ok(v)
}

/// `detector completions SHELL`.
pub fn completions(args: &CompletionsArgs) {
    clap_complete::generate(
        args.shell,
        &mut Cli::command(),
        "detector",
        &mut std::io::stdout(),
    );
}

/// `detector man`.
pub fn man() -> anyhow::Result<()> {
    clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
    Ok(())
}
