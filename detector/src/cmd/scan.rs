//! `detector scan`: the daemon's start-up sweep, on demand, for a hunter at a shell. Findings use
//! the daemon's alert schema (one SIEM rule serves both).
use std::{
    io::{IsTerminal as _, Write as _},
    path::Path,
    process::ExitCode,
};

use anyhow::{bail, Context as _, Result};

use crate::{
    cli::ScanArgs,
    config,
    engine::rules::config_change::Watched,
    engine::sweep::Only,
    engine::{
        correlate::Correlator,
        enrich::{elf::DEFAULT_HASH_BUDGET, Enricher},
        policy::Policy,
        rules::unverified_object::{self, Outcome},
    },
    output::alert::Clock,
    output::text,
};

pub fn run(args: ScanArgs) -> Result<ExitCode> {
    let explicit = args.config.as_os_str() != config::DEFAULT_PATH;
    let cfg = config::load(&args.config, explicit)?;
    for pid in &args.pid {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            bail!("no process with pid {pid}");
        }
    }
    let only = if args.pid.is_empty() {
        Only::AllBut(std::process::id())
    } else {
        Only::Pids(&args.pid)
    };
    let policy = Policy::from_config(&cfg);
    let mut correlator = Correlator::new(Watched::discover(), policy.catalogue.clone());
    let (findings, seen, skipped) = correlator.sweep(only, Path::new("/etc"));
    // The daemon's stages, inline: enrichment, then policy.
    let clock = Clock::new();
    let mut enricher = Enricher::new(DEFAULT_HASH_BUDGET);
    let alerts: Vec<_> = findings
        .into_iter()
        .filter_map(|mut f| {
            enricher.enrich(&mut f);
            let credential = policy.concerns_credentials(&f);
            if f.verify && unverified_object::outcome(&f, credential) != Outcome::Alert {
                return None;
            }
            policy.judge(f, &clock)
        })
        .collect();
    let mut out = std::io::stdout().lock();
    if args.json || !std::io::stdout().is_terminal() {
        for a in &alerts {
            serde_json::to_writer(&mut out, a).context("writing findings")?;
            out.write_all(b"\n").context("writing findings")?;
        }
    } else if !alerts.is_empty() {
        out.write_all(text::table(&alerts, text::colour_stdout()).as_bytes())
            .context("writing findings")?;
    }
    out.flush().context("writing findings")?;
    eprintln!(
        "detector: scanned {seen} processes and the loader and PAM configuration: {} findings{}",
        alerts.len(),
        skipped.describe()
    );
    Ok(if alerts.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
