//! Detection rules (one module each) and the scoring they share: a risk score equal to the
//! number of distinct detection types, as the source detection does
//! (`RiskScore = array_length(make_set(DetectionType))`).
pub mod config_change;
pub mod loader_argv;
pub mod loader_env;
pub mod memory_tamper;
pub mod preload_file;
pub mod unsafe_library;

use std::collections::BTreeSet;

use crate::{
    engine::credential::Catalogue,
    engine::library::Library,
    output::alert::{
        Alert, ChangedFile, Clock, ConfigLine, Detection, Preload, Process, Severity, Target,
        DATASET_LIVE, DATASET_SWEEP, T1056_004, T1556_003, T1574_006,
    },
};

/// What a rule found; `finish` adds what follows from it and scores it.
pub struct Finding {
    pub ktime_ns: u64,
    pub process: Process,
    pub detections: BTreeSet<Detection>,
    pub library: Option<Library>,
    pub preload: Option<Preload>,
    pub file: Option<ChangedFile>,
    pub target: Option<Target>,
    pub config: Option<ConfigLine>,
    /// Techniques beyond those the detections imply.
    pub mitre: Vec<&'static str>,
    /// The least severity this finding deserves on its own.
    pub floor: Severity,
}

impl Finding {
    pub fn new(ktime_ns: u64, process: Process, detection: Detection) -> Self {
        Finding {
            ktime_ns,
            process,
            detections: BTreeSet::from([detection]),
            library: None,
            preload: None,
            file: None,
            target: None,
            config: None,
            mitre: Vec::new(),
            floor: Severity::Low,
        }
    }

    pub fn finish(mut self, clock: &Clock, catalogue: &Catalogue) -> Alert {
        if self.library.as_ref().is_some_and(Library::is_unsafe) {
            self.detections.insert(Detection::UnsafeLibrary);
        }
        // The credential process is the one hooked: the target of a memory write, else the
        // process itself.
        let (exe, comm) = match &self.target {
            Some(t) => (t.exe.as_str(), t.comm.as_str()),
            None => (self.process.exe.as_str(), self.process.comm.as_str()),
        };
        if catalogue.matches(exe, comm) {
            self.detections.insert(Detection::CredentialProcess);
        }
        let d = &self.detections;
        let credential = d.contains(&Detection::CredentialProcess);
        let severity = if credential && d.contains(&Detection::UnsafeLibrary) {
            Severity::Critical
        } else if credential {
            Severity::High
        } else if self.library.as_ref().is_some_and(Library::is_system) {
            Severity::Low
        } else {
            Severity::Medium
        }
        .max(self.floor);
        let mut mitre = Vec::new();
        if d.iter().any(|x| {
            matches!(
                x,
                Detection::PreloadEnv
                    | Detection::PreloadArgv
                    | Detection::PreloadFile
                    | Detection::AuditLibrary
                    | Detection::UnsafeLibrary
                    | Detection::LoaderConfigChange
                    | Detection::UnsafeLoaderPath
            )
        }) {
            mitre.push(T1574_006);
        }
        if d.contains(&Detection::PamConfigChange) || d.contains(&Detection::UnsafePamModule) {
            mitre.push(T1556_003);
        }
        mitre.extend(self.mitre.iter().copied());
        if credential || d.contains(&Detection::CredentialHooks) {
            mitre.push(T1056_004);
        }
        let rule = if credential || d.contains(&Detection::CredentialHooks) {
            "credential_api_hooking"
        } else if d.contains(&Detection::PamConfigChange) || d.contains(&Detection::UnsafePamModule)
        {
            "pam_tampering"
        } else if d.contains(&Detection::MemoryTamper) {
            "process_memory_tampering"
        } else {
            "dynamic_linker_hijacking"
        };
        // A finding from a /proc sweep has no kernel time: it is stamped now.
        let (timestamp, dataset) = if self.ktime_ns == 0 {
            (clock.rfc3339_now(), DATASET_SWEEP)
        } else {
            (clock.rfc3339(self.ktime_ns), DATASET_LIVE)
        };
        Alert {
            first_seen: timestamp.clone(),
            last_seen: timestamp.clone(),
            count: 1,
            timestamp,
            dataset,
            rule,
            severity,
            risk_score: self.detections.len() as u32,
            detections: self.detections,
            mitre,
            process: self.process,
            library: self.library,
            preload: self.preload,
            file: self.file,
            target: self.target,
            config: self.config,
        }
    }
}
