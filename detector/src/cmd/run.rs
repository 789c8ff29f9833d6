//! `detector run`: the daemon's pipeline, start to end: capture → decode → correlate (enrich,
//! rules, policy) → aggregate → sinks; plus configuration reload, loss and stats reports.
use std::{
    cell::RefCell,
    fs::OpenOptions,
    path::Path,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use detector_common::{Channel, EventKind, CHANNELS, EVENT_KINDS};
use serde_json::json;
use tokio::signal::unix::{signal, SignalKind};

use crate::{
    capture::btf,
    capture::decode::decode,
    capture::load::{report_loss, Capture},
    capture::preflight,
    cli::{Format, RunArgs},
    cmd::notify,
    config::{self, Config},
    engine::correlate::{Correlator, Policy},
    engine::rules::config_change::Watched,
    engine::sweep::Only,
    output::aggregate::Aggregator,
    output::alert::{Alert, Clock},
    output::sink::{self, Fanout},
};

/// How often the ring buffer is drained while events flow (the programs then wake the daemon
/// only for alert-making events or when a lot is queued): the most any other event waits. When
/// a drain finds nothing the timer stops and the next event wakes the daemon, so that an idle
/// daemon does not wake 50 times a second.
const DRAIN_EVERY: Duration = Duration::from_millis(20);

pub fn run(args: RunArgs) -> Result<ExitCode> {
    let explicit = args.config.as_os_str() != config::DEFAULT_PATH;
    let cfg = config::load(&args.config, explicit)?;
    preflight::check()?;
    let kcfg = btf::config(preflight::BTF_PATH, std::process::id())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(serve(args, cfg, kcfg, explicit))
}

fn sinks(cfg: &Config, format: Format) -> Result<Fanout> {
    sink::from_config(cfg, format)
}

/// Hands the heap that start-up used and freed (BTF parsing, the /proc sweep's file reads) back
/// to the kernel: glibc keeps freed memory for reuse, and the daemon's steady state needs little.
fn release_free_memory() {
    // SAFETY: malloc_trim has no preconditions.
    unsafe { libc::malloc_trim(0) };
}

/// A reload that failed: the running configuration stays, but its files are reopened all the
/// same (SIGHUP is also logrotate's signal).
fn keep_running_config(sinks: &mut Fanout, e: anyhow::Error) {
    log::error!("reload: keeping the running configuration: {e:#}");
    if let Err(e) = sinks.reopen() {
        log::error!("reopening outputs: {e:#}");
    }
}

/// Everything the event loop updates.
struct Pipeline {
    correlator: Correlator,
    aggregator: Aggregator,
    sinks: Fanout,
    /// Events decoded per kind (index: `EventKind::index`), alerts emitted.
    events: [u64; EVENT_KINDS],
    alerts: u64,
    error: Option<anyhow::Error>,
}

impl Pipeline {
    fn on_raw(&mut self, raw: &[u8]) {
        match decode(raw) {
            Ok(event) => {
                self.events[event.kind().index()] += 1;
                for alert in self.correlator.handle(event) {
                    self.admit(alert);
                }
            }
            Err(e) => log::warn!("dropped a malformed event: {e}"),
        }
    }

    fn admit(&mut self, alert: Alert) {
        if let Some(alert) = self.aggregator.admit(alert, Instant::now()) {
            self.emit(&alert);
        }
    }

    fn emit(&mut self, alert: &Alert) {
        self.alerts += 1;
        // An output that fails is the fanout's to retry and count (its stats): not an error.
        self.sinks.emit(alert);
    }

    fn expire(&mut self, all: bool) {
        for summary in self
            .aggregator
            .expire(if all { None } else { Some(Instant::now()) })
        {
            self.emit(&summary);
        }
    }

    fn stats(&mut self, clock: &Clock, lost: &[u64; CHANNELS as usize]) {
        let events: serde_json::Map<_, _> = EventKind::ALL
            .iter()
            .zip(self.events)
            .map(|(k, n)| (k.name().to_string(), json!(n)))
            .collect();
        let lost: serde_json::Map<_, _> = Channel::ALL
            .iter()
            .zip(lost)
            .map(|(c, n)| (c.name().to_string(), json!(n)))
            .collect();
        let record = json!({
            "@timestamp": clock.rfc3339_now(),
            "event": {"kind": "metric", "module": "detector", "dataset": "detector.stats"},
            "record": "stats",
            "events": events,
            "lost": lost,
            "alerts": self.alerts,
            "outputs": self.sinks.stats(),
        });
        self.sinks.emit_record(&record);
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
    let watched = Watched::discover();
    let (mut capture, mut kernel_log) = Capture::start(
        kcfg,
        &watched.directories(),
        args.ring_buffer_kib * 1024,
        cfg.capture.syscalls,
    )?;
    let clock = Clock::new();
    let mut correlator = Correlator::new(clock, watched, Policy::from_config(&cfg));
    let (already, seen, unreadable) =
        correlator.sweep(Only::AllBut(std::process::id()), Path::new("/etc"));
    log::info!(
        "swept /proc: {seen} running processes ({unreadable} unreadable), {} alerts for what they already had loaded",
        already.len()
    );
    let pipeline = RefCell::new(Pipeline {
        correlator,
        aggregator: Aggregator::new(Duration::from_secs(cfg.thresholds.aggregate_window_secs)),
        sinks: sinks(&cfg, args.format)?,
        events: [0; EVENT_KINDS],
        alerts: 0,
        error: None,
    });
    for alert in already {
        pipeline.borrow_mut().admit(alert);
    }
    if let Some(path) = &args.ready_file {
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("creating ready file {}", path.display()))?;
    }
    if let Err(e) = notify::notify("READY=1") {
        log::warn!("sd_notify: {e:#}");
    }
    release_free_memory();
    log::info!("armed");

    let mut loss_tick = tokio::time::interval(Duration::from_secs(args.loss_interval));
    let mut seen_lost = [0u64; CHANNELS as usize];
    let every = |secs: u64| {
        let mut i = tokio::time::interval(Duration::from_secs(secs.max(1)));
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        i
    };
    let mut drain = tokio::time::interval(DRAIN_EVERY);
    drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut draining = true;
    let mut expire_tick = every(1);
    let mut stats_secs = cfg.thresholds.stats_interval_secs;
    let mut stats_tick = every(stats_secs);
    stats_tick.reset();
    loop {
        tokio::select! {
            r = capture.read(|raw| pipeline.borrow_mut().on_raw(raw)) => {
                r?;
                resume(&mut draining, &mut drain, &mut capture)?;
            }
            _ = drain.tick(), if draining => {
                draining = capture.drain_or_idle(|raw| pipeline.borrow_mut().on_raw(raw))?;
            }
            r = kernel_log.flush() => r?,
            _ = loss_tick.tick() => report_loss(capture.lost()?, &mut seen_lost, false),
            _ = expire_tick.tick() => {
                pipeline.borrow_mut().expire(false);
                // An event reserved just before the flag was set and submitted just after the
                // second look sends no wake-up: it waits for the next event, or this, a second.
                if !draining && capture.drain(|raw| pipeline.borrow_mut().on_raw(raw)) > 0 {
                    resume(&mut draining, &mut drain, &mut capture)?;
                }
            }
            _ = stats_tick.tick(), if stats_secs > 0 => {
                pipeline.borrow_mut().stats(&clock, &capture.lost()?);
                release_free_memory();
            }
            _ = sighup.recv() => {
                // A bad file keeps the running configuration; sinks reopen (logrotate).
                match config::load(&args.config, explicit) {
                    Ok(new) => match sinks(&new, args.format) {
                        Ok(s) => {
                            if new.capture != cfg.capture {
                                log::warn!("reload: [capture] changes take effect at the next start");
                            }
                            let mut p = pipeline.borrow_mut();
                            p.sinks.replace(s);
                            p.correlator.set_policy(Policy::from_config(&new));
                            p.aggregator.set_window(Duration::from_secs(new.thresholds.aggregate_window_secs));
                            if new.thresholds.stats_interval_secs != stats_secs {
                                stats_secs = new.thresholds.stats_interval_secs;
                                stats_tick = every(stats_secs);
                                stats_tick.reset();
                            }
                            log::info!("configuration reloaded from {}", args.config.display());
                        }
                        Err(e) => keep_running_config(&mut pipeline.borrow_mut().sinks, e),
                    },
                    Err(e) => keep_running_config(&mut pipeline.borrow_mut().sinks, e),
                }
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
        if let Some(e) = pipeline.borrow_mut().error.take() {
            return Err(e);
        }
    }
    capture.drain(|raw| pipeline.borrow_mut().on_raw(raw));
    let mut p = pipeline.into_inner();
    p.expire(true);
    if stats_secs > 0 {
        p.stats(&clock, &capture.lost()?);
    }
    if let Some(e) = p.error.take() {
        return Err(e);
    }
    report_loss(capture.lost()?, &mut seen_lost, true);
    log::info!("stopping: detaching programs");
    capture.detach();
    Ok(ExitCode::SUCCESS)
}
