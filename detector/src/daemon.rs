//! `detector run`: the daemon's pipeline, start to end.
use std::{fs::OpenOptions, process::ExitCode, time::Duration};

use anyhow::{Context as _, Result};
use tokio::signal::unix::{signal, SignalKind};

use crate::{
    alert::Clock,
    capture::{report_loss, Capture},
    cli::RunArgs,
    correlate::Correlator,
    event::decode,
    kernel, preflight,
    rules::config_change::Watched,
    sink::{JsonLines, Sink},
};

/// How often the ring buffer is drained when no wake-up came (the programs wake the daemon only
/// when a lot is queued): the most an alert waits.
const DRAIN_EVERY: Duration = Duration::from_millis(20);

pub fn run(args: RunArgs) -> Result<ExitCode> {
    let tracefs = preflight::check()?;
    let config = kernel::config(preflight::BTF_PATH, tracefs, std::process::id())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(serve(args, config))
}

async fn serve(args: RunArgs, config: detector_common::Config) -> Result<ExitCode> {
    let watched = Watched::discover();
    let (mut capture, mut kernel_log) =
        Capture::start(config, &watched.directories(), args.ring_buffer_kib * 1024)?;
    if let Some(path) = &args.ready_file {
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("creating ready file {}", path.display()))?;
    }
    log::info!("armed");

    let mut correlator = Correlator::new(Clock::new(), watched);
    let mut sink = JsonLines(std::io::stdout().lock());
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut tick = tokio::time::interval(Duration::from_secs(args.loss_interval));
    let mut seen_lost = [0u64; detector_common::CHANNELS as usize];
    let sink_error = std::cell::RefCell::new(None);
    let mut drain = tokio::time::interval(DRAIN_EVERY);
    drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut handle = |raw: &[u8]| match decode(raw) {
        Ok(event) => {
            for alert in correlator.handle(event) {
                if let Err(e) = sink.emit(&alert) {
                    sink_error.borrow_mut().get_or_insert(e);
                }
            }
        }
        Err(e) => log::warn!("dropped a malformed event: {e}"),
    };
    loop {
        tokio::select! {
            r = capture.read(&mut handle) => r?,
            _ = drain.tick() => capture.drain(&mut handle),
            r = kernel_log.flush() => r?,
            _ = tick.tick() => report_loss(capture.lost()?, &mut seen_lost, false),
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
        if let Some(e) = sink_error.borrow_mut().take() {
            return Err(e);
        }
    }
    capture.drain(&mut handle);
    if let Some(e) = sink_error.borrow_mut().take() {
        return Err(e);
    }
    report_loss(capture.lost()?, &mut seen_lost, true);
    log::info!("stopping: detaching programs");
    capture.detach();
    Ok(ExitCode::SUCCESS)
}
