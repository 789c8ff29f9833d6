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
pub mod sensor;
pub mod signals;
pub mod sweep;
pub mod watch;

/// A configuration file's text as the program that reads it sees its lines (PAM, NSS, the
/// loader read bytes): a byte that is not UTF-8 is replaced, and never hides the other lines.
pub fn config_text(path: &std::path::Path) -> std::io::Result<String> {
    std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned())
}
