//! Policy: what the configuration decides — which programs handle credentials, what never
//! alerts, the least severity worth an alert — applied to findings once they are enriched.
use crate::{
    config::Config,
    engine::{credential::Catalogue, provenance, rules::Finding},
    output::alert::{Alert, Clock, Detection, Severity},
};

/// What the configuration decides: which programs handle credentials, what never alerts, and
/// the least severity worth an alert.
#[derive(Debug, Clone)]
pub struct Policy {
    pub catalogue: Catalogue,
    /// (absolute path, optional sha256): a library allowed only while its hash matches.
    pub allow_libraries: Vec<(String, Option<String>)>,
    /// Executables whose alerts are dropped.
    pub allow_processes: Vec<String>,
    /// (absolute path, optional sha256): executables whose credential memory reads are
    /// dropped, only while their hash matches.
    pub allow_memory_readers: Vec<(String, Option<String>)>,
    pub min_severity: Severity,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            catalogue: Catalogue::default(),
            allow_libraries: Vec::new(),
            allow_processes: Vec::new(),
            allow_memory_readers: Vec::new(),
            min_severity: Severity::Info,
        }
    }
}

impl Policy {
    pub fn from_config(cfg: &Config) -> Self {
        Policy {
            catalogue: Catalogue::new(&cfg.catalogue.extra),
            allow_libraries: cfg
                .allow
                .library
                .iter()
                .map(|l| (l.path.clone(), l.sha256.clone()))
                .collect(),
            allow_processes: cfg.allow.process.iter().map(|p| p.exe.clone()).collect(),
            allow_memory_readers: cfg
                .allow
                .memory_reader
                .iter()
                .map(|m| (m.exe.clone(), m.sha256.clone()))
                .collect(),
            min_severity: match cfg.thresholds.min_severity.rank() {
                0 => Severity::Info,
                1 => Severity::Low,
                2 => Severity::Medium,
                3 => Severity::High,
                _ => Severity::Critical,
            },
        }
    }

    pub fn allows(&self, a: &Alert) -> bool {
        let library = a
            .library
            .as_ref()
            .is_some_and(|lib| self.allows_library(lib));
        library || self.allow_processes.contains(&a.process.exe) || self.allows_reader(a)
    }

    /// The allowlist names this library (and its hash, when the entry has one).
    pub fn allows_library(&self, lib: &crate::engine::library::Library) -> bool {
        self.allow_libraries.iter().any(|(path, sha)| {
            *path == lib.path && sha.as_ref().is_none_or(|s| lib.sha256.as_ref() == Some(s))
        })
    }

    /// A credential memory read (and nothing else) by an allowed reader. The hash is of the
    /// file the reader runs (`/proc/<pid>/exe`, which cannot be written while it runs); a
    /// reader gone before it could be hashed is not allowed.
    fn allows_reader(&self, a: &Alert) -> bool {
        let only_read = a.detections.iter().all(|d| {
            matches!(
                d,
                Detection::CredentialMemoryRead | Detection::CredentialProcess
            )
        });
        if !only_read || !a.detections.contains(&Detection::CredentialMemoryRead) {
            return false;
        }
        let mut hash: Option<Option<String>> = None;
        self.allow_memory_readers.iter().any(|(exe, sha)| {
            *exe == a.process.exe
                && sha.as_ref().is_none_or(|s| {
                    let h = hash.get_or_insert_with(|| {
                        provenance::digest_file::<sha2::Sha256>(
                            std::path::Path::new(&format!("/proc/{}/exe", a.process.pid)),
                            u64::MAX,
                        )
                        .ok()
                        .flatten()
                    });
                    h.as_ref() == Some(s)
                })
        })
    }
}

impl Policy {
    /// Scores an enriched finding; `None` when the policy drops the alert. What prevention
    /// did is never dropped.
    pub fn judge(&self, f: Finding, clock: &Clock) -> Option<Alert> {
        let alert = f.finish(clock, &self.catalogue);
        if alert.prevention.is_some() {
            return Some(alert);
        }
        (alert.severity >= self.min_severity && !self.allows(&alert)).then_some(alert)
    }

    /// True when the finding concerns a credential process (the process, or the target of a
    /// memory write): its enrichment takes the credential lane.
    pub fn concerns_credentials(&self, f: &Finding) -> bool {
        let (exe, comm) = match &f.target {
            Some(t) => (t.exe.as_str(), t.comm.as_str()),
            None => (f.process.exe.as_str(), f.process.comm.as_str()),
        };
        self.catalogue.matches(exe, comm)
    }
}
