//! The SIEM content's test: the Sigma rules in contrib/sigma checked with `sigma check`,
//! converted with the Splunk, Elasticsearch and Kusto backends, and run with pySigma's SQLite
//! backend over the alerts the root e2e tests saved (`DETECTOR_ALERTS_DIR`). pySigma, sigma-cli
//! and the backends come from PyPI into a virtualenv under target/.
use std::{path::Path, process::Command};

use anyhow::{bail, Context as _, Result};

use crate::setup;

/// Where `cargo xtask test` has the e2e tests save each test's daemon output.
pub const ALERTS_DIR: &str = "target/e2e-alerts";
const VENV: &str = "target/sigma-venv";
const REQUIREMENTS: &str = "contrib/sigma/requirements.txt";
/// The converted queries, for inspection.
const OUT_DIR: &str = "target/sigma-out";

pub fn run(root: &Path) -> Result<()> {
    setup::ensure_sigma()?;
    let venv = root.join(VENV);
    let python = venv.join("bin/python");
    if !python.exists() {
        println!("[xtask] python3 -m venv {VENV}");
        status(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    }
    // pip runs again only when the pinned versions change.
    let wanted = std::fs::read_to_string(root.join(REQUIREMENTS))
        .with_context(|| format!("reading {REQUIREMENTS}"))?;
    let stamp = venv.join("detector-requirements.txt");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        println!("[xtask] pip install -r {REQUIREMENTS} (PyPI, into {VENV})");
        status(
            Command::new(&python)
                .args(["-m", "pip", "install", "-q", "-r"])
                .arg(root.join(REQUIREMENTS)),
        )?;
        std::fs::write(&stamp, &wanted).with_context(|| format!("writing {}", stamp.display()))?;
    }
    println!("[xtask] contrib/sigma/test_rules.py {ALERTS_DIR}");
    status(
        Command::new(&python)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .arg(root.join("contrib/sigma/test_rules.py"))
            .arg(root.join(ALERTS_DIR))
            .arg(root.join(OUT_DIR)),
    )
    .context("the Sigma rules' test")
}

fn status(cmd: &mut Command) -> Result<()> {
    let st = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed with {st}");
    }
    Ok(())
}
