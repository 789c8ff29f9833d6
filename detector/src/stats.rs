//! Counters that every stage updates and the stats record reads: what was decoded, what each
//! bounded queue dropped, what enrichment left out, what went out. Each counter has one writer;
//! relaxed atomics are enough for a periodic report.
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use detector_common::{Channel, EventKind, CHANNELS, EVENT_KINDS};
use serde_json::{json, Map, Value};

use crate::output::alert::{Clock, Severity};

#[derive(Default)]
pub struct Counters {
    /// Events decoded, per kind (`EventKind::index`).
    pub events: [AtomicU64; EVENT_KINDS],
    /// Records that did not decode.
    pub malformed: AtomicU64,
    /// Findings the reader could not hand to the policy stage (its queue was full).
    pub dropped_findings: AtomicU64,
    /// Alerts and records the output stage could not take (its queue was full).
    pub dropped_outputs: AtomicU64,
    /// Enrichment jobs refused because their lane was full (the alert went out without it).
    pub enrichment_queue_full: AtomicU64,
    /// Alerts sent without their file's analysis because it did not finish in time.
    pub enrichment_late: AtomicU64,
    /// Files analysed but not hashed: over the hashing budget.
    pub hash_over_budget: AtomicU64,
    /// Files the package database vouched for: their findings dropped.
    pub verify_vouched: AtomicU64,
    /// Files it did not vouch for that raise no alert (an application's own library in a
    /// process outside the catalogue), or that it could not answer for.
    pub verify_dropped: AtomicU64,
    /// Findings held while a package manager ran, to be verified again.
    pub verify_held: AtomicU64,
    /// Findings that were only a question to the package database, unanswered at stop.
    pub verify_unanswered: AtomicU64,
    /// Alerts handed to the outputs.
    pub alerts: AtomicU64,
    /// The same, per severity (`Severity as usize`).
    pub alerts_by_severity: [AtomicU64; Severity::ALL.len()],
}

pub fn add(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

fn per_channel(values: &[u64; CHANNELS as usize]) -> Map<String, Value> {
    Channel::ALL
        .iter()
        .zip(values)
        .map(|(c, n)| (c.name().to_owned(), json!(n)))
        .collect()
}

/// What the kernel side reports: records lost (ring buffer full) and reads that failed, per
/// channel.
#[derive(Debug, Clone, Copy, Default)]
pub struct KernelCounts {
    pub lost: [u64; CHANNELS as usize],
    pub read_errors: [u64; CHANNELS as usize],
}

impl Counters {
    /// The stats record (`event.dataset` `detector.stats`); `outputs` is the outputs' own report.
    pub fn record(&self, clock: &Clock, kernel: &KernelCounts, outputs: Value) -> Value {
        let n = |c: &AtomicU64| c.load(Relaxed);
        let events: Map<String, Value> = EventKind::ALL
            .iter()
            .zip(&self.events)
            .map(|(k, c)| (k.name().to_owned(), json!(n(c))))
            .collect();
        json!({
            "@timestamp": clock.rfc3339_now(),
            "event": {"kind": "metric", "module": "detector", "dataset": "detector.stats"},
            "record": "stats",
            "events": events,
            "malformed": n(&self.malformed),
            "lost": per_channel(&kernel.lost),
            "read_errors": per_channel(&kernel.read_errors),
            "dropped": {
                "findings": n(&self.dropped_findings),
                "outputs": n(&self.dropped_outputs),
                "enrichment": n(&self.enrichment_queue_full),
            },
            "enrichment": {
                "late": n(&self.enrichment_late),
                "queue_full": n(&self.enrichment_queue_full),
                "hash_over_budget": n(&self.hash_over_budget),
            },
            "verification": {
                "vouched": n(&self.verify_vouched),
                "dropped": n(&self.verify_dropped),
                "held": n(&self.verify_held),
                "unanswered": n(&self.verify_unanswered),
            },
            "alerts": n(&self.alerts),
            "alerts_by_severity": Severity::ALL
                .iter()
                .zip(&self.alerts_by_severity)
                .map(|(s, c)| (s.name().to_owned(), json!(n(c))))
                .collect::<Map<String, Value>>(),
            "outputs": outputs,
        })
    }
}
