//! Capture: loads the embedded eBPF object, hands it this kernel's facts, attaches every
//! program, and yields raw ring-buffer records. Lost records are counted in the kernel per
//! channel and read back here.
use anyhow::{anyhow, Context as _, Result};
use aya::{
    maps::{Array, MapData, PerCpuArray, RingBuf},
    programs::TracePoint,
    Ebpf,
};
use detector_common::{Config, CHANNELS, CHANNEL_NAMES};
use tokio::io::unix::AsyncFd;

type KernelLogger = aya_log::EbpfLogger<&'static dyn log::Log>;

/// (program, tracepoint category, tracepoint name); one source file per channel in detector-ebpf.
const TRACEPOINTS: &[(&str, &str, &str)] = &[
    ("sched_process_exec", "sched", "sched_process_exec"),
    ("sys_enter_mmap", "syscalls", "sys_enter_mmap"),
    ("sys_enter_mprotect", "syscalls", "sys_enter_mprotect"),
];

pub struct Capture {
    // Dropping it detaches every program.
    _ebpf: Ebpf,
    ring: AsyncFd<RingBuf<MapData>>,
    lost: PerCpuArray<MapData, u64>,
}

/// The programs' own log lines (aya-log), forwarded to our logger.
pub struct KernelLog(Option<AsyncFd<KernelLogger>>);

fn register<T: std::os::fd::AsRawFd>(inner: T, what: &str) -> Result<AsyncFd<T>> {
    // SAFETY: the fd belongs to `inner`, which the AsyncFd owns until it is dropped.
    unsafe { AsyncFd::register(inner) }.map_err(|e| anyhow!("polling {what}: {e}"))
}

impl Capture {
    pub fn start(config: Config) -> Result<(Self, KernelLog)> {
        let mut ebpf = Ebpf::load(aya::include_bytes_aligned!(concat!(
            env!("OUT_DIR"),
            "/detector"
        )))
        .context("loading the eBPF object")?;
        let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(l) => Some(register(l, "the eBPF logger")?),
            Err(e) => {
                log::debug!("eBPF logger not initialised: {e}");
                None
            }
        };
        let mut cfg: Array<_, Config> = Array::try_from(
            ebpf.map_mut("CONFIG")
                .ok_or_else(|| anyhow!("map CONFIG missing"))?,
        )?;
        cfg.set(0, config, 0).context("writing CONFIG")?;
        for (prog, category, name) in TRACEPOINTS {
            let tp: &mut TracePoint = ebpf
                .program_mut(prog)
                .ok_or_else(|| anyhow!("program {prog} missing"))?
                .try_into()?;
            tp.load()
                .with_context(|| format!("loading {prog} (verifier)"))?;
            tp.attach(category, name)
                .with_context(|| format!("attaching {category}/{name}"))?;
            log::info!("attached tracepoint {category}/{name}");
        }
        let ring = RingBuf::try_from(
            ebpf.take_map("EVENTS")
                .ok_or_else(|| anyhow!("map EVENTS missing"))?,
        )?;
        let lost = PerCpuArray::try_from(
            ebpf.take_map("LOST")
                .ok_or_else(|| anyhow!("map LOST missing"))?,
        )?;
        let ring = register(ring, "the ring buffer")?;
        Ok((
            Capture {
                _ebpf: ebpf,
                ring,
                lost,
            },
            KernelLog(logger),
        ))
    }

    /// Waits for records and hands each to `f`.
    pub async fn read(&mut self, mut f: impl FnMut(&[u8])) -> Result<()> {
        let mut guard = self
            .ring
            .readable_mut()
            .await
            .context("waiting on the ring buffer")?;
        let ring = guard.get_inner_mut();
        while let Some(item) = ring.next() {
            f(&item);
        }
        guard.clear_ready();
        Ok(())
    }

    /// Records lost so far, per channel (summed over CPUs).
    pub fn lost(&self) -> Result<[u64; CHANNELS as usize]> {
        let mut out = [0; CHANNELS as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = self.lost.get(&(i as u32), 0)?.iter().sum();
        }
        Ok(out)
    }
}

impl KernelLog {
    /// Forwards the programs' own log lines (aya-log) to our logger.
    pub async fn flush(&mut self) -> Result<()> {
        match &mut self.0 {
            Some(fd) => {
                let mut guard = fd.readable_mut().await?;
                guard.get_inner_mut().flush();
                guard.clear_ready();
            }
            None => std::future::pending::<()>().await,
        }
        Ok(())
    }
}

/// Logs channels whose loss counter grew since `seen`; returns the new counters.
pub fn report_loss(
    now: [u64; CHANNELS as usize],
    seen: &mut [u64; CHANNELS as usize],
    at_exit: bool,
) {
    for (i, (n, s)) in now.iter().zip(seen.iter_mut()).enumerate() {
        if n > s {
            log::warn!(
                "lost {} {} events (ring buffer full); {} lost in total",
                n - *s,
                CHANNEL_NAMES[i],
                n
            );
            *s = *n;
        } else if at_exit {
            log::info!("{} events lost on channel {}", n, CHANNEL_NAMES[i]);
        }
    }
}
