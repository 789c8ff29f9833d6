//! Root end-to-end: the Prometheus endpoint (`[metrics] listen`) serves the daemon's counters,
//! alerts per severity among them; an address the daemon cannot listen on stops it at start.
use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    process::Command,
};

use detector_tests::{detector_bin, require_root, s, trigger, Daemon, TempDir};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get(port: u16, path: &str) -> String {
    let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect to the metrics endpoint");
    write!(c, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    out
}

/// The value of the sample line `name{labels}` in OpenMetrics text.
fn sample(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_count_events_and_alerts_by_severity() {
    let dir = TempDir::new("metrics");
    let port = free_port();
    let cfg = dir.path("detector.toml");
    std::fs::write(&cfg, format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n")).unwrap();
    let d = Daemon::start_with(&["--config", cfg.to_str().unwrap()]);
    let libm = "/usr/lib/x86_64-linux-gnu/libm.so.6";
    trigger(Command::new("/bin/true").env("LD_PRELOAD", libm));
    d.expect_alert("libm preloaded into true", |a| {
        s(a, "library.path") == libm && s(a, "process.name") == "true"
    });
    let page = get(port, "/metrics");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("application/openmetrics-text"), "{page}");
    assert!(page.trim_end().ends_with("# EOF"), "{page}");
    assert!(
        sample(&page, "detector_events_total{kind=\"exec\"}").is_some_and(|n| n >= 1),
        "{page}"
    );
    assert_eq!(
        sample(&page, "detector_events_lost_total{channel=\"exec\"}"),
        Some(0),
        "{page}"
    );
    assert!(
        sample(&page, "detector_alerts_total{severity=\"low\"}").is_some_and(|n| n >= 1),
        "{page}"
    );
    assert_eq!(
        sample(&page, "detector_output_up{output=\"stdout\"}"),
        Some(1),
        "{page}"
    );
    assert!(get(port, "/").starts_with("HTTP/1.1 404"));
    d.stop();
}

/// The benign twin: without `[metrics]`, nothing listens.
#[test]
fn no_metrics_section_no_listener() {
    let d = Daemon::start();
    let listening = std::fs::read_to_string("/proc/net/tcp").unwrap();
    // 9417 (0x24C9) is the example port of packaging/detector.toml.
    assert!(!listening.contains(":24C9 "), "{listening}");
    d.stop();
}

#[test]
fn an_address_in_use_is_an_error_at_start() {
    require_root();
    let dir = TempDir::new("metrics-busy");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let cfg = dir.path("detector.toml");
    std::fs::write(&cfg, format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n")).unwrap();
    let out = Command::new(detector_bin())
        .args(["run", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("detector: error: [metrics] listen")),
        "{err}"
    );
}
