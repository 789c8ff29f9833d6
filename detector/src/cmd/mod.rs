//! The subcommands: `run` (the daemon), `scan`, `analyze`, `check`, `events`.
pub mod analyze;
pub mod check;
pub mod events;
pub mod notify;
pub mod run;
pub mod scan;

/// Creates the `--ready-file` once the capture is armed (kept when it is already there).
pub fn touch_ready(path: Option<&std::path::Path>) -> anyhow::Result<()> {
    use anyhow::Context as _;
    if let Some(path) = path {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("creating ready file {}", path.display()))?;
    }
    Ok(())
}
