//! The optional Prometheus endpoint (`[metrics] listen`): `GET /metrics` answers with the
//! stats record's counters in the OpenMetrics text format, encoded by `prometheus-client`.
//! Each scrape asks the output stage for a fresh stats record (the outputs' own counters live
//! there) and never waits on the reader: the request is only queued, and a scrape that finds
//! the queue full gets 503.
use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::{Context as _, Result};
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::oneshot,
};

use crate::{output::stage::ToOutput, stats::KernelCounts};

/// How long one scrape may take, reading the request and answering it.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest request read (a scrape's request is one short line and a few headers).
const MAX_REQUEST: usize = 8192;

/// The kernel's counts as the daemon last read them (every second).
pub type SharedKernelCounts = Arc<std::sync::Mutex<KernelCounts>>;

/// The endpoint's hold on the output stage's queue, let go at stop ([`Endpoint::stop`]) so that
/// the stage can end.
type Out = Arc<std::sync::Mutex<Option<std::sync::mpsc::SyncSender<ToOutput>>>>;

/// A running endpoint.
pub struct Endpoint {
    out: Out,
}

impl Endpoint {
    /// Scrapes from now on get 503; the output stage's queue is no longer held.
    pub fn stop(&self) {
        self.out.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// Binds `addr` now (an address that cannot be bound is an error at start), then serves
/// scrapes on the daemon's runtime.
pub async fn start(
    addr: SocketAddr,
    out: std::sync::mpsc::SyncSender<ToOutput>,
    kernel: SharedKernelCounts,
) -> Result<Endpoint> {
    let out: Out = Arc::new(std::sync::Mutex::new(Some(out)));
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("[metrics] listen = \"{addr}\": cannot listen there"))?;
    log::info!("metrics on http://{addr}/metrics");
    let endpoint_out = Arc::clone(&out);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (out, kernel) = (Arc::clone(&out), Arc::clone(&kernel));
            tokio::spawn(async move {
                let _ = tokio::time::timeout(SCRAPE_TIMEOUT, answer(stream, &out, kernel)).await;
            });
        }
    });
    Ok(Endpoint { out: endpoint_out })
}

async fn answer(
    mut stream: TcpStream,
    out: &Out,
    kernel: SharedKernelCounts,
) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < MAX_REQUEST {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let line = request.split(|&b| b == b'\n').next().unwrap_or_default();
    let (status, body) = if !(line.starts_with(b"GET /metrics ") || line == b"GET /metrics\r") {
        ("404 Not Found", "try /metrics\n".to_owned())
    } else {
        let counts = *kernel.lock().unwrap_or_else(|e| e.into_inner());
        let (tx, rx) = oneshot::channel();
        let sent = match out.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            Some(out) => out.try_send(ToOutput::Snapshot(counts, tx)).is_ok(),
            None => false,
        };
        if !sent {
            (
                "503 Service Unavailable",
                "the output stage is busy or stopping\n".to_owned(),
            )
        } else {
            match rx.await {
                Ok(record) => ("200 OK", render(&record)),
                Err(_) => ("503 Service Unavailable", "stopping\n".to_owned()),
            }
        }
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

type Labels = Vec<(&'static str, String)>;

/// A counter family with one label, from the stats record's object at `key`.
fn family(
    registry: &mut Registry,
    name: &str,
    help: &str,
    label: &'static str,
    values: Option<&Value>,
) {
    let f = Family::<Labels, Counter>::default();
    for (k, v) in values.and_then(Value::as_object).into_iter().flatten() {
        f.get_or_create(&vec![(label, k.clone())])
            .inc_by(v.as_u64().unwrap_or(0));
    }
    registry.register(name, help, f);
}

fn counter(registry: &mut Registry, name: &str, help: &str, value: Option<&Value>) {
    let c = Counter::<u64>::default();
    c.inc_by(value.and_then(Value::as_u64).unwrap_or(0));
    registry.register(name, help, c);
}

/// The stats record as OpenMetrics text.
pub fn render(record: &Value) -> String {
    let mut r = Registry::with_prefix("detector");
    family(
        &mut r,
        "events",
        "Events decoded, per kind",
        "kind",
        record.get("events"),
    );
    family(
        &mut r,
        "events_lost",
        "Events lost because the ring buffer was full, per kernel channel",
        "channel",
        record.get("lost"),
    );
    family(
        &mut r,
        "read_errors",
        "Kernel or user memory reads that failed, per kernel channel",
        "channel",
        record.get("read_errors"),
    );
    family(
        &mut r,
        "queue_dropped",
        "What a bounded queue between the daemon's stages dropped",
        "queue",
        record.get("dropped"),
    );
    family(
        &mut r,
        "alerts",
        "Alerts handed to the outputs, per severity",
        "severity",
        record.get("alerts_by_severity"),
    );
    counter(
        &mut r,
        "malformed",
        "Records that did not decode",
        record.get("malformed"),
    );
    let outputs: Vec<(&String, &Value)> = record
        .get("outputs")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .collect();
    let per_output = |field: &str| {
        let f = Family::<Labels, Counter>::default();
        for (name, o) in &outputs {
            f.get_or_create(&vec![("output", (*name).clone())])
                .inc_by(o.get(field).and_then(Value::as_u64).unwrap_or(0));
        }
        f
    };
    r.register(
        "output_errors",
        "Failed writes, per output",
        per_output("errors"),
    );
    r.register(
        "output_written",
        "Lines written, per output",
        per_output("written"),
    );
    r.register(
        "output_dropped",
        "Lines dropped, per output",
        per_output("dropped"),
    );
    let up = Family::<Labels, Gauge>::default();
    for (name, o) in &outputs {
        up.get_or_create(&vec![("output", (*name).clone())])
            .set(i64::from(
                o.get("up").and_then(Value::as_bool).unwrap_or(false),
            ));
    }
    r.register("output_up", "1 while the output works", up);
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut text, &r);
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_stats_record_becomes_openmetrics_text() {
        let record = json!({
            "events": {"exec": 7, "mmap": 3},
            "lost": {"exec": 0},
            "read_errors": {"exec": 1},
            "dropped": {"findings": 0, "outputs": 2, "enrichment": 0},
            "alerts_by_severity": {"info": 0, "low": 4, "high": 1},
            "malformed": 0,
            "outputs": {"stdout": {"up": true, "written": 5, "errors": 0, "dropped": 0, "queued": 0},
                        "syslog": {"up": false, "written": 1, "errors": 3, "dropped": 0, "queued": 2}},
        });
        let text = render(&record);
        for line in [
            "detector_events_total{kind=\"exec\"} 7",
            "detector_events_lost_total{channel=\"exec\"} 0",
            "detector_queue_dropped_total{queue=\"outputs\"} 2",
            "detector_alerts_total{severity=\"low\"} 4",
            "detector_output_errors_total{output=\"syslog\"} 3",
            "detector_output_up{output=\"syslog\"} 0",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
        }
    }
}
