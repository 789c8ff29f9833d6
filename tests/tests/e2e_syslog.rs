//! Root end-to-end: an alert reaches a real rsyslog over UDP as an RFC 5424 message that
//! rsyslog parses (app-name, procid, severity) and whose MSG is the alert's JSON.
use std::{
    net::UdpSocket,
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use detector_tests::{gcc, has, require_root, s, trigger, Daemon, TempDir};
use serde_json::Value;

/// rsyslogd in the foreground with a configuration of our own (nothing under /etc), killed on
/// drop. It writes every message it receives on 127.0.0.1:`port` (UDP) twice: raw, and as the
/// properties it parsed, space-separated, then the MSG.
struct Rsyslog {
    child: Child,
    raw: PathBuf,
    parsed: PathBuf,
    stderr: PathBuf,
    port: u16,
}

impl Rsyslog {
    fn start(dir: &TempDir) -> Rsyslog {
        let port = free_udp_port();
        let (raw, parsed, stderr) = (
            dir.path("raw.log"),
            dir.path("parsed.log"),
            dir.path("rsyslogd.err"),
        );
        let conf = dir.path("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                r#"global(workDirectory="{dir}")
module(load="imudp")
template(name="raw" type="string" string="%rawmsg%\n")
template(name="parsed" type="string" string="%syslogfacility% %syslogseverity% %app-name% %procid% %msgid% %structured-data% %msg%\n")
ruleset(name="detector") {{
  action(type="omfile" file="{raw}" template="raw")
  action(type="omfile" file="{parsed}" template="parsed")
}}
input(type="imudp" address="127.0.0.1" port="{port}" ruleset="detector")
"#,
                dir = dir.0.display(),
                raw = raw.display(),
                parsed = parsed.display(),
            ),
        )
        .expect("write rsyslog.conf");
        let child = Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(dir.path("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("create rsyslogd.err"))
            .spawn()
            .expect("run rsyslogd (Debian package rsyslog; cargo xtask setup installs it)");
        let mut r = Rsyslog {
            child,
            raw,
            parsed,
            stderr,
            port,
        };
        r.wait_ready();
        r
    }

    /// Listening and writing: a probe sent until it shows up in the output.
    fn wait_ready(&mut self) {
        let probe = format!("<14>1 - - e2e-probe {} - - ready", std::process::id());
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.raw_lines().iter().any(|l| l == &probe) {
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!("rsyslogd exited with {st}:\n{}", self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "rsyslogd not receiving on 127.0.0.1:{} after 10 s:\n{}",
                self.port,
                self.stderr()
            );
            let _ = tx.send_to(probe.as_bytes(), ("127.0.0.1", self.port));
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn raw_lines(&self) -> Vec<String> {
        read_lines(&self.raw)
    }

    fn parsed_lines(&self) -> Vec<String> {
        read_lines(&self.parsed)
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_lines(p: &PathBuf) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free UDP port")
        .port()
}

/// RFC 5424 severity for the alert's severity.
fn syslog_severity(alert: &Value) -> u8 {
    match s(alert, "severity") {
        "critical" => 2,
        "high" => 3,
        "medium" => 4,
        "low" => 5,
        _ => 6,
    }
}

/// A read() hook preloaded into true: the alert is on stdout and, as RFC 5424, in rsyslog.
#[test]
fn preload_alert_reaches_rsyslog_over_udp() {
    require_root();
    let dir = TempDir::new("syslog");
    let lib = gcc(&dir, "read_hook.c", "libsyslog.so", true);
    let libpath = lib.to_str().unwrap();
    let rsyslog = Rsyslog::start(&dir);
    let config = dir.path("detector.toml");
    std::fs::write(
        &config,
        format!(
            "[output]\nstdout = true\nsyslog = \"udp://127.0.0.1:{}\"\n",
            rsyslog.port
        ),
    )
    .expect("write detector.toml");
    let d = Daemon::start_with(&["--config", config.to_str().unwrap()]);
    assert!(trigger(Command::new("/usr/bin/true").env("LD_PRELOAD", &lib)).success());
    let alert = d.expect_alert("LD_PRELOAD into true, on stdout", |a| {
        s(a, "library.path") == libpath && has(a, "detections", "preload_env")
    });

    let deadline = Instant::now() + Duration::from_secs(10);
    let raw = loop {
        if let Some(l) = rsyslog
            .raw_lines()
            .into_iter()
            .find(|l| l.contains(libpath) && l.contains("preload_env"))
        {
            break l;
        }
        assert!(
            Instant::now() < deadline,
            "no alert in rsyslog within 10 s; it received:\n{}\nrsyslogd stderr:\n{}",
            rsyslog.raw_lines().join("\n"),
            rsyslog.stderr()
        );
        thread::sleep(Duration::from_millis(50));
    };

    // <PRI>1 TIMESTAMP HOSTNAME detector PID - - JSON
    let f: Vec<&str> = raw.splitn(8, ' ').collect();
    assert_eq!(f.len(), 8, "{raw}");
    let pri: u8 = f[0]
        .strip_prefix('<')
        .and_then(|p| p.strip_suffix(">1"))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("not <PRI>1: {raw}"));
    assert_eq!(pri % 8, syslog_severity(&alert), "{raw}");
    assert_eq!(f[1], s(&alert, "@timestamp"), "{raw}");
    assert_eq!(f[3], "detector", "{raw}");
    assert_eq!(f[4], d.pid().to_string(), "{raw}");
    assert_eq!((f[5], f[6]), ("-", "-"), "{raw}");
    let msg: Value =
        serde_json::from_str(f[7]).unwrap_or_else(|e| panic!("MSG is not JSON ({e}): {raw}"));
    assert_eq!(s(&msg, "library.path"), libpath);
    assert_eq!(s(&msg, "process.name"), "true");
    assert_eq!(msg["process"]["pid"], alert["process"]["pid"]);

    // What rsyslog made of it: facility, severity, app-name, procid, msgid, SD, then MSG.
    let parsed = rsyslog
        .parsed_lines()
        .into_iter()
        .find(|l| l.contains(libpath))
        .unwrap_or_else(|| panic!("no parsed line; raw: {raw}"));
    let p: Vec<&str> = parsed.splitn(7, ' ').collect();
    assert_eq!(p.len(), 7, "{parsed}");
    assert_eq!(p[0], (pri / 8).to_string(), "{parsed}");
    assert_eq!(p[1], (pri % 8).to_string(), "{parsed}");
    assert_eq!(
        &p[2..6],
        ["detector", &d.pid().to_string(), "-", "-"],
        "{parsed}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(p[6]).ok(),
        Some(msg),
        "{parsed}"
    );
    d.stop();
}
