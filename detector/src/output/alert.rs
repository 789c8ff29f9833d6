//! The alert: a stable JSON contract. Later work adds fields; it never renames or removes one.
use std::{
    collections::BTreeSet,
    time::{Duration, SystemTime},
};

use serde::Serialize;

use crate::engine::library::Library;

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// Least to most severe.
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// As the JSON schema spells it.
    pub const fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// Detection types, with stable ids.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Detection {
    PreloadEnv,
    PreloadArgv,
    PreloadFile,
    AuditLibrary,
    UnsafeLibrary,
    LoaderConfigChange,
    PamConfigChange,
    CredentialHooks,
    CredentialProcess,
    MemoryTamper,
    /// Found by a sweep: /etc/ld.so.conf(.d) names a directory a non-root user can write.
    UnsafeLoaderPath,
    /// Found by a sweep: a PAM configuration names a module outside the system directories.
    UnsafePamModule,
    /// An object mapped executable (a library, a module, a program) that the package database
    /// does not vouch for: no package lists it, or its bytes differ from the package's record.
    UnverifiedObject,
    /// A program exec'd with an ELF interpreter (the loader the kernel maps at exec) that the
    /// package database does not vouch for.
    UnverifiedLoader,
    /// A file in a library directory created, written, renamed, linked or unlinked.
    LibraryChange,
    /// A file in a PAM module directory created, written, renamed, linked or unlinked.
    PamModuleChange,
    /// dpkg's record of installed files and their checksums changed.
    PackageDatabaseChange,
    /// A credential process's memory read by another process (`/proc/<pid>/mem`,
    /// process_vm_readv, ptrace read requests).
    CredentialMemoryRead,
    /// The sensor itself attacked: its memory written or attached to, its binary, configuration
    /// or unit file changed, a stop signal (or SIGKILL) sent to it.
    SensorTamper,
    /// Prevention stopped a credential process from running a file (or, in audit mode, would
    /// have): the alert's `prevention` says how and why.
    Prevented,
}

/// The attack a detection belongs to, in rising precedence: an alert's `rule` is the family of
/// its detections that comes last here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    DynamicLinkerHijacking,
    ProcessMemoryTampering,
    PamTampering,
    CredentialApiHooking,
    CredentialDumping,
    SensorTampering,
}

impl Family {
    pub const fn name(self) -> &'static str {
        match self {
            Family::DynamicLinkerHijacking => "dynamic_linker_hijacking",
            Family::ProcessMemoryTampering => "process_memory_tampering",
            Family::PamTampering => "pam_tampering",
            Family::CredentialApiHooking => "credential_api_hooking",
            Family::CredentialDumping => "credential_dumping",
            Family::SensorTampering => "sensor_tampering",
        }
    }
}

/// What follows from a detection alone.
pub struct DetectionMeta {
    /// MITRE ATT&CK techniques it implies (a rule may add the sub-technique it observed).
    pub mitre: &'static [&'static str],
    pub family: Family,
    /// The least severity of an alert that has it.
    pub floor: Severity,
}

impl Detection {
    /// Techniques, family and severity floor: one exhaustive table, so that a new detection
    /// cannot be added without them.
    pub const fn meta(self) -> DetectionMeta {
        use Family::*;
        use Severity::*;
        let (mitre, family, floor): (&'static [&'static str], Family, Severity) = match self {
            Detection::PreloadEnv
            | Detection::PreloadArgv
            | Detection::PreloadFile
            | Detection::AuditLibrary
            | Detection::UnsafeLibrary
            | Detection::UnsafeLoaderPath
            | Detection::UnverifiedObject => (&[T1574_006], DynamicLinkerHijacking, Low),
            Detection::UnverifiedLoader => (&[T1574_006], DynamicLinkerHijacking, High),
            Detection::LibraryChange => (&[T1574_006], DynamicLinkerHijacking, Medium),
            Detection::PamModuleChange => (&[T1556_003], PamTampering, Medium),
            // Rewriting the record hides a replaced file from verification.
            Detection::PackageDatabaseChange => (&[T1565_001], DynamicLinkerHijacking, Medium),
            Detection::LoaderConfigChange => (&[T1574_006], DynamicLinkerHijacking, Medium),
            Detection::PamConfigChange | Detection::UnsafePamModule => {
                (&[T1556_003], PamTampering, High)
            }
            Detection::CredentialHooks => (&[T1056_004], CredentialApiHooking, Low),
            Detection::CredentialProcess => (&[T1056_004], CredentialApiHooking, High),
            // The sub-technique (ptrace or /proc/<pid>/mem) comes from the rule.
            Detection::MemoryTamper => (&[], ProcessMemoryTampering, Low),
            // T1055.008 is added by the rule when ptrace read it.
            Detection::CredentialMemoryRead => (&[T1003_007], CredentialDumping, High),
            // Impair Defenses: Disable or Modify Tools.
            Detection::SensorTamper => (&[T1562_001], SensorTampering, Critical),
            Detection::Prevented => (&[T1574_006], CredentialApiHooking, High),
        };
        DetectionMeta {
            mitre,
            family,
            floor,
        }
    }
}

/// `event.dataset`: seen as it happened (kernel events) or found in place by a /proc sweep.
pub const DATASET_LIVE: &str = "detector.live";
pub const DATASET_SWEEP: &str = "detector.sweep";

pub const T1574_006: &str = "T1574.006";
pub const T1056_004: &str = "T1056.004";
pub const T1556_003: &str = "T1556.003";
pub const T1055_008: &str = "T1055.008";
pub const T1055_009: &str = "T1055.009";
pub const T1565_001: &str = "T1565.001";
pub const T1003_007: &str = "T1003.007";
pub const T1562_001: &str = "T1562.001";

/// Field names are Elastic Common Schema's (`process.name`, `process.executable`,
/// `process.command_line`, `process.parent.pid`, `process.user.id`).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    #[serde(rename = "parent", serialize_with = "pid_object")]
    pub ppid: u32,
    #[serde(rename = "user", serialize_with = "id_object")]
    pub uid: u32,
    #[serde(rename = "name")]
    pub comm: String,
    #[serde(rename = "executable")]
    pub exe: String,
    #[serde(rename = "command_line")]
    pub cmdline: String,
}

impl Process {
    /// No process (a finding about a configuration file); pid 0 is never a user process.
    pub fn is_none(&self) -> bool {
        self.pid == 0
    }
}

fn pid_object<S: serde::Serializer>(pid: &u32, s: S) -> Result<S::Ok, S::Error> {
    serde_json::json!({ "pid": pid }).serialize(s)
}

fn opt_id_object<S: serde::Serializer>(id: &Option<u32>, s: S) -> Result<S::Ok, S::Error> {
    serde_json::json!({ "id": id }).serialize(s)
}

fn id_object<S: serde::Serializer>(id: &u32, s: S) -> Result<S::Ok, S::Error> {
    serde_json::json!({ "id": id }).serialize(s)
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PreloadSource {
    Env,
    Argv,
    File,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Preload {
    pub source: PreloadSource,
    pub variable: &'static str,
    pub value: String,
    /// How many times the variable occurs in the environment (the loader uses the last).
    pub occurrences: u32,
    /// The value was longer than what the kernel captured; `value` holds its head and tail.
    pub truncated: bool,
    /// The ancestor the environment came from, when the process inherited it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inherited_from: Option<Ancestor>,
    /// For `/etc/ld.so.preload` in a live alert: the list file as the process's loader read
    /// it, from the kernel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub list: Option<ListRead>,
}

/// /etc/ld.so.preload as a process's loader read it, from the kernel: the file when the loader
/// mapped it, and whether the loader's copy of its content was captured (`preload.value` then
/// holds the names in it).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ListRead {
    pub inode: u64,
    /// `major:minor`.
    pub device: String,
    pub mtime_sec: i64,
    pub size: u64,
    pub captured: bool,
}

/// A process up the parent chain.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Ancestor {
    pub pid: u32,
    #[serde(rename = "executable")]
    pub exe: String,
}

/// A watched file that changed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ChangedFile {
    /// The watched path.
    pub path: String,
    pub operation: crate::capture::decode::FileOp,
    /// Every path the operation named (a rename's source and destination).
    pub paths: Vec<String>,
    /// The package manager the writer is or descends from: the change is the package's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package_manager: Option<&'static str>,
    /// Whether the path exists once the change settled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
    /// For text configuration: the lines added and removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<LineDiff>,
    /// For a symbolic link: where it points after the change (ECS `file.target_path`)...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_path: Option<String>,
    /// ...and where it pointed before the change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_target_path: Option<String>,
    /// For code (a library, a PAM module, the loader): its new hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<FileHash>,
    /// The package the package database says installed the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// Whether the package database vouches for the file as the change left it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    /// Why it is not verified (`engine::provenance`'s reasons), or why a tool's change is not
    /// trusted (`pam_profile_unverified`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub provenance_reasons: Vec<&'static str>,
    /// What could not be said about the change, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_skipped: Option<String>,
    /// For a change in another mount namespace (a container): that namespace, `mnt:[…]`, or
    /// `unknown` when no process of it was left to look through. `path` is in its view, and
    /// what is said of the file is read there and verified against its own package database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mount_namespace: Option<String>,
    /// That namespace's root, held while the change is described and verified.
    #[serde(skip)]
    pub root: Option<std::sync::Arc<crate::engine::file_view::HeldRoot>>,
    /// What the path is (decides what is said about its change).
    #[serde(skip)]
    pub place: crate::engine::watch::places::Place,
    /// The writer is `pam-auth-update`.
    #[serde(skip)]
    pub by_pam_auth_update: bool,
}

impl ChangedFile {
    pub fn new(
        path: String,
        operation: crate::capture::decode::FileOp,
        paths: Vec<String>,
        place: crate::engine::watch::places::Place,
    ) -> Self {
        ChangedFile {
            path,
            operation,
            paths,
            package_manager: None,
            exists: None,
            diff: None,
            target_path: None,
            previous_target_path: None,
            hash: None,
            package: None,
            verified: None,
            provenance_reasons: Vec::new(),
            content_skipped: None,
            mount_namespace: None,
            root: None,
            place,
            by_pam_auth_update: false,
        }
    }
}

/// Lines of a text file added and removed by a change, in file order.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct LineDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// More lines changed than are listed.
    pub truncated: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FileHash {
    pub sha256: String,
}

/// A configuration file's line, for what a sweep found in it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ConfigLine {
    pub path: String,
    /// 1-based.
    pub line: usize,
    pub text: String,
}

/// What prevention did: stopped a credential process (`outcome` `prevented`) or, in audit
/// mode, would have (`would_prevent`); how (`action`: `kill`, `deny`, `would_kill`,
/// `would_deny`), what
/// (`what`: the mapping, into which process) and why (`reasons`: the kernel's facts about the
/// file, and the package database's answer the daemon listed it for).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Prevention {
    /// `prevent` or `audit`.
    pub mode: &'static str,
    pub action: &'static str,
    pub outcome: &'static str,
    pub what: String,
    pub reasons: Vec<&'static str>,
}

impl Prevention {
    /// Stopped, rather than only said.
    pub fn stopped(&self) -> bool {
        self.outcome == "prevented"
    }
}

/// The process whose memory was written or read.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Target {
    pub pid: u32,
    #[serde(rename = "name")]
    pub comm: String,
    #[serde(rename = "executable")]
    pub exe: String,
    /// The target's real uid, when the target is known.
    #[serde(
        rename = "user",
        serialize_with = "opt_id_object",
        skip_serializing_if = "Option::is_none"
    )]
    pub uid: Option<u32>,
    pub operation: Operation,
    /// The ptrace request (for ptrace).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Bytes asked for, where the kernel saw it (process_vm_readv).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// The signal sent, for a core dump asked for with one (`SIGSEGV`...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
}

/// The sensor attacked (`sensor_tamper`): the daemon's pid, and what was done to it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Sensor {
    pub pid: u32,
    pub reason: String,
}

/// How the target's memory was used: written (`memory_tamper`) or read
/// (`credential_memory_read`). Serialized as the operation's name.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Operation {
    Write(crate::capture::decode::TamperOp),
    Read(crate::capture::decode::ReadOp),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub timestamp: String,
    pub dataset: &'static str,
    pub rule: &'static str,
    pub severity: Severity,
    pub risk_score: u32,
    pub detections: BTreeSet<Detection>,
    pub mitre: Vec<&'static str>,
    pub process: Process,
    pub library: Option<Library>,
    pub preload: Option<Preload>,
    pub file: Option<ChangedFile>,
    pub target: Option<Target>,
    pub config: Option<ConfigLine>,
    pub sensor: Option<Sensor>,
    pub prevention: Option<Prevention>,
    /// Times this alert was seen (same rule, program, library or file, detections) within the
    /// aggregation window; a summary with the final count follows when it is above 1.
    pub count: u64,
    pub first_seen: String,
    pub last_seen: String,
}

impl Severity {
    /// ECS `event.severity`: a number, higher is worse (Elastic's rule scale).
    pub fn score(self) -> u8 {
        match self {
            Severity::Info => 0,
            Severity::Low => 21,
            Severity::Medium => 47,
            Severity::High => 73,
            Severity::Critical => 99,
        }
    }
}

/// The alert as sinks write it: Elastic Common Schema names where ECS has the field
/// (`@timestamp`, `event.*`, `rule.name`, `threat.*`, `process.*`, `file.path`), this sensor's
/// own names for the rest (`severity`, `detections`, `count`, `library`, `preload`, `target`).
impl Serialize for Alert {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Event<'a> {
            kind: &'static str,
            category: [&'static str; 1],
            #[serde(rename = "type")]
            kind_of: [&'static str; 1],
            #[serde(skip_serializing_if = "Option::is_none")]
            action: Option<&'static str>,
            module: &'static str,
            dataset: &'static str,
            severity: u8,
            risk_score: u32,
            start: &'a str,
            end: &'a str,
        }
        #[derive(Serialize)]
        struct Rule {
            name: &'static str,
        }
        #[derive(Serialize)]
        struct Technique<'a> {
            id: &'a [&'static str],
        }
        #[derive(Serialize)]
        struct Threat<'a> {
            framework: &'static str,
            technique: Technique<'a>,
        }
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(rename = "@timestamp")]
            timestamp: &'a str,
            event: Event<'a>,
            rule: Rule,
            severity: Severity,
            detections: &'a BTreeSet<Detection>,
            count: u64,
            threat: Threat<'a>,
            #[serde(skip_serializing_if = "Process::is_none")]
            process: &'a Process,
            #[serde(skip_serializing_if = "Option::is_none")]
            library: Option<&'a Library>,
            #[serde(skip_serializing_if = "Option::is_none")]
            preload: Option<&'a Preload>,
            #[serde(skip_serializing_if = "Option::is_none")]
            file: Option<&'a ChangedFile>,
            #[serde(skip_serializing_if = "Option::is_none")]
            target: Option<&'a Target>,
            #[serde(skip_serializing_if = "Option::is_none")]
            config: Option<&'a ConfigLine>,
            #[serde(skip_serializing_if = "Option::is_none")]
            sensor: Option<&'a Sensor>,
            #[serde(skip_serializing_if = "Option::is_none")]
            prevention: Option<&'a Prevention>,
        }
        Out {
            timestamp: &self.timestamp,
            event: Event {
                kind: "alert",
                category: ["intrusion_detection"],
                kind_of: [match &self.prevention {
                    Some(p) if p.stopped() => "denied",
                    _ => "info",
                }],
                action: self.prevention.as_ref().map(|p| p.action),
                module: "detector",
                dataset: self.dataset,
                severity: self.severity.score(),
                risk_score: self.risk_score,
                start: &self.first_seen,
                end: &self.last_seen,
            },
            rule: Rule { name: self.rule },
            severity: self.severity,
            detections: &self.detections,
            count: self.count,
            threat: Threat {
                framework: "MITRE ATT&CK",
                technique: Technique { id: &self.mitre },
            },
            process: &self.process,
            library: self.library.as_ref(),
            preload: self.preload.as_ref(),
            file: self.file.as_ref(),
            target: self.target.as_ref(),
            config: self.config.as_ref(),
            sensor: self.sensor.as_ref(),
            prevention: self.prevention.as_ref(),
        }
        .serialize(s)
    }
}

/// Turns the kernel's boot-time clock into wall-clock RFC 3339 timestamps.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    boot_epoch: Duration,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    pub fn new() -> Self {
        let real = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid out-pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
        let boot = Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
        Clock {
            boot_epoch: real.saturating_sub(boot),
        }
    }

    #[cfg(test)]
    pub fn fixed(boot_epoch: Duration) -> Self {
        Clock { boot_epoch }
    }

    pub fn rfc3339_now(&self) -> String {
        humantime::format_rfc3339_micros(SystemTime::now()).to_string()
    }

    pub fn rfc3339(&self, ktime_ns: u64) -> String {
        let t = SystemTime::UNIX_EPOCH + self.boot_epoch + Duration::from_nanos(ktime_ns);
        humantime::format_rfc3339_micros(t).to_string()
    }
}

/// A preload_env alert for `/usr/bin/true` with the given pid and timestamp, for tests.
#[cfg(test)]
pub fn test_alert(pid: u32, ts: &str) -> Alert {
    Alert {
        timestamp: ts.into(),
        dataset: DATASET_LIVE,
        rule: "dynamic_linker_hijacking",
        severity: Severity::Medium,
        risk_score: 1,
        detections: BTreeSet::from([Detection::PreloadEnv]),
        mitre: vec![T1574_006],
        process: Process {
            pid,
            ppid: 1,
            uid: 0,
            comm: "true".into(),
            exe: "/usr/bin/true".into(),
            cmdline: "true".into(),
        },
        library: None,
        preload: None,
        file: None,
        target: None,
        config: None,
        sensor: None,
        prevention: None,
        count: 1,
        first_seen: ts.into(),
        last_seen: ts.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        let c = Clock::fixed(Duration::from_secs(1_700_000_000));
        assert_eq!(c.rfc3339(1_500_000), "2023-11-14T22:13:20.001500Z");
    }

    #[test]
    fn ids_serialize_stably() {
        let s = serde_json::to_string(&(Detection::PreloadEnv, Severity::High, PreloadSource::Env))
            .unwrap();
        assert_eq!(s, r#"["preload_env","high","env"]"#);
    }

    #[test]
    fn absent_parts_are_left_out_not_null() {
        let v = serde_json::to_value(test_alert(1, "2026-01-01T00:00:00Z")).unwrap();
        let map = v.as_object().unwrap();
        for key in ["prevention", "sensor", "target", "config", "file"] {
            assert!(!map.contains_key(key), "{key} in {v}");
        }
        assert!(map.values().all(|x| !x.is_null()), "{v}");
    }
}
