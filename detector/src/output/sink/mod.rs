//! Where alerts go: JSON lines on stdout or in a file, RFC 5424 syslog, or several at once.
//!
//! An output that fails does not stop the others or the daemon: [`Fanout`] logs it once, keeps
//! its last [`BACKLOG`] lines, retries with backoff and replays them when it is back.
mod json;
mod syslog;

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use anyhow::Result;
use serde_json::{json, Value};

pub use json::{FileSink, JsonLines};
pub use syslog::{SyslogAddr, SyslogSink};

use crate::{
    cli::Format,
    config::{Config, SyslogTarget},
    output::{alert::Alert, text::TextLines},
};

pub trait Sink {
    fn emit(&mut self, alert: &Alert) -> Result<()>;

    /// A record that is not an alert (periodic stats), on the same channel; informational.
    fn emit_record(&mut self, record: &Value) -> Result<()>;

    /// Reopens what the sink writes to (a rotated file); a no-op for most sinks.
    fn reopen(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Lines kept for an output that is down, replayed in order when it is back; older ones are
/// dropped (and counted).
pub const BACKLOG: usize = 1000;
/// The first retry of an output that failed comes this long after the failure; each failed
/// retry doubles the wait, up to `MAX_RETRY`.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(60);

/// One line for the outputs: an alert or a record (stats).
#[derive(Clone, Copy)]
enum Line<'a> {
    Alert(&'a Alert),
    Record(&'a Value),
}

/// A line kept for an output that is down.
enum Kept {
    Alert(Box<Alert>),
    Record(Value),
}

impl Line<'_> {
    fn write(self, sink: &mut dyn Sink) -> Result<()> {
        match self {
            Line::Alert(a) => sink.emit(a),
            Line::Record(r) => sink.emit_record(r),
        }
    }

    fn keep(self) -> Kept {
        match self {
            Line::Alert(a) => Kept::Alert(Box::new(a.clone())),
            Line::Record(r) => Kept::Record(r.clone()),
        }
    }
}

impl Kept {
    fn line(&self) -> Line<'_> {
        match self {
            Kept::Alert(a) => Line::Alert(a),
            Kept::Record(r) => Line::Record(r),
        }
    }
}

/// One output and what happened to it.
struct Output {
    /// `stdout`, `file` or `syslog`: the key in [`Fanout::stats`].
    name: &'static str,
    /// What it writes to, for the logs: `stdout`, the file's path, the syslog address.
    target: String,
    sink: Box<dyn Sink + Send>,
    /// Lines written (replayed ones included), writes that failed, lines dropped from the
    /// backlog.
    written: u64,
    errors: u64,
    dropped: u64,
    down: Option<Down>,
}

/// An output that failed and has not written since.
struct Down {
    since: Instant,
    /// Lines not yet written, oldest first.
    backlog: VecDeque<Kept>,
    /// Lines that could not be written when they were emitted, in this outage.
    missed: u64,
    /// Of those, lines dropped from the backlog.
    dropped: u64,
    /// The wait before the next retry, and when that is.
    backoff: Duration,
    retry_at: Instant,
}

impl Down {
    fn new(now: Instant) -> Self {
        Down {
            since: now,
            backlog: VecDeque::new(),
            missed: 0,
            dropped: 0,
            backoff: FIRST_RETRY,
            retry_at: now + FIRST_RETRY,
        }
    }
}

impl Output {
    fn write(&mut self, line: Line<'_>, now: Instant) {
        let Some(down) = &mut self.down else {
            match line.write(self.sink.as_mut()) {
                Ok(()) => self.written += 1,
                Err(e) => {
                    self.errors += 1;
                    log::error!(
                        "output {} ({}) failed: {e:#}; keeping its last {BACKLOG} lines and retrying from {}s to every {}s",
                        self.name,
                        self.target,
                        FIRST_RETRY.as_secs(),
                        MAX_RETRY.as_secs()
                    );
                    let mut down = Down::new(now);
                    down.missed = 1;
                    down.backlog.push_back(line.keep());
                    self.down = Some(down);
                }
            }
            return;
        };
        down.missed += 1;
        if down.backlog.len() == BACKLOG {
            down.backlog.pop_front();
            down.dropped += 1;
            self.dropped += 1;
        }
        down.backlog.push_back(line.keep());
        if now >= down.retry_at {
            self.retry(now);
        }
    }

    /// Replays the backlog, oldest first, until a write fails (the next retry waits twice as
    /// long as this one did) or all is written (the output is up again).
    fn retry(&mut self, now: Instant) {
        let Some(down) = &mut self.down else {
            return;
        };
        while let Some(kept) = down.backlog.front() {
            if let Err(e) = kept.line().write(self.sink.as_mut()) {
                self.errors += 1;
                down.backoff = (down.backoff * 2).min(MAX_RETRY);
                down.retry_at = now + down.backoff;
                log::debug!(
                    "output {} ({}) still failing: {e:#}; next retry in {}s",
                    self.name,
                    self.target,
                    down.backoff.as_secs()
                );
                return;
            }
            down.backlog.pop_front();
            self.written += 1;
        }
        log::warn!(
            "output {} ({}) is back after {}s: it missed {} lines, {} written late, {} dropped (beyond the last {BACKLOG})",
            self.name,
            self.target,
            now.saturating_duration_since(down.since).as_secs(),
            down.missed,
            down.missed - down.dropped,
            down.dropped
        );
        self.down = None;
    }

    fn stats(&self) -> Value {
        json!({
            "up": self.down.is_none(),
            "written": self.written,
            "errors": self.errors,
            "dropped": self.dropped,
            "queued": self.down.as_ref().map_or(0, |d| d.backlog.len()),
        })
    }
}

/// Every output gets every line, and one failing never stops the others nor the caller: it is
/// logged once when it fails and once when it is back, its lines are kept (the last
/// [`BACKLOG`]) and replayed, and each output counts what it wrote, its errors and the lines it
/// dropped ([`Fanout::stats`]). An output that is down is retried when a line comes after its
/// backoff (1 s, doubling to 60 s), so a retry blocks the caller no longer than one write does.
#[derive(Default)]
pub struct Fanout {
    outputs: Vec<Output>,
}

impl Fanout {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an output that works (as far as anyone knows).
    pub fn add(&mut self, name: &'static str, target: String, sink: Box<dyn Sink + Send>) {
        self.outputs.push(Output {
            name,
            target,
            sink,
            written: 0,
            errors: 0,
            dropped: 0,
            down: None,
        });
    }

    /// Adds an output that could not be reached (`e`): it starts down, retried as any other.
    pub fn add_down(
        &mut self,
        name: &'static str,
        target: String,
        sink: Box<dyn Sink + Send>,
        e: &anyhow::Error,
    ) {
        log::warn!(
            "output {name} ({target}) is unreachable: {e:#}; starting without it, keeping its last {BACKLOG} lines and retrying from {}s to every {}s",
            FIRST_RETRY.as_secs(),
            MAX_RETRY.as_secs()
        );
        self.add(name, target, sink);
        let out = self.outputs.last_mut().expect("just added");
        out.errors = 1;
        out.down = Some(Down::new(Instant::now()));
    }

    pub fn emit(&mut self, alert: &Alert) {
        self.write(Line::Alert(alert), Instant::now());
    }

    pub fn emit_record(&mut self, record: &Value) {
        self.write(Line::Record(record), Instant::now());
    }

    fn write(&mut self, line: Line<'_>, now: Instant) {
        for out in &mut self.outputs {
            out.write(line, now);
        }
    }

    /// Reopens every output (a rotated file) and retries those that are down with the next
    /// line. Returns the first error once all were tried; an output whose reopen failed keeps
    /// writing where it did.
    pub fn reopen(&mut self) -> Result<()> {
        let mut first = None;
        for out in &mut self.outputs {
            if let Err(e) = out.sink.reopen() {
                first.get_or_insert(e.context(format!("reopening output {}", out.name)));
            }
            if let Some(down) = &mut out.down {
                down.retry_at = Instant::now();
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Takes `new`'s outputs (a reloaded configuration), each with the counters and the
    /// backlog of the output of the same name it replaces; a backlog is replayed with the next
    /// line. The lines kept for an output the new configuration drops are logged and dropped.
    pub fn replace(&mut self, mut new: Fanout) {
        for out in &mut new.outputs {
            let Some(old) = self.outputs.iter_mut().find(|o| o.name == out.name) else {
                continue;
            };
            out.written += old.written;
            out.errors += old.errors;
            out.dropped += old.dropped;
            if let Some(mut down) = old.down.take() {
                down.retry_at = Instant::now();
                out.down = Some(down);
            }
        }
        std::mem::swap(self, &mut new);
    }

    /// Per output (`stdout`, `file`, `syslog`): `up`, lines `written`, `errors` (failed
    /// writes), lines `dropped` (beyond the backlog), lines `queued` (in the backlog).
    pub fn stats(&self) -> Value {
        Value::Object(
            self.outputs
                .iter()
                .map(|o| (o.name.to_string(), o.stats()))
                .collect(),
        )
    }
}

impl Drop for Fanout {
    /// Lines still kept for an output that is down are lost with it: say so.
    fn drop(&mut self) {
        for out in &self.outputs {
            if let Some(down) = out.down.as_ref().filter(|d| !d.backlog.is_empty()) {
                log::error!(
                    "output {} ({}) is down: {} lines were never written to it",
                    out.name,
                    out.target,
                    down.backlog.len()
                );
            }
        }
    }
}

/// The outputs the configuration's `[output]` section asks for, `format` for stdout. A file that
/// cannot be opened is an error; a syslog daemon that cannot be reached is not (the output
/// starts down and is retried).
pub fn from_config(cfg: &Config, format: Format) -> Result<Fanout> {
    let mut out = Fanout::new();
    if cfg.output.stdout {
        let sink: Box<dyn Sink + Send> = match format {
            Format::Json => Box::new(JsonLines::stdout()),
            Format::Text => Box::new(TextLines::stdout()),
        };
        out.add("stdout", "stdout".into(), sink);
    }
    if let Some(path) = &cfg.output.file {
        out.add(
            "file",
            path.display().to_string(),
            Box::new(FileSink::open(path)?),
        );
    }
    if let Some(target) = &cfg.output.syslog {
        let addr = match target {
            SyslogTarget::Unix(p) => SyslogAddr::Unix(p.clone()),
            SyslogTarget::Udp(a) => SyslogAddr::Udp(*a),
            SyslogTarget::Tcp(a) => SyslogAddr::Tcp(*a),
        };
        let mut sink = SyslogSink::new(addr, cfg.output.syslog_facility.code())?;
        let target = sink.addr().to_string();
        match sink.try_connect() {
            Ok(()) => out.add("syslog", target, Box::new(sink)),
            Err(e) => out.add_down("syslog", target, Box::new(sink), &e),
        }
    }
    Ok(out)
}

/// What the sinks' tests share.
#[cfg(test)]
pub(crate) mod testing {
    use std::{
        path::{Path, PathBuf},
        sync::atomic::{AtomicU32, Ordering},
    };

    use serde_json::Value;

    use crate::output::alert::{Alert, Severity};

    pub fn alert(severity: Severity) -> Alert {
        let mut a = crate::output::alert::test_alert(4242, "2026-11-23T09:13:13.595123Z");
        a.severity = severity;
        // Non-ASCII and a newline: the syslog MSG stays one ASCII line.
        a.process.cmdline = "true café 🦀\nx".into();
        a
    }

    pub struct Tmp(pub PathBuf);

    impl Tmp {
        pub fn new() -> Self {
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "detector-sink-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Tmp(p)
        }
    }

    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    pub fn lines(p: &Path) -> Vec<Value> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc, Mutex,
    };

    use anyhow::bail;

    use super::{testing::*, *};
    use crate::output::alert::test_alert;

    /// A sink that records what it writes (an alert's pid, a record's `n`) and fails while told
    /// to; it counts every write it is asked for.
    #[derive(Clone, Default)]
    struct Probe {
        fail: Arc<AtomicBool>,
        tries: Arc<AtomicU32>,
        written: Arc<Mutex<Vec<u64>>>,
    }

    impl Probe {
        fn line(&mut self, id: u64) -> Result<()> {
            self.tries.fetch_add(1, Ordering::Relaxed);
            if self.fail.load(Ordering::Relaxed) {
                bail!("probe failed");
            }
            self.written.lock().unwrap().push(id);
            Ok(())
        }
        fn fail(&self, fail: bool) {
            self.fail.store(fail, Ordering::Relaxed);
        }
        fn tries(&self) -> u32 {
            self.tries.load(Ordering::Relaxed)
        }
        fn written(&self) -> Vec<u64> {
            self.written.lock().unwrap().clone()
        }
    }

    impl Sink for Probe {
        fn emit(&mut self, a: &Alert) -> Result<()> {
            self.line(a.process.pid.into())
        }

        fn emit_record(&mut self, r: &Value) -> Result<()> {
            self.line(r["n"].as_u64().unwrap())
        }
    }

    fn nth(n: u32) -> Alert {
        test_alert(n, "2026-11-23T09:13:13.595123Z")
    }

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    fn stat(f: &Fanout, name: &str, key: &str) -> Value {
        f.stats()[name][key].clone()
    }

    #[test]
    fn a_failing_output_is_retried_with_backoff_and_replayed_while_the_others_write() {
        let t = Tmp::new();
        let path = t.0.join("alerts.json");
        let probe = Probe::default();
        let mut f = Fanout::new();
        f.add("syslog", "probe".into(), Box::new(probe.clone()));
        f.add("file", "f".into(), Box::new(FileSink::open(&path).unwrap()));
        let t0 = Instant::now();

        f.write(Line::Alert(&nth(1)), t0);
        assert_eq!(probe.written(), [1]);
        assert_eq!(stat(&f, "syslog", "up"), true);

        probe.fail(true);
        f.write(Line::Alert(&nth(2)), at(t0, 100));
        assert_eq!(probe.tries(), 2);
        assert_eq!(stat(&f, "syslog", "up"), false);
        assert_eq!(stat(&f, "syslog", "errors"), 1);
        assert_eq!(stat(&f, "syslog", "queued"), 1);
        // Within the first backoff (1 s after the failure): kept, not tried.
        f.write(Line::Record(&json!({"n": 3})), at(t0, 1000));
        assert_eq!(probe.tries(), 2);
        // After it: tried (the oldest line first), failed, the backoff doubles to 2 s.
        f.write(Line::Alert(&nth(4)), at(t0, 1100));
        assert_eq!(probe.tries(), 3);
        assert_eq!(stat(&f, "syslog", "errors"), 2);
        probe.fail(false);
        f.write(Line::Alert(&nth(5)), at(t0, 3000));
        assert_eq!(probe.tries(), 3, "retried before its backoff");
        assert_eq!(stat(&f, "syslog", "queued"), 4);

        f.write(Line::Alert(&nth(6)), at(t0, 3100));
        assert_eq!(probe.written(), [1, 2, 3, 4, 5, 6], "replayed in order");
        assert_eq!(
            f.stats()["syslog"],
            json!({"up": true, "written": 6, "errors": 2, "dropped": 0, "queued": 0})
        );
        f.write(Line::Alert(&nth(7)), at(t0, 3200));
        assert_eq!(probe.written(), [1, 2, 3, 4, 5, 6, 7]);

        // The other output wrote everything as it came, and failed never.
        let ids: Vec<u64> = lines(&path)
            .iter()
            .map(|l| l["process"]["pid"].as_u64().or(l["n"].as_u64()).unwrap())
            .collect();
        assert_eq!(ids, [1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(
            f.stats()["file"],
            json!({"up": true, "written": 7, "errors": 0, "dropped": 0, "queued": 0})
        );
    }

    #[test]
    fn the_backlog_keeps_the_last_lines_and_counts_the_rest() {
        let probe = Probe::default();
        let mut f = Fanout::new();
        f.add("syslog", "probe".into(), Box::new(probe.clone()));
        let t0 = Instant::now();
        probe.fail(true);
        let n = BACKLOG as u32 + 5;
        for i in 1..=n {
            f.write(Line::Alert(&nth(i)), t0);
        }
        assert_eq!(probe.tries(), 1, "one failure, no retry before the backoff");
        assert_eq!(stat(&f, "syslog", "queued"), BACKLOG);
        assert_eq!(stat(&f, "syslog", "dropped"), 5);
        probe.fail(false);
        f.write(Line::Alert(&nth(n + 1)), at(t0, 1000));
        let want: Vec<u64> = (7..=u64::from(n) + 1).collect();
        assert_eq!(probe.written(), want, "the oldest were dropped");
        assert_eq!(
            f.stats()["syslog"],
            json!({"up": true, "written": BACKLOG, "errors": 1, "dropped": 6, "queued": 0})
        );
    }

    #[test]
    fn retries_back_off_from_one_second_to_a_minute() {
        let probe = Probe::default();
        let mut f = Fanout::new();
        f.add("syslog", "probe".into(), Box::new(probe.clone()));
        probe.fail(true);
        let t0 = Instant::now();
        // A line every 100 ms for ten minutes; when is the sink tried?
        let mut tried = Vec::new();
        for ms in (0..600_000).step_by(100) {
            let before = probe.tries();
            f.write(Line::Record(&json!({"n": 0})), at(t0, ms));
            if probe.tries() > before {
                tried.push(ms);
            }
        }
        let gaps: Vec<u64> = tried.windows(2).map(|w| (w[1] - w[0]) / 1000).collect();
        assert_eq!(
            &gaps[..9],
            [1, 2, 4, 8, 16, 32, 60, 60, 60],
            "attempts at {tried:?}"
        );
        assert!(gaps[9..].iter().all(|&g| g == 60), "{gaps:?}");
        assert_eq!(stat(&f, "syslog", "errors"), tried.len());
        assert_eq!(
            stat(&f, "syslog", "dropped"),
            6000 - BACKLOG,
            "every line is kept or counted"
        );
    }

    #[test]
    fn an_output_down_at_start_is_retried_and_a_reload_keeps_counts_and_backlog() {
        let probe = Probe::default();
        probe.fail(true);
        let mut f = Fanout::new();
        f.add_down(
            "syslog",
            "probe".into(),
            Box::new(probe.clone()),
            &anyhow::anyhow!("refused"),
        );
        assert_eq!(stat(&f, "syslog", "up"), false);
        assert_eq!(stat(&f, "syslog", "errors"), 1);
        f.emit(&nth(1));
        f.emit(&nth(2));
        assert_eq!(probe.tries(), 0, "not before the first backoff");
        assert_eq!(stat(&f, "syslog", "queued"), 2);

        // A reload: a new fanout (whose sink is fine) takes the old one's counts and backlog,
        // and replays it with the next line.
        let fresh = Probe::default();
        let mut new = Fanout::new();
        new.add("syslog", "probe".into(), Box::new(fresh.clone()));
        f.replace(new);
        f.emit(&nth(3));
        assert_eq!(fresh.written(), [1, 2, 3]);
        assert_eq!(
            f.stats()["syslog"],
            json!({"up": true, "written": 3, "errors": 1, "dropped": 0, "queued": 0})
        );
    }

    #[test]
    fn a_reopen_retries_with_the_next_line() {
        let probe = Probe::default();
        let mut f = Fanout::new();
        f.add("file", "probe".into(), Box::new(probe.clone()));
        probe.fail(true);
        f.emit(&nth(1));
        probe.fail(false);
        f.emit(&nth(2));
        assert_eq!(probe.written(), Vec::<u64>::new());
        f.reopen().unwrap();
        f.emit(&nth(3));
        assert_eq!(probe.written(), [1, 2, 3]);
        assert_eq!(Fanout::new().stats(), json!({}));
    }
}
