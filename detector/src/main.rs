//! detector: catches credential theft through shared-object hooking (T1056.004, T1574.006,
//! T1556.003).
//!
//! The modules are the library target's (`lib.rs`); this is the command line's entry point.
use std::process::ExitCode;

use detector::{cli, cmd, output};

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    output::log::init(cli.log_level());
    let result = match cli.command {
        cli::Command::Run(args) => cmd::run::run(args),
        cli::Command::Scan(args) => cmd::scan::run(args),
        cli::Command::Analyze(args) => cmd::analyze::run(args),
        cli::Command::Check(args) => cmd::check::run(args),
        cli::Command::Events(args) => cmd::events::run(args),
        cli::Command::Selftest(args) => cmd::selftest::run(args),
        cli::Command::SelftestMemfdLoad(args) => cmd::selftest::memfd::load(&args.lib),
        cli::Command::Completions(args) => {
            cli::completions(&args);
            Ok(ExitCode::SUCCESS)
        }
        cli::Command::Man => cli::man().map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(err) if broken_pipe(&err) => {
            // The reader of our output went away (`detector scan | head`): nothing is wrong.
            ExitCode::SUCCESS
        }
        Err(err) => {
            // One line, no backtrace: what is wrong and, where known, how to fix it.
            eprintln!(
                "{}",
                output::log::fatal_line(&format!("detector: error: {err:#}"))
            );
            ExitCode::from(2)
        }
    }
}

/// The error is a write to a pipe whose reader has closed it.
fn broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
