//! The alert: a stable JSON contract. Later work adds fields; it never renames or removes one.
use std::{
    collections::BTreeSet,
    time::{Duration, SystemTime},
};

use serde::Serialize;

use crate::library::Library;

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[expect(dead_code, reason = "in the schema; no rule raises info yet")]
    Info,
    Low,
    Medium,
    High,
    Critical,
}

/// Detection types, with stable ids.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Detection {
    PreloadEnv,
    PreloadArgv,
    AuditLibrary,
    UnsafeLibrary,
    LoaderConfigChange,
    PamConfigChange,
    CredentialProcess,
    MemoryTamper,
}

pub const T1574_006: &str = "T1574.006";
pub const T1056_004: &str = "T1056.004";
pub const T1556_003: &str = "T1556.003";
pub const T1055_008: &str = "T1055.008";
pub const T1055_009: &str = "T1055.009";

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub comm: String,
    pub exe: String,
    pub cmdline: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PreloadSource {
    Env,
    Argv,
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
}

/// A watched file that changed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FileChange {
    /// The watched path.
    pub path: String,
    pub operation: crate::event::FileOp,
    /// Every path the operation named (a rename's source and destination).
    pub paths: Vec<String>,
}

/// The process whose memory was written.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Target {
    pub pid: u32,
    pub comm: String,
    pub exe: String,
    pub operation: crate::event::TamperOp,
    /// The ptrace request (for ptrace).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Alert {
    pub timestamp: String,
    pub rule: &'static str,
    pub severity: Severity,
    pub risk_score: u32,
    pub detections: BTreeSet<Detection>,
    pub mitre: Vec<&'static str>,
    pub process: Process,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub library: Option<Library>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preload: Option<Preload>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<FileChange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
}

/// Turns the kernel's boot-time clock into wall-clock RFC 3339 timestamps.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    boot_epoch: Duration,
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

    pub fn rfc3339(&self, ktime_ns: u64) -> String {
        let t = SystemTime::UNIX_EPOCH + self.boot_epoch + Duration::from_nanos(ktime_ns);
        humantime::format_rfc3339_micros(t).to_string()
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
}
