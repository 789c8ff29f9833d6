//! The subcommands: `run` (the daemon), `scan`, `analyze`, `check`.
pub mod analyze;
pub mod check;
pub mod notify;
pub mod run;
pub mod scan;
