//! The policy and aggregation stage, on a thread of its own: takes the reader's findings, has
//! the file each one names analysed on the enrichment pool, scores the finding once its facts
//! are in (or once its deadline passed: it then goes out without them and says so), applies the
//! policy, folds repeats, and hands alerts to the outputs. Changes to watched files wait until
//! they settled, and are described ([`Changes`]) before they are judged.
//!
//! A finding waits only for its own file: the reader never waits, and the others go on. Files
//! of credential processes take the pool's credential lane.
use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::{
    engine::{
        enrich::{
            self,
            elf::ElfFacts,
            pool::{Job, Lane, Pool},
        },
        policy::Policy,
        rules::Finding,
        watch::Changes,
    },
    output::{aggregate::Aggregator, alert::Clock, stage::ToOutput},
    stats::{add, Counters},
};

/// How often pending findings and aggregation windows are looked at.
const TICK: Duration = Duration::from_millis(100);
/// At stop, how long findings still wait for their file's analysis before they go out
/// without it.
const STOP_GRACE: Duration = Duration::from_millis(300);

pub enum ToPolicy {
    Finding(Box<Finding>),
    /// A finished analysis (from the pool).
    Analysed(u64, ElfFacts),
    /// No package manager runs any more (the reader saw the last one exit).
    PackageManagersDone,
    /// A reloaded configuration: the policy and the aggregation window.
    Reload(Box<Policy>, Duration),
    /// Finish what is pending, flush the aggregation windows, and stop.
    Stop,
}

pub struct Settings {
    pub deadline: Duration,
    pub workers: usize,
    pub lane_capacity: usize,
    pub hash_budget: u64,
    pub aggregate_window: Duration,
}

/// Findings waiting for one file's analysis.
struct Waiting {
    path: PathBuf,
    findings: Vec<(Finding, Instant)>,
}

struct Stage {
    clock: Clock,
    policy: Policy,
    aggregator: Aggregator,
    pool: Pool,
    deadline: Duration,
    next_job: u64,
    /// By job id.
    waiting: HashMap<u64, Waiting>,
    /// Job id of the analysis in progress for a path: one at a time per file.
    in_progress: HashMap<PathBuf, u64>,
    out: SyncSender<ToOutput>,
    counters: Arc<Counters>,
    changes: Changes,
}

/// Starts the stage; returns its queue (bounded by `capacity`) and its thread.
pub fn spawn(
    clock: Clock,
    policy: Policy,
    settings: Settings,
    capacity: usize,
    out: SyncSender<ToOutput>,
    counters: Arc<Counters>,
    changes: Changes,
) -> anyhow::Result<(SyncSender<ToPolicy>, JoinHandle<()>)> {
    let (tx, rx) = mpsc::sync_channel(capacity);
    let done_tx = tx.clone();
    let done: enrich::pool::Done = Box::new(move |id, facts| {
        // A blocking send: the pool waits for the stage rather than lose a result.
        let _ = done_tx.send(ToPolicy::Analysed(id, facts));
    });
    let pool = Pool::start(
        settings.workers,
        settings.lane_capacity,
        settings.hash_budget,
        done,
    );
    let stage = Stage {
        clock,
        policy,
        aggregator: Aggregator::new(settings.aggregate_window),
        pool,
        deadline: settings.deadline,
        next_job: 0,
        waiting: HashMap::new(),
        in_progress: HashMap::new(),
        out,
        counters,
        changes,
    };
    let thread = std::thread::Builder::new()
        .name("policy".into())
        .spawn(move || stage.run(rx))?;
    Ok((tx, thread))
}

impl Stage {
    fn run(mut self, rx: Receiver<ToPolicy>) {
        let mut stopping = false;
        loop {
            match rx.recv_timeout(TICK) {
                Ok(ToPolicy::Finding(f)) => self.on_finding(*f),
                Ok(ToPolicy::Analysed(id, facts)) => self.on_analysed(id, &facts),
                Ok(ToPolicy::PackageManagersDone) => {
                    self.changes.package_managers_done(Instant::now())
                }
                Ok(ToPolicy::Reload(policy, window)) => {
                    self.policy = *policy;
                    self.aggregator.set_window(window);
                }
                Ok(ToPolicy::Stop) => {
                    stopping = true;
                    self.hurry(Instant::now() + STOP_GRACE);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => stopping = true,
            }
            let now = Instant::now();
            self.expire_waiting(now);
            for f in self.changes.settled((!stopping).then_some(now)) {
                self.judge(f);
            }
            if stopping && self.waiting.values().all(|w| w.findings.is_empty()) {
                break;
            }
            for summary in self.aggregator.expire(Some(now)) {
                self.emit(summary);
            }
        }
        for summary in self.aggregator.expire(None) {
            self.emit(summary);
        }
        // A thread blocked handing in a result sees the queue gone and returns.
        drop(rx);
        self.pool.stop();
    }

    fn on_finding(&mut self, mut f: Finding) {
        if f.file.is_some() {
            return self.changes.admit(f, Instant::now());
        }
        let Some(path) = enrich::source(&f) else {
            return self.judge(f);
        };
        let deadline = Instant::now() + self.deadline;
        if let Some(id) = self.in_progress.get(&path) {
            if let Some(w) = self.waiting.get_mut(id) {
                w.findings.push((f, deadline));
                return;
            }
        }
        self.next_job += 1;
        let id = self.next_job;
        let lane = if self.policy.concerns_credentials(&f) {
            Lane::Credential
        } else {
            Lane::Other
        };
        let job = Job {
            id,
            path: path.clone(),
            lane,
        };
        match self.pool.submit(job) {
            Ok(()) => {
                self.in_progress.insert(path.clone(), id);
                self.waiting.insert(
                    id,
                    Waiting {
                        path,
                        findings: vec![(f, deadline)],
                    },
                );
            }
            Err(_) => {
                add(&self.counters.enrichment_queue_full);
                enrich::skip(&mut f, "the enrichment queue was full".into());
                self.judge(f);
            }
        }
    }

    fn on_analysed(&mut self, id: u64, facts: &ElfFacts) {
        if facts.hash_skipped.is_some() {
            add(&self.counters.hash_over_budget);
        }
        let Some(w) = self.waiting.remove(&id) else {
            return;
        };
        if self.in_progress.get(&w.path) == Some(&id) {
            self.in_progress.remove(&w.path);
        }
        for (mut f, _) in w.findings {
            enrich::apply(&mut f, facts);
            self.judge(f);
        }
    }

    /// Brings every waiting finding's deadline forward to `by` at the latest.
    fn hurry(&mut self, by: Instant) {
        for w in self.waiting.values_mut() {
            for (_, deadline) in &mut w.findings {
                *deadline = (*deadline).min(by);
            }
        }
    }

    /// Sends out, without their file's facts, the findings whose deadline passed. The analysis
    /// goes on; its result is then only cached.
    fn expire_waiting(&mut self, now: Instant) {
        let deadline_ms = self.deadline.as_millis();
        let mut late = Vec::new();
        for w in self.waiting.values_mut() {
            let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut w.findings)
                .into_iter()
                .partition(|(_, d)| *d <= now);
            w.findings = kept;
            late.extend(gone.into_iter().map(|(f, _)| f));
        }
        for mut f in late {
            add(&self.counters.enrichment_late);
            enrich::skip(
                &mut f,
                format!("the file's analysis did not finish within {deadline_ms} ms"),
            );
            self.judge(f);
        }
    }

    fn judge(&mut self, f: Finding) {
        let Some(alert) = self.policy.judge(f, &self.clock) else {
            return;
        };
        if let Some(alert) = self.aggregator.admit(alert, Instant::now()) {
            self.emit(alert);
        }
    }

    fn emit(&mut self, alert: crate::output::alert::Alert) {
        match self.out.try_send(ToOutput::Alert(Box::new(alert))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => add(&self.counters.dropped_outputs),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}
