//! Rule: a mapping the kernel's prevention stopped (the process was killed, or the mapping
//! refused) or, in audit mode, would have stopped. Always an alert of its own, past the allowlists and the minimum
//! severity (what was done is reported whatever the policy says of the file), with what was
//! stopped and the reasons the kernel had: the file's own facts, its directory, the daemon's
//! listing of the file version as one the package database does not vouch for.
use super::{Context, Finding, Observation, Rule};
use crate::{
    capture::decode::{MmapSource, Prevented},
    engine::library::Library,
    output::alert::{Detection, Prevention, Severity},
};

pub struct PreventedMapping;

impl Rule for PreventedMapping {
    fn evaluate(&mut self, cx: &Context, observation: &Observation) -> Vec<Finding> {
        let Observation::Prevented(m) = observation else {
            return Vec::new();
        };
        let Some(p) = m.prevented else {
            return Vec::new();
        };
        let lib = Library::from_kernel(&m.file, &m.hdr);
        let mut f = Finding::new(cx.ktime_ns, cx.process.clone(), Detection::Prevented);
        if p.listed {
            f.detections
                .insert(if m.source == MmapSource::ExecInterpreter {
                    Detection::UnverifiedLoader
                } else {
                    Detection::UnverifiedObject
                });
        }
        let what = match m.source {
            MmapSource::ExecInterpreter => format!(
                "exec of {} with the ELF interpreter {}",
                if cx.process.exe.is_empty() {
                    &m.hdr.comm
                } else {
                    &cx.process.exe
                },
                lib.path
            ),
            source => format!(
                "{} of {} into {} (pid {})",
                source_name(source),
                lib.path,
                m.hdr.comm,
                m.hdr.pid
            ),
        };
        f.prevention = Some(prevention(p, what, &lib));
        f.floor = Severity::High;
        f.library = Some(lib);
        vec![f]
    }
}

fn source_name(source: MmapSource) -> &'static str {
    match source {
        MmapSource::Mmap => "mmap",
        MmapSource::Mprotect => "mprotect",
        MmapSource::ExecProgram => "exec",
        MmapSource::ExecInterpreter => "exec",
    }
}

/// The alert's `prevention` for the kernel's verdict `p` on `lib`.
fn prevention(p: Prevented, what: String, lib: &Library) -> Prevention {
    let mut reasons: Vec<&'static str> = Vec::new();
    if p.facts {
        reasons.extend(lib.unsafe_reasons.iter().copied().filter(|r| {
            matches!(
                *r,
                "memfd" | "deleted" | "tmpfs" | "owned_by_non_root" | "group_or_world_writable"
            )
        }));
    }
    if p.directory {
        reasons.push("directory_writable_by_non_root");
    }
    if p.listed {
        reasons.push("not_vouched_by_package_database");
    }
    let (mode, outcome) = if p.audit {
        ("audit", "would_prevent")
    } else {
        ("prevent", "prevented")
    };
    let action = match (p.audit, p.denied) {
        (false, true) => "deny",
        (false, false) => "kill",
        (true, true) => "would_deny",
        (true, false) => "would_kill",
    };
    Prevention {
        mode,
        action,
        outcome,
        what,
        reasons,
    }
}
