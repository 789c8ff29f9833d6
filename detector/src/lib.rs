//! detector's library target: the daemon's modules, for the `detector` binary (`main.rs`) and the
//! fuzz targets in `fuzz/`, which call the parsers of what an attacker controls directly.
//!
//! The folders are the pipeline, one way: `capture` (kernel programs, decoding) → `engine`
//! (process table, rules, enrichment, policy) → `output` (alert schema, aggregation, sinks);
//! `cmd` holds the subcommands that drive it.
pub mod capture;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod engine;
pub mod output;
pub mod stats;
