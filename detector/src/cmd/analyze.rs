//! `detector analyze FILE...`: what a shared object would do if loaded — the credential APIs it
//! interposes, load-time code, SHA-256, owner and mode.
use std::{
    io::{IsTerminal as _, Write as _},
    os::unix::fs::MetadataExt as _,
    path::Path,
    process::ExitCode,
};

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::{cli::AnalyzeArgs, engine::enrich::elf, output::text};

#[derive(Serialize)]
struct Report {
    path: String,
    hash: Hash,
    hooks: Vec<String>,
    constructors: bool,
    uid: u32,
    mode: String,
    size: u64,
}

#[derive(Serialize)]
struct Hash {
    sha256: String,
}

fn report(path: &Path) -> Result<Report, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{}: not a regular file", path.display()));
    }
    let facts = elf::analyze(path);
    let (Some(sha256), None) = (facts.sha256, &facts.error) else {
        return Err(format!(
            "{}: {}",
            path.display(),
            facts.error.unwrap_or_else(|| "could not be read".into())
        ));
    };
    Ok(Report {
        path: path.display().to_string(),
        hash: Hash { sha256 },
        hooks: facts.hooks,
        constructors: facts.constructors,
        uid: meta.uid(),
        mode: format!("{:04o}", meta.mode() & 0o7777),
        size: meta.size(),
    })
}

pub fn run(args: AnalyzeArgs) -> Result<ExitCode> {
    let mut failed = false;
    let mut reports = Vec::new();
    for f in &args.files {
        match report(f) {
            Ok(r) => reports.push(r),
            Err(e) => {
                eprintln!("detector: error: {e}");
                failed = true;
            }
        }
    }
    let mut out = std::io::stdout().lock();
    if args.json || !std::io::stdout().is_terminal() {
        for r in &reports {
            serde_json::to_writer(&mut out, r).context("writing the report")?;
            out.write_all(b"\n").context("writing the report")?;
        }
    } else if !reports.is_empty() {
        let colour = text::colour_stdout();
        let rows: Vec<[String; 6]> = reports
            .iter()
            .map(|r| {
                [
                    r.path.clone(),
                    if r.hooks.is_empty() {
                        "-".into()
                    } else {
                        r.hooks.join(",")
                    },
                    if r.constructors { "yes" } else { "no" }.into(),
                    r.uid.to_string(),
                    r.mode.clone(),
                    r.hash.sha256.clone(),
                ]
            })
            .collect();
        let header = ["FILE", "HOOKS", "CONSTRUCTORS", "UID", "MODE", "SHA256"];
        let table = text::render(&header, &rows, |row, col, cell| {
            if col == 1 && !reports[row].hooks.is_empty() && colour {
                format!("\x1b[31m{cell}\x1b[0m")
            } else {
                cell.to_owned()
            }
        });
        out.write_all(table.as_bytes())
            .context("writing the report")?;
    }
    out.flush().context("writing the report")?;
    Ok(if failed {
        ExitCode::from(2)
    } else if reports.iter().any(|r| !r.hooks.is_empty()) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
