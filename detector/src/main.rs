//! detector: catches credential theft through shared-object hooking (T1056.004, T1574.006).
//!
//! The pipeline, one way: capture (kernel, `capture`) → decode (`event`) → enrich (`library`)
//! → correlate (`correlate`, `rules`) → alert (`alert`) → sink (`sink`).
mod aggregate;
mod alert;
mod analyze;
mod capture;
mod check;
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
mod scan;
mod sink;
mod sweep;
mod text;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(cli.log_level()))
        .target(env_logger::Target::Stderr)
        .init();
    let result = match cli.command {
        cli::Command::Run(args) => daemon::run(args),
        cli::Command::Scan(args) => scan::run(args),
        cli::Command::Analyze(args) => analyze::run(args),
        cli::Command::Check(args) => check::run(args),
        cli::Command::Completions(args) => {
            cli::completions(&args);
            Ok(ExitCode::SUCCESS)
        }
        cli::Command::Man => cli::man().map(|()| ExitCode::SUCCESS),
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
