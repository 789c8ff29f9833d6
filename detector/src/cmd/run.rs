//! `detector run`: the daemon. Its stages, each on its own thread, joined by bounded queues:
//!
//! - reader (this thread): drains the ring buffer, decodes, keeps the process table and the
//!   order of events, runs the rules ([`Correlator`]); it never waits: a full queue is counted
//!   and reported in the stats record;
//! - policy and aggregation ([`policy_stage`]), with the enrichment pool beside it;
//! - outputs ([`output::stage`]).
//!
//! Plus configuration reload, loss and stats reports.
use std::{
    path::Path,
    process::ExitCode,
    sync::{
        mpsc::{SyncSender, TrySendError},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use tokio::signal::unix::{signal, SignalKind};

use crate::{
    capture::{
        decode::{decode, Event},
        fanotify::{self, Watcher},
        load::{report_loss, Capture, SeenCache},
    },
    cli::RunArgs,
    cmd::notify,
    config::{self, Config},
    engine::{
        correlate::Correlator,
        credential::Catalogue,
        policy::Policy,
        policy_stage::{self, Settings, ToPolicy, Wiring},
        prevent,
        provenance::verifier::Verifier,
        rules::{config_change::Watched, Finding},
        sweep::Only,
        watch::{snapshot::Snapshot, Changes},
    },
    output::{
        self,
        alert::Clock,
        metrics::{self, SharedKernelCounts},
        sink,
        stage::ToOutput,
    },
    stats::{add, Counters, KernelCounts},
};

/// How often the ring buffer is drained while events flow (the programs then wake the daemon
/// only for alert-making events or when a lot is queued): the most any other event waits. When
/// a drain finds nothing the timer stops and the next event wakes the daemon, so that an idle
/// daemon does not wake 50 times a second.
const DRAIN_EVERY: Duration = Duration::from_millis(20);
/// The drain period for a while after the programs woke the daemon.
const HURRY_EVERY: Duration = Duration::from_millis(1);

/// Findings waiting for the policy stage; at about 1 KiB each, 4 MiB at most.
const POLICY_QUEUE: usize = 4096;
/// Alerts waiting for the outputs.
const OUTPUT_QUEUE: usize = 4096;
/// Files waiting for analysis, per lane.
const ENRICH_LANE: usize = 1024;

pub fn run(args: RunArgs) -> Result<ExitCode> {
    one_malloc_arena();
    let explicit = args.config.as_os_str() != config::DEFAULT_PATH;
    let cfg = config::load(&args.config, explicit)?;
    let (kcfg, rt) = super::capture_runtime()?;
    rt.block_on(serve(args, cfg, kcfg, explicit))
}

/// One glibc malloc arena for every thread, set before any thread starts. Otherwise glibc adds
/// an arena (up to 8 per CPU) whenever a thread finds the ones in use locked, at any time of the
/// daemon's life, and each keeps megabytes resident: a long-running daemon's RSS steps up by
/// ~10 MiB at a random moment. The daemon allocates little per event; its threads rarely
/// contend.
fn one_malloc_arena() {
    // SAFETY: mallopt has no preconditions; called before the daemon starts its threads.
    if unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) } != 1 {
        log::debug!("mallopt(M_ARENA_MAX, 1) failed");
    }
}

/// Hands the heap that start-up used and freed (BTF parsing, the /proc sweep's file reads) back
/// to the kernel: glibc keeps freed memory for reuse, and the daemon's steady state needs little.
fn release_free_memory() {
    // SAFETY: malloc_trim has no preconditions.
    unsafe { libc::malloc_trim(0) };
}

fn settings(cfg: &Config) -> Settings {
    Settings {
        deadline: Duration::from_millis(cfg.enrichment.deadline_ms),
        workers: cfg.enrichment.workers.max(1),
        lane_capacity: ENRICH_LANE,
        hash_budget: cfg.enrichment.hash_budget_mib.saturating_mul(1024 * 1024),
        aggregate_window: Duration::from_secs(cfg.thresholds.aggregate_window_secs),
    }
}

/// The reader's state: the rules and the queue to the policy stage.
struct Reader {
    correlator: Correlator,
    to_policy: SyncSender<ToPolicy>,
    counters: Arc<Counters>,
    /// The kernel's seen-cache.
    seen: Option<Arc<Mutex<SeenCache>>>,
    /// A package manager or an image builder was running after the last event.
    package_manager_running: bool,
}

impl Reader {
    fn on_raw(&mut self, raw: &[u8]) {
        match decode(raw) {
            Ok(event) => self.on_event(event),
            Err(e) => {
                add(&self.counters.malformed);
                log::warn!("dropped a malformed event: {e}");
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        add(&self.counters.events[event.kind().index()]);
        for f in self.correlator.handle(event) {
            self.pass(f);
        }
        // What they changed is verified once none of them runs any more.
        let running =
            self.correlator.package_manager_running() || self.correlator.image_builder_running();
        if self.package_manager_running && !running {
            if let Err(TrySendError::Full(_)) =
                self.to_policy.try_send(ToPolicy::PackageManagersDone)
            {
                add(&self.counters.dropped_findings);
            }
        }
        self.package_manager_running = running;
    }

    fn pass(&self, f: Finding) {
        self.unsee(&f);
        match self.to_policy.try_send(ToPolicy::Finding(Box::new(f))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => add(&self.counters.dropped_findings),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

impl Reader {
    /// A file version to be verified, mapped by a process outside the catalogue: the kernel
    /// forgets it at once, so that a credential process mapping it before the answer is in is
    /// reported too (the policy stage has it remembered again once the package database
    /// vouches for it).
    fn unsee(&self, f: &Finding) {
        let Some(key) = f.library.as_ref().and_then(|l| l.seen_key) else {
            return;
        };
        let Some(seen) = self.seen.as_ref().filter(|_| f.verify) else {
            return;
        };
        if !self
            .correlator
            .catalogue()
            .matches(&f.process.exe, &f.process.comm)
        {
            seen.lock().unwrap_or_else(|e| e.into_inner()).forget(key);
        }
    }
}

/// Queues a message for the outputs without waiting; a full queue is counted.
fn to_output(tx: &SyncSender<ToOutput>, counters: &Counters, msg: ToOutput) {
    if let Err(TrySendError::Full(_)) = tx.try_send(msg) {
        add(&counters.dropped_outputs);
    }
}

/// Events came while the drain timer was stopped: run it again (and tell the programs).
fn resume(
    draining: &mut bool,
    drain: &mut tokio::time::Interval,
    capture: &mut Capture,
) -> Result<()> {
    if !*draining {
        *draining = true;
        capture.set_reader_idle(false)?;
        drain.reset();
    }
    Ok(())
}

fn kernel_counts(capture: &Capture) -> Result<KernelCounts> {
    Ok(KernelCounts {
        lost: capture.lost()?,
        read_errors: capture.read_errors()?,
    })
}

async fn serve(
    args: RunArgs,
    cfg: Config,
    kcfg: detector_common::KernelConfig,
    explicit: bool,
) -> Result<ExitCode> {
    // Before anything says "ready": a SIGHUP or SIGTERM sent as soon as the ready file appears
    // must find its handler (SIGHUP's default action would kill the daemon).
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    crate::engine::signals::outlive_fatal_signals()
        .context("installing the handlers that outlive stray signals")?;
    let verifier = Arc::new(Verifier::new(settings(&cfg).hash_budget));
    // The package index is built while the programs load, and the daemon is ready once it is.
    let warm = std::thread::Builder::new()
        .name("package-index".into())
        .spawn({
            let v = Arc::clone(&verifier);
            move || v.warm()
        })?;
    let mut watched = Watched::discover();
    // The sensor's own binary, configuration and unit files: a change of one is an attack on it.
    watched.sensor_files = crate::engine::sensor::files(&args.config);
    let (mut capture, mut kernel_log) = Capture::start(
        kcfg,
        &watched.directories(),
        args.ring_buffer_kib * 1024,
        cfg.capture.syscalls,
    )?;
    capture.set_credential_names(Catalogue::new(&cfg.catalogue.extra).basenames())?;
    let mut writes = if cfg.capture.syscalls {
        let sensor: Vec<String> = watched
            .sensor_files
            .iter()
            .map(|(f, _)| f.clone())
            .collect();
        Some(Watcher::start(&watched.directories(), &sensor)?)
    } else {
        None
    };
    let clock = Clock::new();
    let counters = Arc::new(Counters::default());
    let (out_tx, out_thread) = output::stage::spawn(
        sink::from_config(&cfg, args.format)?,
        OUTPUT_QUEUE,
        clock,
        Arc::clone(&counters),
    )?;
    let policy = Policy::from_config(&cfg);
    let changes = Changes::new(
        Snapshot::take(&watched),
        settings(&cfg).hash_budget,
        Arc::clone(&verifier),
    );
    let mut correlator = Correlator::new(watched, policy.catalogue.clone());
    let seen_cache = capture.take_seen_cache().map(|s| Arc::new(Mutex::new(s)));
    let prevention: Option<prevent::Shared> =
        capture.take_prevention().map(|p| Arc::new(Mutex::new(p)));
    if let Some(p) = &prevention {
        let deny = prevent::attach_deny_path(&mut capture, &cfg.prevent);
        prevent::apply(&mut capture, p, &cfg.prevent, &policy, deny)?;
    }
    let wiring = Wiring {
        package_manager_running: correlator.package_manager_flag(),
        image_builder_running: correlator.image_builder_flag(),
        seen: seen_cache.clone(),
        changes,
        verifier,
        prevention: prevention.clone(),
    };
    let (policy_tx, policy_thread) = policy_stage::spawn(
        clock,
        policy,
        settings(&cfg),
        POLICY_QUEUE,
        out_tx.clone(),
        Arc::clone(&counters),
        wiring,
    )?;
    let (already, seen, skipped) =
        correlator.sweep(Only::AllBut(std::process::id()), Path::new("/etc"));
    log::info!(
        "swept /proc: {seen} running processes, {} findings for what they already had loaded{}",
        already.len(),
        skipped.describe()
    );
    let package_manager_running =
        correlator.package_manager_running() || correlator.image_builder_running();
    let mut reader = Reader {
        correlator,
        to_policy: policy_tx,
        counters: Arc::clone(&counters),
        seen: seen_cache,
        package_manager_running,
    };
    for f in already {
        reader.pass(f);
    }
    let shared_kernel: SharedKernelCounts = Arc::new(Mutex::new(kernel_counts(&capture)?));
    // Bound before the daemon says it is ready: an address it cannot use is an error at start.
    let endpoint = match cfg.metrics.listen {
        Some(addr) => Some(metrics::start(addr, out_tx.clone(), Arc::clone(&shared_kernel)).await?),
        None => None,
    };
    if warm.join().is_err() {
        log::warn!("building the package index failed; it is built on the first question");
    }
    super::touch_ready(args.ready_file.as_deref())?;
    if let Err(e) = notify::notify("READY=1") {
        log::warn!("sd_notify: {e:#}");
    }
    release_free_memory();
    log::info!("armed");

    let mut loss_tick = tokio::time::interval(Duration::from_secs(args.loss_interval));
    let mut seen_lost = [0u64; detector_common::CHANNELS as usize];
    let every = |secs: u64| {
        let mut i = tokio::time::interval(Duration::from_secs(secs.max(1)));
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        i
    };
    let mut drain = tokio::time::interval(DRAIN_EVERY);
    drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut draining = true;
    // After the programs woke the daemon, a drain every millisecond for WAKE_GAP_NS: the
    // programs spare further wake-ups that long.
    let mut hurry = tokio::time::interval(HURRY_EVERY);
    hurry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut hurry_until = Instant::now();
    let mut idle_tick = every(1);
    let mut stats_secs = cfg.thresholds.stats_interval_secs;
    let mut stats_tick = every(stats_secs);
    stats_tick.reset();
    loop {
        tokio::select! {
            r = capture.read(|raw| reader.on_raw(raw)) => {
                r?;
                resume(&mut draining, &mut drain, &mut capture)?;
                hurry_until = Instant::now() + Duration::from_nanos(detector_common::WAKE_GAP_NS);
                hurry.reset();
            }
            _ = hurry.tick(), if Instant::now() < hurry_until => {
                capture.drain(|raw| reader.on_raw(raw));
            }
            _ = drain.tick(), if draining => {
                draining = capture.drain_or_idle(|raw| reader.on_raw(raw))?;
            }
            r = fanotify::changes(&mut writes) => {
                // What the writer's exec and ancestry were is in the ring buffer already.
                capture.drain(|raw| reader.on_raw(raw));
                for event in r? {
                    reader.on_event(event);
                }
            }
            r = kernel_log.flush() => r?,
            _ = loss_tick.tick() => {
                report_loss(capture.lost()?, &mut seen_lost, false);
                *shared_kernel.lock().unwrap_or_else(|e| e.into_inner()) = kernel_counts(&capture)?;
            }
            _ = idle_tick.tick() => {
                // An event reserved just before the flag was set and submitted just after the
                // second look sends no wake-up: it waits for the next event, or this, a second.
                if !draining && capture.drain(|raw| reader.on_raw(raw)) > 0 {
                    resume(&mut draining, &mut drain, &mut capture)?;
                }
            }
            _ = stats_tick.tick(), if stats_secs > 0 => {
                to_output(&out_tx, &counters, ToOutput::Stats(kernel_counts(&capture)?));
                release_free_memory();
            }
            _ = sighup.recv() => {
                // A bad file keeps the running configuration; output files reopen (logrotate).
                match config::load(&args.config, explicit).and_then(|new| Ok((sink::from_config(&new, args.format)?, new))) {
                    Ok((fanout, new)) => {
                        if new.capture != cfg.capture {
                            log::warn!("reload: [capture] changes take effect at the next start");
                        }
                        if new.enrichment != cfg.enrichment {
                            log::warn!("reload: [enrichment] changes take effect at the next start");
                        }
                        let policy = Policy::from_config(&new);
                        if let Some(p) = &prevention {
                            let deny = prevent::attach_deny_path(&mut capture, &new.prevent);
                            if let Err(e) = prevent::apply(&mut capture, p, &new.prevent, &policy, deny) {
                                log::error!("reload: prevention: {e:#}");
                            }
                        }
                        reader.correlator.set_catalogue(policy.catalogue.clone());
                        let window = Duration::from_secs(new.thresholds.aggregate_window_secs);
                        if reader.to_policy.try_send(ToPolicy::Reload(Box::new(policy), window)).is_err() {
                            log::error!("reload: the policy stage is busy; the policy is unchanged, try again");
                        }
                        to_output(&out_tx, &counters, ToOutput::Replace(fanout));
                        if new.thresholds.stats_interval_secs != stats_secs {
                            stats_secs = new.thresholds.stats_interval_secs;
                            stats_tick = every(stats_secs);
                            stats_tick.reset();
                        }
                        log::info!("configuration reloaded from {}", args.config.display());
                    }
                    Err(e) => {
                        log::error!("reload: keeping the running configuration: {e:#}");
                        to_output(&out_tx, &counters, ToOutput::Reopen);
                    }
                }
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }
    capture.drain(|raw| reader.on_raw(raw));
    // The policy stage finishes what is pending and flushes its windows into the outputs, then
    // the last stats record follows everything.
    let _ = reader.to_policy.send(ToPolicy::Stop);
    drop(reader);
    if policy_thread.join().is_err() {
        log::error!("the policy stage panicked");
    }
    if stats_secs > 0 {
        let _ = out_tx.send(ToOutput::Stats(kernel_counts(&capture)?));
    }
    if let Some(e) = &endpoint {
        e.stop();
    }
    drop(out_tx);
    if out_thread.join().is_err() {
        log::error!("the output stage panicked");
    }
    report_loss(capture.lost()?, &mut seen_lost, true);
    log::info!("stopping: detaching programs");
    capture.detach();
    Ok(ExitCode::SUCCESS)
}
