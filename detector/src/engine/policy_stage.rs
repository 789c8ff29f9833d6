//! The policy and aggregation stage, on a thread of its own: takes the reader's findings, has
//! the file each one names analysed on the enrichment pool, scores the finding once its facts
//! are in (or once its deadline passed: it then goes out without them and says so), applies the
//! policy, folds repeats, and hands alerts to the outputs. Changes to watched files wait until
//! they settled, and are described ([`Changes`]) before they are judged.
//!
//! A finding waits only for its own file: the reader never waits, and the others go on. Files
//! of credential processes take the pool's credential lane.
//!
//! A finding that asks for its file to be verified (`Finding::verify`) has the package database
//! asked on the pool too. One that is only that question (`enrich::verify_only`) is not an alert
//! until the answer says so: it waits for the answer past the deadline, and is dropped if the
//! daemon stops first. What the answer makes of it is `unverified_object::outcome`; an answer
//! that the file is unpackaged or modified, given while a package manager runs, may be the
//! upgrade in progress: the finding is held and verified again once no package manager runs
//! (at most [`HOLD_MAX`]). So is such an answer about a file in the tree an image builder builds
//! (`Finding::image_builder`: under another root than the host's), while an image builder runs:
//! that tree's package database is complete once the builder is done. One finding per file
//! version is held for an image builder; the same file's other mappings meanwhile are counted
//! as held and dropped.
use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::{
    capture::load::SeenCache,
    engine::{
        enrich::{
            self,
            pool::{Facts, Job, Lane, Pool, Verify},
        },
        policy::Policy,
        prevent,
        provenance::verifier::Verifier,
        rules::{
            unverified_object::{self, Outcome},
            Finding,
        },
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
/// The longest a finding is held while package managers run before it is judged anyway.
pub const HOLD_MAX: Duration = Duration::from_secs(300);
/// Findings held at most; past it they are judged at once.
const HOLD_CAPACITY: usize = 1024;

pub enum ToPolicy {
    Finding(Box<Finding>),
    /// A finished analysis (from the pool).
    Analysed(u64, Facts),
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

/// What the stage learns from, and tells, the rest of the daemon.
pub struct Wiring {
    /// True while a package manager runs (kept by the reader, from its process table).
    pub package_manager_running: Arc<AtomicBool>,
    /// True while an image builder runs (kept by the reader, from its process table).
    pub image_builder_running: Arc<AtomicBool>,
    /// The kernel's seen-cache: a file version the package database vouched for is
    /// remembered there (its mappings are no longer reported); one it did not vouch for is
    /// forgotten (its next mapping is reported again).
    pub seen: Option<Arc<Mutex<SeenCache>>>,
    /// What the watched places' changes come to (settled, attributed, with their content).
    pub changes: Changes,
    /// The package databases, which the enrichment pool asks too.
    pub verifier: Arc<Verifier>,
    /// The kernel's side of prevention: the file versions found unverified are listed there.
    pub prevention: Option<prevent::Shared>,
}

/// A finding on its way: when it goes out without its facts (`None`: it waits for them), and
/// since when it has been held for a package manager.
struct Pending {
    f: Finding,
    deadline: Option<Instant>,
    held_since: Option<Instant>,
}

/// The jobs a finding can share: the same file (where its bytes are read, or for a question to
/// the package database alone, its path), the same question.
type JobKey = (PathBuf, Option<Verify>, bool);

/// Findings waiting for one file's analysis.
struct Waiting {
    key: JobKey,
    findings: Vec<Pending>,
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
    /// Job id of the analysis in progress for a file and question: one at a time.
    in_progress: HashMap<JobKey, u64>,
    /// Findings held until no package manager runs.
    held: Vec<Pending>,
    wiring: Wiring,
    out: SyncSender<ToOutput>,
    counters: Arc<Counters>,
}

/// Starts the stage; returns its queue (bounded by `capacity`) and its thread.
pub fn spawn(
    clock: Clock,
    policy: Policy,
    settings: Settings,
    capacity: usize,
    out: SyncSender<ToOutput>,
    counters: Arc<Counters>,
    wiring: Wiring,
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
        Arc::clone(&wiring.verifier),
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
        held: Vec::new(),
        wiring,
        out,
        counters,
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
                Ok(ToPolicy::Finding(f)) => self.on_finding(*f, None),
                Ok(ToPolicy::Analysed(id, facts)) => self.on_analysed(id, &facts),
                Ok(ToPolicy::PackageManagersDone) => {
                    self.wiring.changes.package_managers_done(Instant::now());
                    if let Some(p) = &self.wiring.prevention {
                        prevent::refresh_exes(p, &self.policy);
                    }
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
            self.release_held(now, stopping);
            for f in self.wiring.changes.settled((!stopping).then_some(now)) {
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

    fn on_finding(&mut self, mut f: Finding, held_since: Option<Instant>) {
        if f.file.is_some() {
            return self.wiring.changes.admit(f, Instant::now());
        }
        let Some(path) = enrich::source(&f) else {
            return self.settle(f, held_since);
        };
        let verify_only = enrich::verify_only(&f);
        let deadline = (!verify_only).then(|| Instant::now() + self.deadline);
        let verify = f.library.as_ref().filter(|_| f.verify).map(|lib| Verify {
            path: lib.path.clone(),
            root: lib.root.clone(),
            // Compared with the file at the path the daemon reads (its own root's).
            mapped: lib
                .seen_key
                .filter(|_| lib.read_from.is_none() && lib.root.is_none()),
        });
        // A question to the package database alone is about the file, however each process
        // reads it (a sweep reads each process's mapping through its own /proc entry): the
        // findings of every process that maps it share one answer.
        let read_at = match &verify {
            Some(v) if verify_only => PathBuf::from(&v.path),
            _ => path.clone(),
        };
        let key: JobKey = (read_at, verify.clone(), !verify_only);
        let pending = |f| Pending {
            f,
            deadline,
            held_since,
        };
        if let Some(id) = self.in_progress.get(&key) {
            if let Some(w) = self.waiting.get_mut(id) {
                w.findings.push(pending(f));
                return;
            }
        }
        self.next_job += 1;
        let id = self.next_job;
        let lane = if f.ktime_ns == 0 {
            // Found by a sweep: already loaded before the daemon looked.
            Lane::Sweep
        } else if self.policy.concerns_credentials(&f) {
            Lane::Credential
        } else {
            Lane::Other
        };
        let job = Job {
            id,
            path,
            lane,
            verify,
            always_analyse: !verify_only,
        };
        match self.pool.submit(job) {
            Ok(()) => {
                self.in_progress.insert(key.clone(), id);
                self.waiting.insert(
                    id,
                    Waiting {
                        key,
                        findings: vec![pending(f)],
                    },
                );
            }
            Err(_) => {
                add(&self.counters.enrichment_queue_full);
                enrich::skip(&mut f, "the enrichment queue was full".into());
                self.settle(f, held_since);
            }
        }
    }

    fn on_analysed(&mut self, id: u64, facts: &Facts) {
        if facts.elf.as_ref().is_some_and(|e| e.hash_skipped.is_some()) {
            add(&self.counters.hash_over_budget);
        }
        let Some(w) = self.waiting.remove(&id) else {
            return;
        };
        if self.in_progress.get(&w.key) == Some(&id) {
            self.in_progress.remove(&w.key);
        }
        for mut p in w.findings {
            if let Some(prov) = &facts.provenance {
                enrich::apply_provenance(&mut p.f, prov);
            }
            if let Some(elf) = &facts.elf {
                enrich::apply(&mut p.f, elf);
            }
            self.settle(p.f, p.held_since);
        }
    }

    /// Brings every waiting finding's deadline forward to `by` at the latest.
    fn hurry(&mut self, by: Instant) {
        for w in self.waiting.values_mut() {
            for p in &mut w.findings {
                p.deadline = Some(p.deadline.map_or(by, |d| d.min(by)));
            }
        }
    }

    /// Sends out, without their file's facts, the findings whose deadline passed. The analysis
    /// goes on; its result is then only cached. A finding that was only a question to the
    /// package database, still unanswered at stop, is dropped.
    fn expire_waiting(&mut self, now: Instant) {
        let deadline_ms = self.deadline.as_millis();
        let mut late = Vec::new();
        for w in self.waiting.values_mut() {
            let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut w.findings)
                .into_iter()
                .partition(|p| p.deadline.is_some_and(|d| d <= now));
            w.findings = kept;
            late.extend(gone.into_iter().map(|p| p.f));
        }
        for mut f in late {
            if enrich::verify_only(&f) {
                add(&self.counters.verify_unanswered);
                continue;
            }
            add(&self.counters.enrichment_late);
            enrich::skip(
                &mut f,
                format!("the file's analysis did not finish within {deadline_ms} ms"),
            );
            self.settle(f, None);
        }
    }

    /// What a finding comes to once enriched: verified findings follow
    /// `unverified_object::outcome` (and may be held while a package manager runs); the rest
    /// are judged.
    fn settle(&mut self, f: Finding, held_since: Option<Instant>) {
        if !f.verify {
            return self.judge(f);
        }
        let credential = self.policy.concerns_credentials(&f);
        match unverified_object::outcome(&f, credential) {
            Outcome::Drop { forget } => {
                let vouched = f.library.as_ref().is_some_and(|l| l.verified == Some(true));
                if !vouched {
                    if let Some(lib) = &f.library {
                        log::debug!(
                            "no alert for {} in pid {}: the package database could not decide ({:?})",
                            lib.path,
                            f.process.pid,
                            lib.enrichment_skipped
                        );
                    }
                }
                add(if vouched {
                    &self.counters.verify_vouched
                } else {
                    &self.counters.verify_dropped
                });
                // Vouched for, or nothing more to ask: its mappings are no longer reported.
                self.tell_kernel(&f, vouched || !forget);
            }
            Outcome::Alert => {
                let unverified = f.library.as_ref().is_some_and(|l| l.is_unverified());
                let busy = self.busy(&f);
                let now = Instant::now();
                let since = held_since.unwrap_or(now);
                if unverified && busy && f.image_builder.is_some() && self.held_already(&f) {
                    add(&self.counters.verify_held);
                } else if unverified
                    && busy
                    && now.duration_since(since) < HOLD_MAX
                    && self.held.len() < HOLD_CAPACITY
                {
                    add(&self.counters.verify_held);
                    self.held.push(Pending {
                        f,
                        deadline: None,
                        held_since: Some(since),
                    });
                } else {
                    if unverified && !busy {
                        self.list_for_prevention(&f);
                    }
                    self.judge(f);
                }
            }
        }
    }

    /// A file version the package database does not vouch for (`not_from_package`,
    /// `modified_since_package`), judged once no package manager runs: prevention stops its
    /// later mappings into credential processes, unless the allowlist names it.
    fn list_for_prevention(&mut self, f: &Finding) {
        let (Some(prevention), Some(lib)) = (self.wiring.prevention.as_ref(), f.library.as_ref())
        else {
            return;
        };
        let Some(key) = lib.seen_key else { return };
        if self.policy.allows_library(lib) {
            return;
        }
        log::debug!("prevent: listing {} (unverified)", lib.path);
        prevent::list_unverified(prevention, key);
    }

    /// Whether what `f`'s file says may still change: a package manager runs, or `f` is about
    /// the tree of an image builder and one runs.
    fn busy(&self, f: &Finding) -> bool {
        self.wiring.package_manager_running.load(Ordering::Relaxed)
            || (f.image_builder.is_some()
                && self.wiring.image_builder_running.load(Ordering::Relaxed))
    }

    /// Whether a finding about the same file version, for an image builder, is held already.
    fn held_already(&self, f: &Finding) -> bool {
        let key = |f: &Finding| f.library.as_ref().and_then(|l| l.seen_key);
        let Some(k) = key(f) else {
            return false;
        };
        self.held
            .iter()
            .any(|p| p.f.image_builder.is_some() && key(&p.f) == Some(k))
    }

    /// Verifies the held findings again once nothing they wait for runs (judges them as they
    /// are when they were held too long, or at stop).
    fn release_held(&mut self, now: Instant, stopping: bool) {
        if self.held.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.held);
        let (due, kept): (Vec<_>, Vec<_>) = held.into_iter().partition(|p| {
            stopping
                || !self.busy(&p.f)
                || p.held_since
                    .is_some_and(|s| now.duration_since(s) >= HOLD_MAX)
        });
        self.held = kept;
        for p in due {
            let expired = p
                .held_since
                .is_some_and(|s| now.duration_since(s) >= HOLD_MAX);
            if stopping || expired {
                self.judge(p.f);
            } else {
                self.on_finding(p.f, p.held_since);
            }
        }
    }

    /// Tells the kernel's seen-cache to remember the finding's file version (its mappings are
    /// not reported again) or to forget it (its next mapping is reported).
    fn tell_kernel(&mut self, f: &Finding, remember: bool) {
        let key = f.library.as_ref().and_then(|l| l.seen_key);
        if let (Some(key), Some(seen)) = (key, self.wiring.seen.as_ref()) {
            let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            if remember {
                seen.remember(key);
            } else {
                seen.forget(key);
            }
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
