//! Root end-to-end: an alert reaches a real rsyslog over UDP as an RFC 5424 message that
//! rsyslog parses (app-name, procid, severity) and whose MSG is the alert's JSON; and a rsyslog
//! over TCP that goes away and comes back neither stops the daemon nor its file output, and gets
//! what it missed.
use std::{
    io::Write as _,
    net::{TcpListener, TcpStream, UdpSocket},
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use detector_tests::{gcc, has, require_root, s, trigger, Daemon, TempDir};
use serde_json::Value;

/// rsyslogd in the foreground with a configuration of our own (nothing under /etc), killed on
/// drop. It writes every message it receives on 127.0.0.1:`port` (UDP, or TCP) twice: raw, and as
/// the properties it parsed, space-separated, then the MSG.
struct Rsyslog {
    child: Child,
    raw: PathBuf,
    parsed: PathBuf,
    stderr: PathBuf,
    port: u16,
    tcp: bool,
}

impl Rsyslog {
    fn start(dir: &TempDir) -> Rsyslog {
        Self::start_on(dir, free_udp_port(), false)
    }

    /// On TCP `port`, appending to the files an earlier one on it wrote.
    fn start_tcp(dir: &TempDir, port: u16) -> Rsyslog {
        Self::start_on(dir, port, true)
    }

    fn start_on(dir: &TempDir, port: u16, tcp: bool) -> Rsyslog {
        let input = if tcp { "imtcp" } else { "imudp" };
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
module(load="{input}")
template(name="raw" type="string" string="%rawmsg%\n")
template(name="parsed" type="string" string="%syslogfacility% %syslogseverity% %app-name% %procid% %msgid% %structured-data% %msg%\n")
ruleset(name="detector") {{
  action(type="omfile" file="{raw}" template="raw")
  action(type="omfile" file="{parsed}" template="parsed")
}}
input(type="{input}" address="127.0.0.1" port="{port}" ruleset="detector")
"#,
                dir = dir.0.display(),
                raw = raw.display(),
                parsed = parsed.display(),
            ),
        )
        .expect("write rsyslog.conf");
        // A pid file left by one that was killed.
        let _ = std::fs::remove_file(dir.path("rsyslogd.pid"));
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
            tcp,
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
                "rsyslogd not receiving on 127.0.0.1:{} ({}) after 10 s:\n{}",
                self.port,
                if self.tcp { "TCP" } else { "UDP" },
                self.stderr()
            );
            if self.tcp {
                // RFC 6587 octet counting, one connection per probe.
                if let Ok(mut c) = TcpStream::connect(("127.0.0.1", self.port)) {
                    let _ = write!(c, "{} {probe}", probe.len());
                }
            } else {
                let _ = tx.send_to(probe.as_bytes(), ("127.0.0.1", self.port));
            }
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

    let received = || {
        format!(
            "raw:\n{}\nparsed:\n{}\nrsyslogd stderr:\n{}",
            rsyslog.raw_lines().join("\n"),
            rsyslog.parsed_lines().join("\n"),
            rsyslog.stderr()
        )
    };
    let raw = within(
        10,
        "the alert in rsyslog's raw log",
        || {
            (rsyslog.raw_lines().into_iter())
                .find(|l| l.contains(libpath) && l.contains("preload_env"))
        },
        received,
    );

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
    // rsyslog writes its two files from separate actions: the parsed line may follow the raw one.
    let parsed = within(
        10,
        "the alert in rsyslog's parsed log",
        || {
            rsyslog
                .parsed_lines()
                .into_iter()
                .find(|l| l.contains(libpath))
        },
        received,
    );
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

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free TCP port")
        .port()
}

/// Polls `find` every 50 ms for up to `secs` seconds; panics saying `what`, then `context()`.
fn within<T>(
    secs: u64,
    what: &str,
    find: impl Fn() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(t) = find() {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {secs} s\n{}",
            context()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// The JSON lines of a file output.
fn json_lines(p: &PathBuf) -> Vec<Value> {
    read_lines(p)
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The daemon writes to a file and to rsyslog over TCP; rsyslog is killed and started again on
/// the same port. Meanwhile alerts go to the file, the daemon stays up, its stats record counts
/// the syslog errors, and once rsyslog is back it gets the alert it missed, then the new one.
#[test]
fn syslog_outage_spares_the_daemon_and_the_file_and_is_made_up_for() {
    require_root();
    let dir = TempDir::new("syslog-outage");
    let first = gcc(&dir, "read_hook.c", "liboutage0.so", true);
    // One library per alert: the same alert again would be aggregated, not emitted.
    let libs: Vec<String> = (0..3)
        .map(|i| {
            let p = dir.path(&format!("liboutage{i}.so"));
            if i > 0 {
                std::fs::copy(&first, &p).expect("copy the hook library");
            }
            p.to_str().unwrap().to_string()
        })
        .collect();
    let port = free_tcp_port();
    let rsyslog = Rsyslog::start_tcp(&dir, port);
    let file = dir.path("alerts.jsonl");
    let config = dir.path("detector.toml");
    std::fs::write(
        &config,
        format!(
            "[output]\nstdout = true\nfile = \"{}\"\nsyslog = \"tcp://127.0.0.1:{port}\"\n\
             [thresholds]\nstats_interval_secs = 1\n",
            file.display()
        ),
    )
    .expect("write detector.toml");
    let d = Daemon::start_with(&["--config", config.to_str().unwrap()]);
    let fire = |i: usize| {
        assert!(trigger(Command::new("/usr/bin/true").env("LD_PRELOAD", &libs[i])).success());
        let lib = libs[i].as_str();
        d.expect_alert(&format!("LD_PRELOAD={lib} into true, on stdout"), |a| {
            s(a, "library.path") == lib && has(a, "detections", "preload_env")
        });
    };
    let context = |r: Option<&Rsyslog>| {
        let r = r.map_or(String::new(), |r| {
            format!(
                "rsyslog received:\n{}\nrsyslogd stderr:\n{}",
                r.raw_lines().join("\n"),
                r.stderr()
            )
        });
        format!(
            "file output:\n{}\n{r}\ndetector stderr:\n{}",
            read_lines(&file).join("\n"),
            d.stderr()
        )
    };
    let in_file = |i: usize| {
        within(
            10,
            &format!("alert {i} in the file output"),
            || {
                json_lines(&file).into_iter().find(|v| {
                    s(v, "library.path") == libs[i] && has(v, "detections", "preload_env")
                })
            },
            || context(None),
        )
    };
    // The line of rsyslog's raw log that holds alert `i`.
    let in_rsyslog = |r: &Rsyslog, i: usize, secs: u64| {
        within(
            secs,
            &format!("alert {i} in rsyslog"),
            || {
                r.raw_lines()
                    .iter()
                    .position(|l| l.contains(&libs[i]) && l.contains("preload_env"))
            },
            || context(Some(r)),
        )
    };
    let stats = |what: &str, pred: &dyn Fn(&Value) -> bool| {
        within(
            10,
            what,
            || {
                json_lines(&file)
                    .into_iter()
                    .rev()
                    .find(|v| v["record"] == "stats" && pred(&v["outputs"]))
            },
            || context(None),
        )
    };

    // Both outputs get the first alert.
    fire(0);
    in_file(0);
    in_rsyslog(&rsyslog, 0, 10);

    // rsyslog goes away: the second alert reaches the file, and the stats count the failure.
    drop(rsyslog);
    fire(1);
    in_file(1);
    let down = stats("a stats record with the syslog output down", &|o| {
        o["syslog"]["up"] == false && o["syslog"]["errors"].as_u64() >= Some(1)
    });
    let o = &down["outputs"];
    assert!(o["syslog"]["queued"].as_u64() >= Some(1), "{down}");
    assert_eq!(o["syslog"]["dropped"], 0, "{down}");
    assert_eq!(
        (&o["file"]["up"], &o["file"]["errors"]),
        (&Value::Bool(true), &Value::from(0)),
        "{down}"
    );
    assert_eq!(o["stdout"]["up"], true, "{down}");
    assert!(o["file"]["written"].as_u64() >= Some(2), "{down}");

    // rsyslog is back on the same port: the next retry (1 s, doubling, while it was down:
    // a few seconds here) delivers what it missed, then the third alert.
    let rsyslog = Rsyslog::start_tcp(&dir, port);
    fire(2);
    in_file(2);
    let third = in_rsyslog(&rsyslog, 2, 40);
    let second = in_rsyslog(&rsyslog, 1, 1);
    assert!(second < third, "the missed alert is replayed first");
    let up = stats("a stats record with the syslog output up again", &|o| {
        // errors: not a record from before the outage.
        o["syslog"]["up"] == true && o["syslog"]["errors"].as_u64() >= Some(1)
    });
    let o = &up["outputs"];
    assert_eq!(o["syslog"]["queued"], 0, "{up}");
    assert!(
        o["syslog"]["written"].as_u64().unwrap()
            >= down["outputs"]["syslog"]["written"].as_u64().unwrap() + 2,
        "the missed alert and the third were written: {down}\n{up}"
    );
    assert_eq!(o["syslog"]["dropped"], 0, "{up}");
    assert_eq!(o["file"]["errors"], 0, "{up}");

    let stderr = d.stop();
    let name = format!("output syslog (tcp://127.0.0.1:{port})");
    assert_eq!(
        stderr.matches(&format!("{name} failed")).count(),
        1,
        "logged once when it failed:\n{stderr}"
    );
    assert_eq!(
        stderr.matches(&format!("{name} is back")).count(),
        1,
        "logged once when it was back:\n{stderr}"
    );
    drop(rsyslog);
}
