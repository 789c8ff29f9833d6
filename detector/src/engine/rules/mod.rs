//! Detection rules, one file each, behind one trait and one registry. The daemon (kernel events)
//! and the sweeps (`detector run` at start, `detector scan`: what /proc and /etc show) hand the
//! same rules their [`Observation`]s. The scoring they share: a risk score equal to the number
//! of distinct detection types, as the source detection does
//! (`RiskScore = array_length(make_set(DetectionType))`).
pub mod config_change;
pub mod credential_memory_read;
pub mod loader_argv;
pub mod loader_env;
pub mod memory_tamper;
pub mod preload_file;
pub mod prevented;
pub mod sensor_tamper;
pub mod unsafe_library;
pub mod unsafe_loader_path;
pub mod unsafe_pam_module;
pub mod unverified_loader;
pub mod unverified_object;

use std::{collections::BTreeSet, path::Path};

use crate::{
    capture::decode::{Exec, FileChange, LoaderEnv, MemRead, MemTamper, Mmap, PreloadList, Signal},
    engine::credential::Catalogue,
    engine::library::Library,
    output::alert::{
        Alert, ChangedFile, Clock, ConfigLine, Detection, Preload, Prevention, Process, Sensor,
        Severity, Target, DATASET_LIVE, DATASET_SWEEP,
    },
};
use config_change::Watched;

/// The rules, in the order they see each observation. When two find the same library in the
/// same process, the first one's finding is kept (one alert per process and library).
pub fn registry() -> Vec<Box<dyn Rule>> {
    vec![
        Box::new(prevented::PreventedMapping),
        Box::new(loader_argv::LoaderArgv),
        Box::new(loader_env::LoaderVariables),
        Box::new(preload_file::PreloadFile::new()),
        Box::new(unverified_loader::UnverifiedLoader),
        Box::new(unsafe_library::UnsafeLibrary),
        Box::new(config_change::ConfigChange),
        Box::new(memory_tamper::MemoryTamper),
        Box::new(credential_memory_read::CredentialMemoryRead),
        Box::new(sensor_tamper::SensorTamper),
        Box::new(unsafe_loader_path::UnsafeLoaderPath),
        Box::new(unsafe_pam_module::UnsafePamModule),
        Box::new(unverified_object::UnverifiedObject::default()),
    ]
}

/// What a rule is shown: an event the kernel captured, or what a sweep found in place.
pub enum Observation<'a> {
    Exec(&'a Exec),
    LoaderEnv(&'a LoaderEnv),
    Mmap(&'a Mmap),
    /// A mapping prevention stopped, or in audit mode would have (reported by prevention's
    /// own programs; the mapping programs report the mapping itself as an `Mmap`).
    Prevented(&'a Mmap),
    /// An executable file mapping a sweep found in /proc/<pid>/maps.
    Mapped(&'a Library),
    FileChange(&'a FileChange),
    /// A write into another process's memory, with the target when it is known.
    MemTamper(&'a MemTamper, Option<&'a Process>),
    /// A read of another process's memory, with the target when it is known.
    MemRead(&'a MemRead, Option<&'a Process>),
    /// A signal sent to the daemon.
    Signal(&'a Signal),
    /// /etc/ld.so.preload as the process's loader read it.
    PreloadList(&'a PreloadList),
    /// The loader's and PAM's configuration under this directory (normally /etc), as a sweep
    /// reads it.
    Configuration(&'a Path),
}

/// What every rule may consult besides the observation.
pub struct Context<'a> {
    /// The process the observation is about (no process for `Configuration`).
    pub process: &'a Process,
    /// Kernel time of the event; 0 for what a sweep found.
    pub ktime_ns: u64,
    pub catalogue: &'a Catalogue,
    pub watched: &'a Watched,
    /// The package manager the process is or descends from (`package_manager::recognise`).
    pub package_manager: Option<&'static str>,
    /// The image builder the process is or descends from
    /// (`package_manager::recognise_image_builder`).
    pub image_builder: Option<&'static str>,
}

#[cfg(test)]
impl<'a> Context<'a> {
    /// The context rules' unit tests judge in: `process`, kernel time 1, the built-in
    /// catalogue, the default watched places, no package manager or image builder.
    pub fn for_test(process: &'a Process) -> Context<'a> {
        static CATALOGUE: std::sync::LazyLock<Catalogue> =
            std::sync::LazyLock::new(Catalogue::default);
        static WATCHED: std::sync::LazyLock<Watched> = std::sync::LazyLock::new(Watched::default);
        Context {
            process,
            ktime_ns: 1,
            catalogue: &CATALOGUE,
            watched: &WATCHED,
            package_manager: None,
            image_builder: None,
        }
    }
}

pub trait Rule: Send {
    /// Whether this exec concerns the rule. Most execs concern none, and the reader then does
    /// not copy the process out of its table.
    fn wants_exec(&mut self, _exec: &Exec) -> bool {
        false
    }

    fn evaluate(&mut self, cx: &Context, observation: &Observation) -> Vec<Finding>;

    /// Process `pid` exited: what the rule held back for it, if anything.
    fn exited(&mut self, _pid: u32) -> Vec<Finding> {
        Vec::new()
    }
}

/// An ordinary named file a process that handles no credentials mapped by itself — no preload
/// mechanism, no credential API defined, its analysis complete: an application's own library (a
/// virtualenv's native extension, a runtime's library unpacked to /tmp). Low at most. Objects
/// that never had a name (memfd, deleted, O_TMPFILE) are not ordinary files and stay medium.
fn application_library(d: &BTreeSet<Detection>, lib: &Library) -> bool {
    d.iter().all(|x| *x == Detection::UnsafeLibrary)
        && lib.exists
        && lib.enrichment_skipped.is_empty()
        && lib.sha256.is_some()
        && !lib
            .unsafe_reasons
            .iter()
            .any(|r| matches!(*r, "memfd" | "deleted"))
}

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
    /// The sensor was the target (`sensor_tamper`).
    pub sensor: Option<Sensor>,
    /// What prevention did, for a mapping the kernel stopped or would have.
    pub prevention: Option<Prevention>,
    /// Techniques beyond those the detections imply.
    pub mitre: Vec<&'static str>,
    /// The least severity this finding deserves on its own.
    pub floor: Severity,
    /// The most severity it can have (a change a package manager made is information).
    pub ceiling: Severity,
    /// The library is to be verified against the package database by enrichment: when the
    /// database vouches for it, `UnverifiedObject` and `UnverifiedLoader` are taken off the
    /// finding, and a finding left with no detection is dropped.
    pub verify: bool,
    /// The image builder the process is or descends from, for a file to verify that is under
    /// another root than the host's (the tree it builds): an unverified answer is asked again
    /// once no image builder runs, when the tree's package database is complete.
    pub image_builder: Option<&'static str>,
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
            sensor: None,
            prevention: None,
            mitre: Vec::new(),
            floor: Severity::Low,
            ceiling: Severity::Critical,
            verify: false,
            image_builder: None,
        }
    }

    /// A finding about a line of a configuration file (no process).
    pub fn config_line(detection: Detection, path: &Path, n: usize, line: &str) -> Self {
        let mut f = Finding::new(0, Process::default(), detection);
        f.config = Some(ConfigLine {
            path: path.display().to_string(),
            line: n + 1,
            text: line.trim().to_owned(),
        });
        f
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
        let floor = d
            .iter()
            .map(|x| x.meta().floor)
            .max()
            .unwrap_or(Severity::Info);
        let severity = if credential
            && (d.contains(&Detection::UnsafeLibrary)
                || self.library.as_ref().is_some_and(|lib| {
                    lib.is_unverified()
                        && (d.contains(&Detection::CredentialHooks)
                            || lib.constructors == Some(true))
                })) {
            // Anything unpackaged or modified inside a credential process is high (below); with
            // credential hooks, a constructor of its own or an unsafe location it is critical.
            Severity::Critical
        } else if credential {
            Severity::High
        } else if self
            .library
            .as_ref()
            .is_some_and(|lib| lib.is_system() || application_library(d, lib))
        {
            Severity::Low
        } else {
            Severity::Medium
        }
        .max(floor)
        .max(self.floor)
        .min(self.ceiling);
        let mut mitre: Vec<&'static str> = Vec::new();
        for technique in d.iter().flat_map(|x| x.meta().mitre).chain(&self.mitre) {
            if !mitre.contains(technique) {
                mitre.push(technique);
            }
        }
        let rule = d
            .iter()
            .map(|x| x.meta().family)
            .max()
            .map_or("dynamic_linker_hijacking", |f| f.name());
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
            sensor: self.sensor,
            prevention: self.prevention,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped(reasons: &[&'static str], detections: &[Detection]) -> Severity {
        let process = Process {
            pid: 4242,
            exe: "/usr/bin/python3.11".into(),
            comm: "python3".into(),
            ..Process::default()
        };
        let mut f = Finding::new(1, process, Detection::UnsafeLibrary);
        f.detections.extend(detections.iter().copied());
        f.library = Some(Library {
            path: "/srv/app/venv/lib/ext.so".into(),
            exists: true,
            unsafe_reasons: reasons.to_vec(),
            sha256: Some("00".repeat(32)),
            ..Library::default()
        });
        let clock = Clock::fixed(std::time::Duration::ZERO);
        f.finish(&clock, &Catalogue::default()).severity
    }

    #[test]
    fn an_applications_own_library_is_low_and_never_named_objects_stay_medium() {
        assert_eq!(mapped(&["owned_by_non_root"], &[]), Severity::Low);
        assert_eq!(
            mapped(&["world_writable_location", "tmpfs"], &[]),
            Severity::Low
        );
        assert_eq!(mapped(&["memfd"], &[]), Severity::Medium);
        assert_eq!(mapped(&["deleted"], &[]), Severity::Medium);
        // Hooks, or a preload mechanism, keep it medium.
        assert_eq!(
            mapped(&["owned_by_non_root"], &[Detection::CredentialHooks]),
            Severity::Medium
        );
        assert_eq!(
            mapped(&["owned_by_non_root"], &[Detection::PreloadEnv]),
            Severity::Medium
        );
    }

    #[test]
    fn unverified_objects_are_high_in_credential_processes_and_critical_with_code_of_their_own() {
        let score = |exe: &str, reason: &'static str, constructors: bool, hooks: bool| {
            let process = Process {
                pid: 4243,
                exe: exe.into(),
                comm: exe.rsplit('/').next().unwrap().into(),
                ..Process::default()
            };
            let mut f = Finding::new(1, process, Detection::UnverifiedObject);
            if hooks {
                f.detections.insert(Detection::CredentialHooks);
            }
            f.library = Some(Library {
                path: "/usr/lib/x86_64-linux-gnu/libkeyutils.so.1.10".into(),
                exists: true,
                owner_uid: Some(0),
                unsafe_reasons: vec![reason],
                verified: Some(false),
                constructors: Some(constructors),
                ..Library::default()
            });
            let clock = Clock::fixed(std::time::Duration::ZERO);
            let a = f.finish(&clock, &Catalogue::default());
            assert!(!a.detections.contains(&Detection::UnsafeLibrary));
            a.severity
        };
        let (not_packaged, modified) = ("not_from_package", "modified_since_package");
        assert_eq!(
            score("/usr/bin/ssh", not_packaged, false, false),
            Severity::High
        );
        assert_eq!(score("/usr/bin/su", modified, false, false), Severity::High);
        assert_eq!(
            score("/usr/bin/ssh", not_packaged, true, false),
            Severity::Critical
        );
        assert_eq!(
            score("/usr/bin/su", modified, false, true),
            Severity::Critical
        );
        // Elsewhere a modified packaged file is medium, not a system library's low.
        assert_eq!(
            score("/usr/bin/git", modified, false, false),
            Severity::Medium
        );
    }

    #[test]
    fn configuration_files() {
        let root = std::env::temp_dir().join(format!("detector-sweep-{}", std::process::id()));
        let etc = root.join("etc");
        let open_dir = root.join("open");
        std::fs::create_dir_all(etc.join("ld.so.conf.d")).unwrap();
        std::fs::create_dir_all(etc.join("pam.d")).unwrap();
        std::fs::create_dir_all(&open_dir).unwrap();
        std::fs::set_permissions(
            &open_dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        std::fs::write(etc.join("ld.so.preload"), "/tmp/a.so /tmp/b.so\n").unwrap();
        std::fs::write(
            etc.join("ld.so.conf.d/x.conf"),
            format!("# comment\n/usr/lib\n{}\n", open_dir.display()),
        )
        .unwrap();
        std::fs::write(
            etc.join("pam.d/sshd"),
            "auth required pam_unix.so\nauth optional /tmp/evil.so\nauth optional /usr/lib/x86_64-linux-gnu/security/pam_env.so\n",
        )
        .unwrap();
        let mut found = Vec::new();
        let process = Process::default();
        let cx = Context {
            ktime_ns: 0,
            ..Context::for_test(&process)
        };
        for mut rule in registry() {
            found.extend(rule.evaluate(&cx, &Observation::Configuration(&etc)));
        }
        let _ = std::fs::remove_dir_all(&root);
        let kinds: Vec<(Detection, usize)> = found
            .iter()
            .map(|f| {
                (
                    *f.detections.first().unwrap(),
                    f.config.as_ref().unwrap().line,
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                (Detection::PreloadFile, 1),
                (Detection::PreloadFile, 1),
                (Detection::UnsafeLoaderPath, 3),
                (Detection::UnsafePamModule, 2),
                (Detection::UnverifiedObject, 1),
                (Detection::UnverifiedObject, 3),
            ]
        );
        assert_eq!(found[3].library.as_ref().unwrap().path, "/tmp/evil.so");
        // The modules in the system directory are to be verified, by their real paths.
        for f in &found[4..] {
            assert!(f.verify && f.floor == Severity::High);
            let path = &f.library.as_ref().unwrap().path;
            assert!(path.contains("/security/pam_"), "{path}");
        }
    }
}
