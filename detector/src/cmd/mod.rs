//! The subcommands: `run` (the daemon), `scan`, `analyze`, `check`, `events`, `selftest`.
pub mod analyze;
pub mod check;
pub mod events;
pub mod notify;
pub mod run;
pub mod scan;
pub mod selftest;

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

/// What every command that loads the capture does first: checks the machine, reads this
/// kernel's struct offsets, and starts the single-threaded runtime the capture is driven on.
pub fn capture_runtime() -> anyhow::Result<(detector_common::KernelConfig, tokio::runtime::Runtime)>
{
    use anyhow::Context as _;
    crate::capture::preflight::check()?;
    let kcfg =
        crate::capture::btf::config(crate::capture::preflight::BTF_PATH, std::process::id())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    Ok((kcfg, rt))
}
