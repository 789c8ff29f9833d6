//! Detection rules (one module each) and the scoring they share: a risk score equal to the
//! number of distinct detection types, as the source detection does
//! (`RiskScore = array_length(make_set(DetectionType))`).
pub mod loader_env;

use std::collections::BTreeSet;

use crate::{
    alert::{Alert, Clock, Detection, Preload, Process, Severity, T1056_004, T1574_006},
    credential::is_credential_process,
    event::{Exec, Header},
    library::Library,
};

/// The process an event belongs to, from its exec when we saw it.
pub fn process_of(exec: Option<&Exec>, hdr: &Header) -> Process {
    Process {
        pid: hdr.pid,
        ppid: hdr.ppid,
        uid: hdr.uid,
        comm: hdr.comm.clone(),
        exe: exec.map(|e| e.filename.clone()).unwrap_or_default(),
        cmdline: exec.map(|e| e.argv.join(" ")).unwrap_or_default(),
    }
}

/// Adds the detections that follow from the process and library themselves, then scores.
pub fn build_alert(
    clock: &Clock,
    ktime_ns: u64,
    process: Process,
    library: Option<Library>,
    preload: Option<Preload>,
    mut detections: BTreeSet<Detection>,
) -> Alert {
    if library.as_ref().is_some_and(Library::is_unsafe) {
        detections.insert(Detection::UnsafeLibrary);
    }
    if is_credential_process(&process.exe, &process.comm) {
        detections.insert(Detection::CredentialProcess);
    }
    let credential = detections.contains(&Detection::CredentialProcess);
    let unsafe_lib = detections.contains(&Detection::UnsafeLibrary);
    let severity = if credential && unsafe_lib {
        Severity::Critical
    } else if credential {
        Severity::High
    } else if library.as_ref().is_some_and(Library::is_system) {
        Severity::Low
    } else {
        Severity::Medium
    };
    let mut mitre = vec![T1574_006];
    if credential {
        mitre.push(T1056_004);
    }
    Alert {
        timestamp: clock.rfc3339(ktime_ns),
        rule: if credential {
            "credential_api_hooking"
        } else {
            "dynamic_linker_hijacking"
        },
        severity,
        risk_score: detections.len() as u32,
        detections,
        mitre,
        process,
        library,
        preload,
    }
}
