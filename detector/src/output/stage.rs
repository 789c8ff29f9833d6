//! The output stage, on a thread of its own: writes alerts and stats records to the outputs.
//! Whatever an output does (blocks on a slow collector, fails), the reader and the policy
//! stage only ever try to queue, never wait.
use std::{
    sync::{
        mpsc::{self, SyncSender},
        Arc,
    },
    thread::JoinHandle,
};

use crate::{
    output::{
        alert::{Alert, Clock},
        sink::Fanout,
    },
    stats::{add, Counters, KernelCounts},
};

pub enum ToOutput {
    Alert(Box<Alert>),
    /// Write a stats record with these kernel counts.
    Stats(KernelCounts),
    /// New outputs (a reloaded configuration).
    Replace(Fanout),
    /// Reopen the output files (SIGHUP with an unchanged configuration: logrotate).
    Reopen,
    /// A stats record now, with these kernel counts, handed back rather than written (the
    /// metrics endpoint).
    Snapshot(
        KernelCounts,
        tokio::sync::oneshot::Sender<serde_json::Value>,
    ),
}

/// Starts the stage; it ends when every sender is gone and its queue is empty.
pub fn spawn(
    mut sinks: Fanout,
    capacity: usize,
    clock: Clock,
    counters: Arc<Counters>,
) -> anyhow::Result<(SyncSender<ToOutput>, JoinHandle<()>)> {
    let (tx, rx) = mpsc::sync_channel::<ToOutput>(capacity);
    let thread = std::thread::Builder::new()
        .name("output".into())
        .spawn(move || {
            for msg in rx {
                // A failing output is the fanout's to log once, retry and count (its stats).
                match msg {
                    ToOutput::Alert(alert) => {
                        add(&counters.alerts);
                        add(&counters.alerts_by_severity[alert.severity as usize]);
                        sinks.emit(&alert);
                    }
                    ToOutput::Stats(kernel) => {
                        let record = counters.record(&clock, &kernel, sinks.stats());
                        sinks.emit_record(&record);
                    }
                    ToOutput::Snapshot(kernel, reply) => {
                        let _ = reply.send(counters.record(&clock, &kernel, sinks.stats()));
                    }
                    // The running outputs keep their counters and backlog.
                    ToOutput::Replace(new) => sinks.replace(new),
                    ToOutput::Reopen => {
                        if let Err(e) = sinks.reopen() {
                            log::error!("reopening outputs: {e:#}");
                        }
                    }
                }
            }
        })?;
    Ok((tx, thread))
}
