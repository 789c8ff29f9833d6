//! Aggregation: an alert seen again (same rule, severity, program, library, file or tampering
//! act, and detections) within the window is counted, not re-emitted; when the window closes, a summary
//! with the count, first_seen and last_seen follows if it was seen more than once. A file's
//! change is a repeat only when it changed the file the same way (operation, package manager,
//! lines, link target, hash): a different change of the same file is an alert of its own.
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use crate::output::alert::{Alert, Detection, Severity};

/// Open windows kept at most; past it the oldest close early.
const OPEN_MAX: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    rule: &'static str,
    /// A worse alert is never counted as a repeat of a milder one.
    severity: Severity,
    exe: String,
    object: String,
    detections: Vec<Detection>,
}

fn key(a: &Alert) -> Key {
    let object = a
        .library
        .as_ref()
        .map(|l| l.path.clone())
        .or_else(|| {
            a.file.as_ref().map(|f| {
                let what = serde_json::json!([
                    f.operation,
                    f.package_manager,
                    f.diff,
                    f.target_path,
                    f.hash
                ]);
                format!("{} {what}", f.path)
            })
        })
        // Attaching and writing are different acts, and so are two signals: each gets its own
        // window.
        .or_else(|| {
            a.target
                .as_ref()
                .map(|t| format!("{} {:?} {:?} {:?}", t.exe, t.operation, t.request, t.signal))
        })
        // An attack on the sensor by its act (a SIGSTOP and then a SIGTSTP are two).
        .or_else(|| a.sensor.as_ref().map(|s| s.reason.clone()))
        .unwrap_or_default();
    // Stopping and saying what would have been stopped are different acts.
    let object = match &a.prevention {
        Some(p) => format!("{object} {}", p.action),
        None => object,
    };
    Key {
        rule: a.rule,
        severity: a.severity,
        exe: a.process.exe.clone(),
        object,
        detections: a.detections.iter().copied().collect(),
    }
}

pub struct Aggregator {
    window: Duration,
    open: HashMap<Key, (Instant, Alert)>,
}

impl Aggregator {
    pub fn new(window: Duration) -> Self {
        Aggregator {
            window,
            open: HashMap::new(),
        }
    }

    pub fn set_window(&mut self, window: Duration) {
        self.window = window;
    }

    /// The alert to emit now, if it is not a repeat.
    pub fn admit(&mut self, alert: Alert, now: Instant) -> Option<Alert> {
        if self.window.is_zero() {
            return Some(alert);
        }
        let k = key(&alert);
        if let Some((opened, first)) = self.open.get_mut(&k) {
            if now.duration_since(*opened) < self.window {
                first.count += 1;
                first.last_seen = alert.timestamp;
                return None;
            }
        }
        if self.open.len() >= OPEN_MAX {
            if let Some(oldest) = self
                .open
                .iter()
                .min_by_key(|(_, (t, _))| *t)
                .map(|(k, _)| k.clone())
            {
                self.open.remove(&oldest);
            }
        }
        self.open.insert(k, (now, alert.clone()));
        Some(alert)
    }

    /// Summaries of the windows closed by `now` (all of them when `now` is None).
    pub fn expire(&mut self, now: Option<Instant>) -> Vec<Alert> {
        let window = self.window;
        let closed: Vec<Key> = self
            .open
            .iter()
            .filter(|(_, (t, _))| now.is_none_or(|n| n.duration_since(*t) >= window))
            .map(|(k, _)| k.clone())
            .collect();
        let mut out: Vec<Alert> = closed
            .into_iter()
            .filter_map(|k| self.open.remove(&k))
            .map(|(_, a)| a)
            .filter(|a| a.count > 1)
            .map(|mut a| {
                a.timestamp = a.last_seen.clone();
                a
            })
            .collect();
        out.sort_by(|a, b| a.first_seen.cmp(&b.first_seen));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(pid: u32, ts: &str) -> Alert {
        crate::output::alert::test_alert(pid, ts)
    }

    #[test]
    fn repeats_are_counted_then_summarized() {
        let t0 = Instant::now();
        let mut ag = Aggregator::new(Duration::from_secs(10));
        assert!(ag.admit(alert(1, "t1"), t0).is_some());
        assert!(ag
            .admit(alert(2, "t2"), t0 + Duration::from_secs(1))
            .is_none());
        assert!(ag
            .admit(alert(3, "t3"), t0 + Duration::from_secs(2))
            .is_none());
        assert!(ag.expire(Some(t0 + Duration::from_secs(5))).is_empty());
        let s = ag.expire(Some(t0 + Duration::from_secs(11)));
        assert_eq!(s.len(), 1);
        assert_eq!(
            (
                s[0].count,
                s[0].first_seen.as_str(),
                s[0].last_seen.as_str()
            ),
            (3, "t1", "t3")
        );
        // A new window opens afterwards.
        assert!(ag
            .admit(alert(4, "t4"), t0 + Duration::from_secs(12))
            .is_some());
    }

    #[test]
    fn different_changes_of_one_file_are_not_repeats() {
        use crate::{
            capture::decode::FileOp,
            engine::rules::config_change::Place,
            output::alert::{ChangedFile, LineDiff},
        };
        let t0 = Instant::now();
        let mut ag = Aggregator::new(Duration::from_secs(10));
        let change = |line: &str| {
            let mut a = alert(1, "t");
            let mut f = ChangedFile::new(
                "/etc/pam.d/su-l".into(),
                FileOp::Rename,
                vec![],
                Place::PamConfig,
            );
            f.diff = Some(LineDiff {
                added: vec![line.into()],
                ..LineDiff::default()
            });
            a.file = Some(f);
            a
        };
        assert!(ag.admit(change("a"), t0).is_some());
        assert!(ag.admit(change("b"), t0).is_some());
        assert!(ag.admit(change("b"), t0).is_none());
    }

    #[test]
    fn different_acts_against_the_sensor_are_not_repeats() {
        use crate::output::alert::Sensor;
        let t0 = Instant::now();
        let mut ag = Aggregator::new(Duration::from_secs(10));
        let act = |reason: &str| {
            let mut a = alert(1, "t");
            a.sensor = Some(Sensor {
                pid: 9,
                reason: reason.into(),
            });
            a
        };
        assert!(ag
            .admit(act("SIGSTOP sent to the detector (kill)"), t0)
            .is_some());
        assert!(ag
            .admit(act("SIGTSTP sent to the detector (kill)"), t0)
            .is_some());
        assert!(ag
            .admit(act("SIGTSTP sent to the detector (kill)"), t0)
            .is_none());
    }

    #[test]
    fn different_signals_asking_a_core_dump_are_not_repeats() {
        use crate::{
            capture::decode::ReadOp,
            output::alert::{Operation, Target},
        };
        let t0 = Instant::now();
        let mut ag = Aggregator::new(Duration::from_secs(10));
        let dump = |signal: &str| {
            let mut a = alert(1, "t");
            a.target = Some(Target {
                pid: 7,
                comm: "ssh-agent".into(),
                exe: "/usr/bin/ssh-agent".into(),
                uid: Some(0),
                operation: Operation::Read(ReadOp::DumpSignal),
                request: None,
                address: None,
                bytes: None,
                signal: Some(signal.into()),
            });
            a
        };
        assert!(ag.admit(dump("SIGSEGV"), t0).is_some());
        assert!(ag.admit(dump("SIGQUIT"), t0).is_some());
        assert!(ag.admit(dump("SIGQUIT"), t0).is_none());
    }

    #[test]
    fn single_alerts_get_no_summary_and_zero_window_passes_all() {
        let t0 = Instant::now();
        let mut ag = Aggregator::new(Duration::from_secs(1));
        ag.admit(alert(1, "t1"), t0);
        assert!(ag.expire(None).is_empty());
        let mut off = Aggregator::new(Duration::ZERO);
        assert!(off.admit(alert(1, "a"), t0).is_some());
        assert!(off.admit(alert(1, "b"), t0).is_some());
    }
}
