//! Configuration: /etc/detector/detector.toml.
//!
//! The file is TOML; every table and key is optional and a missing key takes its default
//! (`Config::default()`), so an empty file is a valid configuration. Unknown keys are errors
//! (`deny_unknown_fields` everywhere): a typo must not silently turn a setting off.
//!
//! Errors are one line, `<origin>:<line>: <what is wrong>`, pointing at the offending key or
//! value: syntax errors, unknown keys, wrong types and the semantic checks done while
//! deserializing (empty `reason`, malformed `sha256`, unparseable syslog target, ...).

use std::fmt;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::anyhow;
use serde::de::{Deserializer, Error as _, Visitor};
use serde::Deserialize;

/// Where the daemon looks when `--config` is not given. A missing file here means defaults.
pub const DEFAULT_PATH: &str = "/etc/detector/detector.toml";

/// The whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub catalogue: CatalogueSection,
    pub allow: Allow,
    #[serde(deserialize_with = "output")]
    pub output: Output,
    pub thresholds: Thresholds,
    pub capture: CaptureCfg,
    pub enrichment: EnrichmentCfg,
    pub metrics: MetricsCfg,
    pub prevent: PreventCfg,
}

/// `[prevent]`: stopping what the kernel sees a credential process about to run. Off (detect)
/// by default; applied again on SIGHUP (a reload back to `detect` stops all prevention).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PreventCfg {
    pub mode: PreventMode,
    /// Stop executable mappings of files the kernel itself sees as unsafe: memfd, deleted,
    /// tmpfs or ramfs, not owned by root, writable by group or others, or in a directory that
    /// is not root's alone.
    pub unsafe_files: bool,
    /// Stop executable mappings of file versions the package database did not vouch for
    /// (unpackaged or modified), as the daemon found them.
    pub unverified_files: bool,
    /// Stop an exec of a credential program whose ELF interpreter is such a file.
    pub interpreter: bool,
    /// How a mapping is stopped: `auto` (refused with EPERM where BPF LSM runs, the process
    /// killed elsewhere) or `kill` (always the kill path).
    pub stop: StopPath,
}

/// `[prevent] stop`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StopPath {
    #[default]
    Auto,
    Kill,
}

impl Default for PreventCfg {
    fn default() -> Self {
        PreventCfg {
            mode: PreventMode::Detect,
            unsafe_files: true,
            unverified_files: true,
            interpreter: true,
            stop: StopPath::Auto,
        }
    }
}

/// `[prevent] mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PreventMode {
    /// Alerts only.
    #[default]
    Detect,
    /// Alerts that say what would have been stopped; nothing is stopped.
    Audit,
    /// Stops it, and alerts.
    Prevent,
}

impl PreventMode {
    pub const fn name(self) -> &'static str {
        match self {
            PreventMode::Detect => "detect",
            PreventMode::Audit => "audit",
            PreventMode::Prevent => "prevent",
        }
    }
}

/// `[metrics]`: the Prometheus endpoint (read at start; a reload keeps it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsCfg {
    /// Where `GET /metrics` is served (`"127.0.0.1:9417"`); none when absent.
    pub listen: Option<std::net::SocketAddr>,
}

/// `[catalogue]`: credential-handling programs added to the built-in catalogue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogueSection {
    /// Executable basenames ("vault") or absolute paths ("/opt/corp/bin/authd").
    #[serde(deserialize_with = "program_names")]
    pub extra: Vec<String>,
}

/// `[allow]`: what never alerts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Allow {
    /// `[[allow.library]]` entries.
    pub library: Vec<AllowLibrary>,
    /// `[[allow.process]]` entries.
    pub process: Vec<AllowProcess>,
    /// `[[allow.memory_reader]]` entries.
    pub memory_reader: Vec<AllowMemoryReader>,
}

/// `[[allow.memory_reader]]`: a program whose reads of credential processes' memory
/// (`credential_memory_read`) do not alert; its other alerts still do.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowMemoryReader {
    /// Absolute path of the executable, matched exactly.
    #[serde(deserialize_with = "absolute_path")]
    pub exe: String,
    /// When set, only an executable with this content is allowed: 64 hex digits, stored
    /// lowercase.
    #[serde(default, deserialize_with = "sha256")]
    pub sha256: Option<String>,
    /// Why it is allowed (required, non-empty).
    #[serde(deserialize_with = "reason")]
    pub reason: String,
}

/// `[[allow.library]]`: a library that never alerts.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowLibrary {
    /// Absolute path, matched exactly.
    #[serde(deserialize_with = "absolute_path")]
    pub path: String,
    /// When set, only a file with this content is allowed: 64 hex digits, stored lowercase.
    #[serde(default, deserialize_with = "sha256")]
    pub sha256: Option<String>,
    /// Why it is allowed (required, non-empty): the audit trail for the exception.
    #[serde(deserialize_with = "reason")]
    pub reason: String,
}

/// `[[allow.process]]`: a process whose alerts are dropped.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowProcess {
    /// Absolute path of the executable, matched exactly.
    #[serde(deserialize_with = "absolute_path")]
    pub exe: String,
    /// Why it is allowed (required, non-empty).
    #[serde(deserialize_with = "reason")]
    pub reason: String,
}

/// `[output]`: where alerts go. At least one destination must be enabled.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Output {
    /// JSON lines on stdout.
    pub stdout: bool,
    /// Append JSON lines to this file (absolute path).
    #[serde(deserialize_with = "absolute_pathbuf")]
    pub file: Option<PathBuf>,
    /// Send to a syslog daemon.
    pub syslog: Option<SyslogTarget>,
    /// Facility of the syslog messages.
    pub syslog_facility: Facility,
}

impl Default for Output {
    fn default() -> Self {
        Output {
            stdout: true,
            file: None,
            syslog: None,
            syslog_facility: Facility::Auth,
        }
    }
}

/// A syslog daemon's address: `unix:/dev/log`, `udp://127.0.0.1:514`, `tcp://127.0.0.1:601`
/// (the port may be left out: 514 for UDP, 601 for TCP; IPv6 as `udp://[::1]:514`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogTarget {
    /// A local datagram socket (absolute path).
    Unix(PathBuf),
    /// RFC 5426.
    Udp(SocketAddr),
    /// RFC 6587.
    Tcp(SocketAddr),
}

const SYSLOG_FORMS: &str = "`unix:/dev/log`, `udp://127.0.0.1:514` or `tcp://127.0.0.1:601`";

impl FromStr for SyslogTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("invalid syslog target `{s}`: {why}");
        if let Some(path) = s.strip_prefix("unix:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if !path.starts_with('/') {
                return Err(bad(
                    "the socket path must be absolute, as in `unix:/dev/log`",
                ));
            }
            return Ok(SyslogTarget::Unix(PathBuf::from(path)));
        }
        let (addr, port, make): (_, _, fn(SocketAddr) -> Self) =
            if let Some(a) = s.strip_prefix("udp://") {
                (a, 514, SyslogTarget::Udp)
            } else if let Some(a) = s.strip_prefix("tcp://") {
                (a, 601, SyslogTarget::Tcp)
            } else {
                return Err(bad(&format!("expected {SYSLOG_FORMS}")));
            };
        let addr = addr.strip_suffix('/').unwrap_or(addr);
        if let Ok(sa) = addr.parse::<SocketAddr>() {
            if sa.port() == 0 {
                return Err(bad("port 0"));
            }
            return Ok(make(sa));
        }
        let host = addr
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or(addr);
        match host.parse::<IpAddr>() {
            Ok(ip) => Ok(make(SocketAddr::new(ip, port))),
            Err(_) => Err(bad(
                "expected an IP address and optional port, as in `udp://127.0.0.1:514` \
                 (host names are not resolved)",
            )),
        }
    }
}

impl fmt::Display for SyslogTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyslogTarget::Unix(p) => write!(f, "unix:{}", p.display()),
            SyslogTarget::Udp(a) => write!(f, "udp://{a}"),
            SyslogTarget::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

impl<'de> Deserialize<'de> for SyslogTarget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, str::parse)
    }
}

/// Syslog facility.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Facility {
    Kern,
    User,
    Mail,
    Daemon,
    #[default]
    Auth,
    Syslog,
    Authpriv,
    Local0,
    Local1,
    Local2,
    Local3,
    Local4,
    Local5,
    Local6,
    Local7,
}

impl Facility {
    /// The numeric facility (RFC 5424 section 6.2.1; auth is 4): PRI = code * 8 + severity.
    pub fn code(self) -> u8 {
        match self {
            Facility::Kern => 0,
            Facility::User => 1,
            Facility::Mail => 2,
            Facility::Daemon => 3,
            Facility::Auth => 4,
            Facility::Syslog => 5,
            Facility::Authpriv => 10,
            Facility::Local0 => 16,
            Facility::Local1 => 17,
            Facility::Local2 => 18,
            Facility::Local3 => 19,
            Facility::Local4 => 20,
            Facility::Local5 => 21,
            Facility::Local6 => 22,
            Facility::Local7 => 23,
        }
    }
}

/// `[thresholds]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// Alerts below this severity are not emitted.
    pub min_severity: MinSeverity,
    /// Repeats of one alert within this many seconds are counted, not re-emitted (0 = off).
    pub aggregate_window_secs: u64,
    /// Seconds between periodic stats records (0 = off).
    pub stats_interval_secs: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            min_severity: MinSeverity::Info,
            aggregate_window_secs: 300,
            stats_interval_secs: 60,
        }
    }
}

/// `[capture]`: which kernel channels the daemon attaches (read at start; a reload keeps them).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaptureCfg {
    /// Attach the syscall tracepoints (mmap/mprotect, opens for write, renames, unlinks,
    /// truncates, ptrace, process_vm_writev). Off: only the scheduler's exec and exit.
    pub syscalls: bool,
}

impl Default for CaptureCfg {
    fn default() -> Self {
        CaptureCfg { syscalls: true }
    }
}

/// `[enrichment]`: reading the files alerts name (hash, ELF analysis), off the reader's path.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnrichmentCfg {
    /// A file bigger than this is analysed (headers and tables) but not hashed; its alert says
    /// so in `library.enrichment_skipped`.
    pub hash_budget_mib: u64,
    /// An alert waits at most this long for its file's analysis, then goes out without it.
    pub deadline_ms: u64,
    /// Threads reading other processes' files; alerts about credential processes have a
    /// thread of their own besides.
    pub workers: usize,
}

impl Default for EnrichmentCfg {
    fn default() -> Self {
        EnrichmentCfg {
            hash_budget_mib: 64,
            deadline_ms: 3000,
            workers: 1,
        }
    }
}

/// The lowest severity emitted, least to most severe (mapped to the alert severity by rank).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MinSeverity {
    #[default]
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl MinSeverity {
    /// 0 (info) ..= 4 (critical).
    pub fn rank(self) -> u8 {
        self as u8
    }
}

/// Reads and parses the file at `path`. A missing file is an error when the path was given
/// explicitly, and means `Config::default()` otherwise. Errors are one line.
pub fn load(path: &Path, explicit: bool) -> anyhow::Result<Config> {
    let origin = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &origin).map_err(|e| anyhow!(e)),
        Err(e) if e.kind() == ErrorKind::NotFound && !explicit => Ok(Config::default()),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            Err(anyhow!("{origin}: configuration file not found"))
        }
        Err(e) => Err(anyhow!("{origin}: cannot read the configuration file: {e}")),
    }
}

/// Parses configuration text; `origin` names it in errors (`<origin>:<line>: <message>`).
pub fn parse(text: &str, origin: &str) -> Result<Config, String> {
    toml::from_str(text).map_err(|e| {
        let msg = one_line(e.message());
        match e.span() {
            Some(span) => format!("{origin}:{}: {msg}", line_of(text, span.start)),
            None => format!("{origin}: {msg}"),
        }
    })
}

/// The 1-based line holding byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Joins the lines of a (possibly multi-line) toml message with "; ".
fn one_line(msg: &str) -> String {
    msg.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

// Field validators. A check runs inside the deserializer's visit of the string (`checked`), so
// toml attaches the span of that very value (an array element, not the whole array) to its error.

fn output<'de, D: Deserializer<'de>>(d: D) -> Result<Output, D::Error> {
    let out = Output::deserialize(d)?;
    if !out.stdout && out.file.is_none() && out.syslog.is_none() {
        return Err(D::Error::custom(
            "no output enabled: alerts would be dropped; set `stdout = true`, `file` or `syslog`",
        ));
    }
    Ok(out)
}

/// Deserializes a string and checks/converts it with `check`.
fn checked<'de, D, T>(d: D, check: fn(&str) -> Result<T, String>) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct Check<T>(fn(&str) -> Result<T, String>);

    impl<T> Visitor<'_> for Check<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }

        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
            (self.0)(v).map_err(E::custom)
        }
    }

    d.deserialize_str(Check(check))
}

fn check_reason(r: &str) -> Result<String, String> {
    if r.trim().is_empty() {
        return Err("`reason` is empty: say why this exception is safe".into());
    }
    Ok(r.to_owned())
}

fn check_absolute(p: &str) -> Result<String, String> {
    if !p.starts_with('/') {
        return Err(format!(
            "`{p}` is not an absolute path (paths are matched exactly)"
        ));
    }
    Ok(p.to_owned())
}

fn check_sha256(h: &str) -> Result<Option<String>, String> {
    if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "invalid sha256 `{h}`: expected 64 hex digits (as printed by sha256sum)"
        ));
    }
    Ok(Some(h.to_ascii_lowercase()))
}

fn check_program(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err("empty program name".into());
    }
    if s.contains('/') && !s.starts_with('/') {
        return Err(format!(
            "`{s}`: expected an executable's basename or an absolute path"
        ));
    }
    if s.ends_with('/') {
        return Err(format!("`{s}` is a directory, expected an executable"));
    }
    Ok(s.to_owned())
}

fn reason<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    checked(d, check_reason)
}

fn absolute_path<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    checked(d, check_absolute)
}

fn absolute_pathbuf<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    absolute_path(d).map(|p| Some(PathBuf::from(p)))
}

fn sha256<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    checked(d, check_sha256)
}

/// A `catalogue.extra` entry: a basename or an absolute path.
struct ProgramName(String);

impl<'de> Deserialize<'de> for ProgramName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, check_program).map(ProgramName)
    }
}

fn program_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Vec::<ProgramName>::deserialize(d)?
        .into_iter()
        .map(|p| p.0)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
[catalogue]
extra = ["vault", "/opt/corp/bin/authd"]

[[allow.library]]
path = "/usr/lib/x86_64-linux-gnu/libfakeroot/libfakeroot-sysv.so"
sha256 = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
reason = "fakeroot in package builds"

[[allow.library]]
path = "/usr/lib/libfoo.so"
reason = "vendor agent"

[[allow.process]]
exe = "/usr/bin/fakeroot-sysv"
reason = "package builds"

[[allow.memory_reader]]
exe = "/usr/bin/gdb"
sha256 = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
reason = "the on-call debugger"

[output]
stdout = false
file = "/var/log/detector/alerts.jsonl"
syslog = "udp://127.0.0.1:514"
syslog_facility = "local3"

[thresholds]
min_severity = "low"
aggregate_window_secs = 0
stats_interval_secs = 30
"#;

    fn err(text: &str) -> String {
        parse(text, "t.toml").expect_err("should fail")
    }

    fn target(s: &str) -> Result<SyslogTarget, String> {
        s.parse()
    }

    #[test]
    fn defaults() {
        let c = Config::default();
        assert!(c.catalogue.extra.is_empty());
        assert!(c.allow.library.is_empty() && c.allow.process.is_empty());
        assert!(c.allow.memory_reader.is_empty());
        assert!(c.output.stdout);
        assert_eq!(c.output.file, None);
        assert_eq!(c.output.syslog, None);
        assert_eq!(c.output.syslog_facility, Facility::Auth);
        assert_eq!(c.output.syslog_facility.code(), 4);
        assert_eq!(c.thresholds.min_severity, MinSeverity::Info);
        assert_eq!(c.thresholds.aggregate_window_secs, 300);
        assert_eq!(c.thresholds.stats_interval_secs, 60);
        assert_eq!(parse("", "t").unwrap(), c);
        assert_eq!(parse("[output]\n[thresholds]\n", "t").unwrap(), c);
    }

    #[test]
    fn packaged_file_is_the_defaults() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/detector.toml");
        let text = std::fs::read_to_string(path).unwrap();
        assert_eq!(parse(&text, path).unwrap(), Config::default());
        // The examples ("#key = ..." / "#[table]", no space after '#') are valid uncommented.
        let uncommented: String = text
            .lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest) if !rest.is_empty() && !rest.starts_with([' ', '#']) => rest,
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        assert_ne!(uncommented, text);
        let c = parse(&uncommented, path).unwrap();
        assert_eq!(c.allow.library.len(), 1);
        assert_eq!(c.allow.process.len(), 1);
        assert_eq!(c.allow.memory_reader.len(), 1);
        assert!(c.output.file.is_some() && c.output.syslog.is_some());
    }

    #[test]
    fn prevent_section() {
        assert_eq!(Config::default().prevent.mode, PreventMode::Detect);
        let c = parse(
            "[prevent]\nmode = \"audit\"\nunverified_files = false\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.prevent.mode, PreventMode::Audit);
        assert!(c.prevent.unsafe_files && !c.prevent.unverified_files && c.prevent.interpreter);
        let e = err("[prevent]\nmode = \"kill\"\n");
        assert!(e.starts_with("t.toml:2:"), "{e}");
        assert!(e.contains("unknown variant"), "{e}");
        assert!(err("[prevent]\nmodes = \"audit\"\n").starts_with("t.toml:2:"));
    }

    #[test]
    fn full_example() {
        let c = parse(FULL, "t").unwrap();
        assert_eq!(c.catalogue.extra, ["vault", "/opt/corp/bin/authd"]);
        assert_eq!(c.allow.library.len(), 2);
        let l = &c.allow.library[0];
        assert_eq!(
            l.path,
            "/usr/lib/x86_64-linux-gnu/libfakeroot/libfakeroot-sysv.so"
        );
        let sum = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(l.sha256.as_deref(), Some(sum));
        assert_eq!(l.reason, "fakeroot in package builds");
        assert_eq!(c.allow.library[1].sha256, None);
        assert_eq!(
            c.allow.process,
            [AllowProcess {
                exe: "/usr/bin/fakeroot-sysv".into(),
                reason: "package builds".into()
            }]
        );
        let m = &c.allow.memory_reader[0];
        assert_eq!(
            (m.exe.as_str(), m.sha256.as_deref()),
            ("/usr/bin/gdb", Some(sum))
        );
        assert_eq!(m.reason, "the on-call debugger");
        assert!(!c.output.stdout);
        assert_eq!(
            c.output.file.as_deref(),
            Some(Path::new("/var/log/detector/alerts.jsonl"))
        );
        assert_eq!(
            c.output.syslog,
            Some(SyslogTarget::Udp("127.0.0.1:514".parse().unwrap()))
        );
        assert_eq!(c.output.syslog_facility, Facility::Local3);
        assert_eq!(c.output.syslog_facility.code(), 19);
        assert_eq!(c.thresholds.min_severity, MinSeverity::Low);
        assert_eq!(c.thresholds.aggregate_window_secs, 0);
        assert_eq!(c.thresholds.stats_interval_secs, 30);
    }

    #[test]
    fn unknown_key_names_its_line() {
        let e = err("[catalogue]\n\nextr = [\"vault\"]\n");
        assert!(e.starts_with("t.toml:3: unknown field `extr`"), "{e}");
        assert!(e.contains("expected `extra`"), "{e}");
        assert!(!e.contains('\n'), "{e}");

        let e = err("[thresholds]\nmin_severity = \"low\"\n\n[outptu]\nstdout = true\n");
        assert!(e.starts_with("t.toml:4: unknown field `outptu`"), "{e}");

        let e = err(&FULL.replace("exe = ", "exec = "));
        let line = FULL.lines().position(|l| l.starts_with("exe = ")).unwrap() + 1;
        assert!(
            e.starts_with(&format!("t.toml:{line}: unknown field `exec`")),
            "{e}"
        );
    }

    #[test]
    fn syntax_errors_are_one_line() {
        let e = err("[output]\nstdout = true\nfile = \"/x\n");
        assert!(e.starts_with("t.toml:3: "), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let e = err("[output\n");
        assert!(e.starts_with("t.toml:1: "), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let e = err("[thresholds]\nstats_interval_secs = \"60\"\n");
        assert!(e.starts_with("t.toml:2: "), "{e}");
        let e = err("[thresholds]\nstats_interval_secs = -1\n");
        assert!(e.starts_with("t.toml:2: "), "{e}");
    }

    #[test]
    fn bad_severity() {
        let e = err("[thresholds]\nmin_severity = \"hgih\"\n");
        assert!(e.starts_with("t.toml:2: unknown variant `hgih`"), "{e}");
        assert!(e.contains("`critical`"), "{e}");
        for (name, rank) in [
            ("info", 0),
            ("low", 1),
            ("medium", 2),
            ("high", 3),
            ("critical", 4),
        ] {
            let c = parse(&format!("[thresholds]\nmin_severity = \"{name}\"\n"), "t").unwrap();
            assert_eq!(c.thresholds.min_severity.rank(), rank);
        }
        assert!(MinSeverity::Info < MinSeverity::Low && MinSeverity::High < MinSeverity::Critical);
    }

    #[test]
    fn bad_facility() {
        let e = err("[output]\nsyslog_facility = \"lpr\"\n");
        assert!(e.starts_with("t.toml:2: unknown variant `lpr`"), "{e}");
    }

    #[test]
    fn empty_reason() {
        let text = "[[allow.process]]\nexe = \"/usr/bin/a\"\nreason = \"ok\"\n\n\
                    [[allow.process]]\nexe = \"/usr/bin/b\"\nreason = \"  \"\n";
        let e = err(text);
        assert!(e.starts_with("t.toml:7: `reason` is empty"), "{e}");
        let e = err("[[allow.library]]\npath = \"/usr/lib/a.so\"\nreason = \"\"\n");
        assert!(e.starts_with("t.toml:3: `reason` is empty"), "{e}");
        // Missing: points at the entry.
        let e = err("[[allow.library]]\npath = \"/usr/lib/a.so\"\n");
        assert!(e.starts_with("t.toml:1: missing field `reason`"), "{e}");
    }

    #[test]
    fn bad_sha256() {
        for bad in ["abc", &"g".repeat(64), &"a".repeat(65)] {
            let text = format!(
                "[[allow.library]]\npath = \"/usr/lib/a.so\"\nsha256 = \"{bad}\"\nreason = \"r\"\n"
            );
            let e = err(&text);
            assert!(e.starts_with("t.toml:3: invalid sha256"), "{e}");
        }
    }

    #[test]
    fn relative_paths_rejected() {
        let e = err("[[allow.library]]\npath = \"libfoo.so\"\nreason = \"r\"\n");
        assert!(
            e.starts_with("t.toml:2: `libfoo.so` is not an absolute path"),
            "{e}"
        );
        let e = err("[[allow.process]]\nexe = \"bin/x\"\nreason = \"r\"\n");
        assert!(e.starts_with("t.toml:2: "), "{e}");
        let e = err("[output]\nfile = \"alerts.jsonl\"\n");
        assert!(e.starts_with("t.toml:2: "), "{e}");
        let e = err("[catalogue]\nextra = [\n  \"vault\",\n  \"bin/authd\",\n]\n");
        assert!(e.starts_with("t.toml:4: `bin/authd`"), "{e}");
        let e = err("[catalogue]\nextra = [\"\"]\n");
        assert!(e.starts_with("t.toml:2: empty program name"), "{e}");
    }

    #[test]
    fn no_output_is_an_error() {
        let e = err("\n[output]\nstdout = false\n");
        assert!(e.starts_with("t.toml:2: no output enabled"), "{e}");
        parse(
            "[output]\nstdout = false\nsyslog = \"unix:/dev/log\"\n",
            "t",
        )
        .unwrap();
    }

    #[test]
    fn bad_syslog_target() {
        for bad in [
            "/dev/log",
            "unix:dev/log",
            "udp://localhost:514",
            "tcp://127.0.0.1:99999",
            "tcp://127.0.0.1:0",
            "http://127.0.0.1:514",
            "",
        ] {
            assert!(target(bad).is_err(), "{bad}");
            let e = err(&format!("[output]\n\nsyslog = \"{bad}\"\n"));
            assert!(e.starts_with("t.toml:3: invalid syslog target"), "{e}");
        }
        let e = err("[output]\nsyslog = 514\n");
        assert!(e.starts_with("t.toml:2: invalid type"), "{e}");
    }

    #[test]
    fn syslog_forms() {
        let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
        let cases = [
            ("unix:/dev/log", SyslogTarget::Unix("/dev/log".into())),
            (
                "unix:///run/systemd/journal/syslog",
                SyslogTarget::Unix("/run/systemd/journal/syslog".into()),
            ),
            (
                "udp://127.0.0.1:514",
                SyslogTarget::Udp(sa("127.0.0.1:514")),
            ),
            ("udp://10.0.0.1", SyslogTarget::Udp(sa("10.0.0.1:514"))),
            ("udp://[::1]:5514", SyslogTarget::Udp(sa("[::1]:5514"))),
            (
                "tcp://127.0.0.1:601",
                SyslogTarget::Tcp(sa("127.0.0.1:601")),
            ),
            (
                "tcp://[2001:db8::1]",
                SyslogTarget::Tcp(sa("[2001:db8::1]:601")),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(target(text).as_ref(), Ok(&want), "{text}");
            let c = parse(&format!("[output]\nsyslog = \"{text}\"\n"), "t").unwrap();
            assert_eq!(c.output.syslog.as_ref(), Some(&want));
            // Display round-trips.
            assert_eq!(target(&want.to_string()).as_ref(), Ok(&want));
        }
    }

    #[test]
    fn load_missing_and_present() {
        let dir = std::env::temp_dir().join(format!("detector-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("absent.toml");
        let e = load(&missing, true).unwrap_err().to_string();
        assert!(e.starts_with(&missing.display().to_string()), "{e}");
        assert!(e.contains("not found"), "{e}");
        assert_eq!(load(&missing, false).unwrap(), Config::default());

        let present = dir.join("detector.toml");
        std::fs::write(&present, FULL).unwrap();
        assert_eq!(load(&present, true).unwrap(), parse(FULL, "t").unwrap());
        assert_eq!(load(&present, false).unwrap(), parse(FULL, "t").unwrap());

        // A broken file is an error even at the default path: the origin is the path.
        std::fs::write(&present, "[output]\nstdot = true\n").unwrap();
        let e = load(&present, false).unwrap_err().to_string();
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(
            e.starts_with(&format!("{}:2: unknown field `stdot`", present.display())),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
