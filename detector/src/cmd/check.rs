//! `detector check`: what this kernel offers the capture, which path the daemon will use, and why.
//! Each capability is probed for real (BPF map and program loads); as root the whole capture
//! path is then loaded, attached and detached (and the fanotify group of the watched places
//! made), which is the only proof that the daemon will run.
use std::{io::IsTerminal as _, path::Path, process::ExitCode};

use anyhow::Result;
use aya::{
    maps::MapType,
    programs::{LsmAttachType, ProgramType},
};
use serde::Serialize;

use crate::{
    capture::btf, capture::fanotify, capture::load, capture::preflight, cli::CheckArgs,
    engine::rules::config_change::Watched, output::text,
};

#[derive(Serialize)]
struct Item {
    name: &'static str,
    /// None: could not be told (e.g. without privilege).
    available: Option<bool>,
    /// Whether the daemon's capture path needs it.
    required: bool,
    detail: String,
}

#[derive(Serialize)]
struct Report {
    kernel: String,
    checks: Vec<Item>,
    /// The capture path the daemon will use, or None when it cannot run here.
    capture_path: Option<&'static str>,
    reason: String,
    /// How prevent mode stops a credential process here (`deny`: the BPF LSM programs refuse
    /// the mapping; `kill`), or None when it cannot.
    stop_path: Option<&'static str>,
    stop_reason: String,
}

fn item(name: &'static str, required: bool, r: Result<String, String>) -> Item {
    match r {
        Ok(detail) => Item {
            name,
            available: Some(true),
            required,
            detail,
        },
        Err(detail) => Item {
            name,
            available: Some(false),
            required,
            detail,
        },
    }
}

fn probe(r: Result<bool, impl std::error::Error>, yes: &str, no: &str) -> Result<String, String> {
    match r {
        Ok(true) => Ok(yes.to_owned()),
        Ok(false) => Err(no.to_owned()),
        Err(e) => {
            // The probe's own words and the kernel's (EPERM, ...).
            let mut text = format!("refused: {e}");
            let mut source = e.source();
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            Err(text)
        }
    }
}

fn inspect() -> Report {
    let mut checks = Vec::new();
    let privilege = preflight::check_privileges()
        .map(|()| "root, or CAP_BPF and CAP_PERFMON".to_owned())
        .map_err(|e| e.to_string());
    let privileged = privilege.is_ok();
    checks.push(item("privilege", true, privilege));
    let btf = btf_rs::Btf::from_file(preflight::BTF_PATH);
    checks.push(item(
        "btf",
        true,
        btf.as_ref()
            .map(|_| format!("{} (struct offsets are read from it)", preflight::BTF_PATH))
            .map_err(|e| format!("{}: {e}", preflight::BTF_PATH)),
    ));
    let tracefs = preflight::ensure_tracefs();
    checks.push(item(
        "tracefs",
        true,
        tracefs
            .as_ref()
            .map(|p| p.to_string())
            .map_err(|e| e.to_string()),
    ));
    if privileged {
        checks.push(item(
            "ring_buffer",
            true,
            probe(
                aya::sys::is_map_supported(MapType::RingBuf),
                "BPF_MAP_TYPE_RINGBUF",
                "no BPF ring buffer (Linux 5.8+)",
            ),
        ));
    } else {
        checks.push(Item {
            name: "ring_buffer",
            available: None,
            required: true,
            detail: "not probed: needs privilege".into(),
        });
    }
    if let Ok(tracefs) = &tracefs {
        let total = load::tracepoints().count();
        let absent: Vec<(&str, &str, bool)> = load::tracepoints()
            .filter(|(c, n, _)| !Path::new(tracefs).join("events").join(c).join(n).is_dir())
            .collect();
        let required_missing = absent.iter().any(|&(_, _, req)| req);
        let missing: Vec<String> = absent
            .iter()
            .map(|(c, n, req)| format!("{c}/{n}{}", if *req { "" } else { " (optional)" }))
            .collect();
        checks.push(item(
            "tracepoints",
            true,
            if required_missing {
                Err(format!("missing: {}", missing.join(", ")))
            } else if missing.is_empty() {
                Ok(format!("all {total} (sched/*, syscalls/*)"))
            } else {
                Ok(format!(
                    "missing only optional ones: {}",
                    missing.join(", ")
                ))
            },
        ));
    }
    if let Ok(btf) = &btf {
        let missing: Vec<&str> = load::btf_tracepoints()
            .filter(|n| {
                btf.resolve_ids_by_name(&format!("btf_trace_{n}"))
                    .map_or(true, |ids| ids.is_empty())
            })
            .collect();
        checks.push(item(
            "tp_btf",
            true,
            if missing.is_empty() {
                Ok(format!(
                    "{} in BTF",
                    load::btf_tracepoints().collect::<Vec<_>>().join(", ")
                ))
            } else {
                Err(format!("not in BTF: {}", missing.join(", ")))
            },
        ));
    }
    let lsm_list = std::fs::read_to_string("/sys/kernel/security/lsm").unwrap_or_default();
    let lsm_list = lsm_list.trim();
    let lsm = if !privileged {
        Err("not probed: needs privilege".to_owned())
    } else if !lsm_list.is_empty() && !lsm_list.split(',').any(|l| l == "bpf") {
        Err(format!(
            "bpf is not an active LSM ({lsm_list}): boot with lsm=...,bpf"
        ))
    } else {
        probe(
            aya::sys::is_program_supported(ProgramType::Lsm(LsmAttachType::Mac)),
            "BPF LSM programs load and attach",
            "BPF LSM programs are not supported",
        )
    };
    let lsm_here = lsm.is_ok();
    checks.push(item("lsm", false, lsm));
    checks.push(item(
        "fentry",
        false,
        if privileged {
            probe(
                aya::sys::is_program_supported(ProgramType::Tracing),
                "fentry/fexit programs load and attach",
                "fentry/fexit are not supported",
            )
        } else {
            Err("not probed: needs privilege".to_owned())
        },
    ));
    let blockers: Vec<String> = checks
        .iter()
        .filter(|c| c.required && c.available != Some(true))
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect();
    let (capture_path, reason) = if !blockers.is_empty() {
        (
            None,
            format!("the daemon cannot run here: {}", blockers.join("; ")),
        )
    } else {
        // Everything needed is there: prove it by loading and attaching every program.
        match attach_all(lsm_here) {
            Ok((n, deny, prevention)) => (
                Some(("tracepoints", deny, prevention)),
                format!(
                    "tracepoints: {n} programs loaded, attached and detached just now, and the \
                     fanotify marks on the watched directories made. This build has one capture path \
                     (classic and BTF tracepoints + ring buffer, fanotify for the watched places' \
                     writes); it does not use LSM or fentry even where they are available, so those \
                     lines are information only."
                ),
            ),
            Err(e) => (None, format!("loading the capture path failed: {e:#}")),
        }
    };
    let kill = "bpf_send_signal(SIGKILL) from prevention's programs (on sys_enter_mmap, \
                sys_enter_mprotect, sched_process_exec), which call it and were loaded and \
                attached just now: the process dies before the mapping returns to user space";
    let not_attached = match &capture_path {
        Some((_, _, failed)) if !failed.is_empty() => format!(
            " Prevention's programs that did not load here (what they judge is not stopped): {}.",
            failed.join("; ")
        ),
        _ => String::new(),
    };
    let (stop_path, stop_reason) = match &capture_path {
        Some((_, None, _)) => (
            Some("kill"),
            format!("prevent mode: {kill}. No BPF LSM here (see lsm), so no deny path."),
        ),
        Some((_, Some(Err(e)), _)) => (
            Some("kill"),
            format!("prevent mode: {kill}. The BPF LSM deny path did not attach: {e}"),
        ),
        Some((_, Some(Ok(())), _)) => (
            Some("deny"),
            format!(
                "prevent mode: the BPF LSM programs (mmap_file, file_mprotect), loaded and \
                 attached just now, refuse a mapping with EPERM (the loader reports the object \
                 as one that cannot be preloaded, and the program runs without it); an ELF \
                 interpreter, mapped by exec itself, is stopped by {kill}. With \
                 [prevent] stop = \"kill\", every stop is a kill."
            ),
        ),
        None => (
            None,
            "prevent mode cannot stop anything: the capture path does not load here".to_owned(),
        ),
    };
    Report {
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        checks,
        capture_path: capture_path.map(|(p, _, _)| p),
        reason,
        stop_path,
        stop_reason: format!("{stop_reason}{not_attached}"),
    }
}

/// Loads and attaches every capture program, then (`lsm`) the deny path's: how many capture
/// programs, and whether the deny path attached (None: not tried).
#[allow(clippy::type_complexity)]
fn attach_all(lsm: bool) -> Result<(usize, Option<Result<(), String>>, Vec<String>)> {
    let cfg = btf::config(preflight::BTF_PATH, std::process::id())?;
    // The capture registers its ring buffer with the runtime, as in the daemon.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let dirs = Watched::discover().directories();
        let (mut capture, _log) = load::Capture::start(cfg, &dirs, 64 * 1024, true)?;
        let n = capture.attached();
        let deny = lsm.then(|| capture.attach_deny_path().map_err(|e| format!("{e:#}")));
        let prevention = capture.prevention_programs(true);
        capture.detach();
        // The watched places' writes: a fanotify group with its marks.
        fanotify::Watcher::start(&dirs, &[])?;
        Ok((n, deny, prevention))
    })
}

pub fn run(args: CheckArgs) -> Result<ExitCode> {
    let report = inspect();
    if args.json || !std::io::stdout().is_terminal() {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        let colour = text::colour_stdout();
        let rows: Vec<[String; 3]> = report
            .checks
            .iter()
            .map(|c| {
                [
                    format!("{}{}", c.name, if c.required { "" } else { " (unused)" }),
                    match c.available {
                        Some(true) => "yes",
                        Some(false) => "no",
                        None => "?",
                    }
                    .to_owned(),
                    c.detail.clone(),
                ]
            })
            .collect();
        print!("kernel {}\n\n", report.kernel);
        print!(
            "{}",
            text::render(
                &["CAPABILITY", "AVAILABLE", "DETAIL"],
                &rows,
                |r, col, cell| {
                    let c = &report.checks[r];
                    if col == 1 && colour {
                        let code = match (c.available, c.required) {
                            (Some(true), _) => "32",
                            (_, true) => "31",
                            _ => "33",
                        };
                        format!("\x1b[{code}m{cell}\x1b[0m")
                    } else {
                        cell.to_owned()
                    }
                }
            )
        );
        println!(
            "\ncapture path: {}\n{}",
            report.capture_path.unwrap_or("none"),
            report.reason
        );
        println!(
            "\nstop path: {}\n{}",
            report.stop_path.unwrap_or("none"),
            report.stop_reason
        );
    }
    Ok(if report.capture_path.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
