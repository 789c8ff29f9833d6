//! detector: catches credential theft through shared-object hooking (T1056.004, T1574.006).
//!
//! The pipeline, one way: capture (kernel, `capture`) → decode (`event`) → enrich (`library`)
//! → correlate (`correlate`, `rules`) → alert (`alert`) → sink (`sink`).
mod aggregate;
mod alert;
mod capture;
mod cli;
mod config;
mod correlate;
mod credential;
mod daemon;
mod elf;
mod event;
mod kernel;
mod library;
mod loader_env;
mod notify;
mod preflight;
mod process;
mod rules;
mod sink;
mod sweep;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(cli.log_level()))
        .target(env_logger::Target::Stderr)
        .init();
    let result = match cli.command {
        cli::Command::Run(args) => daemon::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            // One line, no backtrace: what is wrong and, where known, how to fix it.
            eprintln!("detector: error: {err:#}");
            ExitCode::from(2)
        }
    }
}
