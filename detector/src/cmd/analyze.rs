//! `detector analyze FILE...`: what a shared object would do if loaded — the credential APIs it
//! interposes, load-time code, SHA-256, owner and mode, and the package that installed it and
//! whether its bytes still match the package's checksum.
use std::{
    io::{IsTerminal as _, Write as _},
    os::unix::fs::MetadataExt as _,
    path::Path,
    process::ExitCode,
};

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::{
    cli::AnalyzeArgs,
    engine::{enrich::elf, provenance},
    output::text,
};

use provenance::{NO_PACKAGE_DATABASE, PROVENANCE_UNKNOWN};

#[derive(Serialize)]
struct Report {
    path: String,
    hash: Hash,
    hooks: Vec<String>,
    constructors: bool,
    uid: u32,
    mode: String,
    size: u64,
    /// The package that installed the file (for a symbolic link, the file it resolves to).
    package: Option<String>,
    /// Listed by `package` with a checksum its bytes match.
    verified: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    provenance_reasons: Vec<&'static str>,
}

#[derive(Serialize)]
struct Hash {
    sha256: String,
}

fn report(path: &Path, db: Option<&dyn provenance::PackageDb>) -> Result<Report, String> {
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
    let prov = match db {
        None => provenance::Provenance {
            reasons: vec![NO_PACKAGE_DATABASE],
            ..Default::default()
        },
        Some(db) => std::path::absolute(path)
            .and_then(|p| db.provenance(&p))
            .unwrap_or_else(|e| {
                log::warn!("{}: package provenance: {e}", path.display());
                provenance::Provenance {
                    reasons: vec![PROVENANCE_UNKNOWN],
                    ..Default::default()
                }
            }),
    };
    Ok(Report {
        path: path.display().to_string(),
        hash: Hash { sha256 },
        hooks: facts.hooks,
        constructors: facts.constructors,
        uid: meta.uid(),
        mode: format!("{:04o}", meta.mode() & 0o7777),
        size: meta.size(),
        package: prov.package,
        verified: prov.verified,
        provenance_reasons: prov.reasons,
    })
}

pub fn run(args: AnalyzeArgs) -> Result<ExitCode> {
    let mut failed = false;
    let mut reports = Vec::new();
    let db = provenance::system(elf::NO_BUDGET);
    for f in &args.files {
        match report(f, db.as_deref()) {
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
        let rows: Vec<[String; 8]> = reports
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
                    r.package.clone().unwrap_or_else(|| "-".into()),
                    if r.verified {
                        "yes".into()
                    } else {
                        format!("no ({})", r.provenance_reasons.join(","))
                    },
                    r.hash.sha256.clone(),
                ]
            })
            .collect();
        let header = [
            "FILE",
            "HOOKS",
            "CONSTRUCTORS",
            "UID",
            "MODE",
            "PACKAGE",
            "VERIFIED",
            "SHA256",
        ];
        let table = text::render(&header, &rows, |row, col, cell| {
            let red = match col {
                1 => !reports[row].hooks.is_empty(),
                6 => !reports[row].verified,
                _ => false,
            };
            if red && colour {
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
