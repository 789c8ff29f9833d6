//! The engine: the process table, correlation of events into findings by the rules, enrichment
//! of what they name (library files: hash, ELF analysis), what changed in the watched places
//! (`watch`), and the policy that turns findings into alerts.
pub mod correlate;
pub mod credential;
pub mod enrich;
pub mod file_view;
pub mod library;
pub mod loader_vars;
pub mod package_manager;
pub mod policy;
pub mod policy_stage;
pub mod prevent;
pub mod process;
pub mod provenance;
pub mod rules;
pub mod sweep;
pub mod watch;
