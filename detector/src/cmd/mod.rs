//! The subcommands: `run` (the daemon), `scan`, `analyze`, `check`, `events`.
pub mod analyze;
pub mod check;
pub mod events;
pub mod notify;
pub mod run;
pub mod scan;
