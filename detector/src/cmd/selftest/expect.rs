//! What each selftest case expects of the detector's alert, and the verdict on the alerts seen.
use serde_json::Value;

use crate::output::alert::Severity;

/// The alert a case must raise: for the trigger's pid, one of these rules, this technique and
/// detection, the process (its `process.name` or `process.executable`), and a severity of at
/// least `severity`.
#[derive(Debug, Clone)]
pub struct Expect {
    pub rules: &'static [&'static str],
    pub technique: &'static str,
    pub detection: &'static str,
    pub process: String,
    pub severity: Severity,
}

/// The outcome for one case: whether an alert met the expectation, and what was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub ok: bool,
    pub got: String,
}

impl Expect {
    /// `rule|rule >=severity technique detection in process`, for the table.
    pub fn describe(&self) -> String {
        format!(
            "{} >={} {} {} in {}",
            self.rules.join("|"),
            self.severity.name(),
            self.technique,
            self.detection,
            self.process
        )
    }

    /// True when `alert` is about `pid` and meets every expectation.
    pub fn met_by(&self, pid: u32, alert: &Value) -> bool {
        is_for(alert, pid)
            && self.rules.contains(&str_at(alert, &["rule", "name"]))
            && contains(alert, &["threat", "technique", "id"], self.technique)
            && contains(alert, &["detections"], self.detection)
            && (str_at(alert, &["process", "name"]) == self.process
                || str_at(alert, &["process", "executable"]) == self.process)
            && severity(alert).is_some_and(|s| s >= self.severity)
    }

    /// The verdict over every alert seen: the first that meets the expectation, else the most
    /// severe one for `pid`, else none.
    pub fn judge(&self, pid: u32, alerts: &[Value]) -> Verdict {
        if let Some(a) = alerts.iter().find(|a| self.met_by(pid, a)) {
            return Verdict {
                ok: true,
                got: summary(a),
            };
        }
        let best = alerts
            .iter()
            .filter(|a| is_for(a, pid))
            .max_by_key(|a| severity(a));
        Verdict {
            ok: false,
            got: best.map_or_else(|| format!("no alert for pid {pid}"), summary),
        }
    }
}

/// `rule severity techniques detections process`, as an alert says them.
fn summary(a: &Value) -> String {
    let list = |path: &[&str]| {
        path.iter()
            .fold(a, |v, k| &v[k])
            .as_array()
            .map(|v| {
                v.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    };
    format!(
        "{} {} {} {} in {}",
        str_at(a, &["rule", "name"]),
        str_at(a, &["severity"]),
        list(&["threat", "technique", "id"]),
        list(&["detections"]),
        str_at(a, &["process", "name"]),
    )
}

/// An alert record (not a stats record) about process `pid`.
fn is_for(a: &Value, pid: u32) -> bool {
    str_at(a, &["event", "kind"]) == "alert" && a["process"]["pid"].as_u64() == Some(pid.into())
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter().fold(v, |v, k| &v[k]).as_str().unwrap_or("")
}

fn contains(v: &Value, path: &[&str], item: &str) -> bool {
    path.iter()
        .fold(v, |v, k| &v[k])
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == item))
}

fn severity(a: &Value) -> Option<Severity> {
    let name = str_at(a, &["severity"]);
    Severity::ALL.into_iter().find(|s| s.name() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expect() -> Expect {
        Expect {
            rules: &["credential_api_hooking"],
            technique: "T1056.004",
            detection: "preload_env",
            process: "ssh".into(),
            severity: Severity::High,
        }
    }

    fn alert(pid: u32, severity: &str) -> Value {
        serde_json::json!({
            "event": {"kind": "alert"},
            "rule": {"name": "credential_api_hooking"},
            "severity": severity,
            "detections": ["preload_env", "credential_hooks"],
            "threat": {"technique": {"id": ["T1574.006", "T1056.004"]}},
            "process": {"pid": pid, "name": "ssh", "executable": "/usr/bin/ssh"},
        })
    }

    #[test]
    fn an_alert_at_or_above_the_severity_meets_it() {
        let e = expect();
        assert!(e.judge(7, &[alert(7, "critical")]).ok);
        assert!(e.judge(7, &[alert(7, "high")]).ok);
        let v = e.judge(7, &[alert(7, "medium")]);
        assert!(!v.ok);
        assert!(
            v.got.starts_with("credential_api_hooking medium"),
            "{}",
            v.got
        );
    }

    #[test]
    fn another_pid_or_no_alert_does_not() {
        let e = expect();
        let v = e.judge(7, &[alert(8, "critical")]);
        assert!(!v.ok);
        assert_eq!(v.got, "no alert for pid 7");
        assert!(!e.judge(7, &[]).ok);
    }

    #[test]
    fn rule_technique_detection_and_process_must_all_match() {
        let e = expect();
        for (path, bad) in [
            (
                &["rule", "name"][..],
                serde_json::json!("dynamic_linker_hijacking"),
            ),
            (
                &["threat", "technique", "id"][..],
                serde_json::json!(["T1574.006"]),
            ),
            (&["detections"][..], serde_json::json!(["preload_argv"])),
            (&["process", "name"][..], serde_json::json!("cat")),
        ] {
            let mut a = alert(7, "critical");
            let slot = path.iter().fold(&mut a, |v, k| &mut v[*k]);
            *slot = bad;
            if path == ["process", "name"] {
                a["process"]["executable"] = serde_json::json!("/usr/bin/cat");
            }
            assert!(!e.met_by(7, &a), "{path:?}");
        }
    }

    #[test]
    fn the_process_may_be_named_by_its_executable() {
        let mut e = expect();
        e.process = "/usr/bin/ssh".into();
        assert!(e.met_by(7, &alert(7, "critical")));
    }

    #[test]
    fn stats_records_are_not_alerts() {
        let mut a = alert(7, "critical");
        a["event"]["kind"] = serde_json::json!("metric");
        assert!(!expect().met_by(7, &a));
    }
}
