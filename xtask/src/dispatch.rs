//! What the kernel spends around each run of a program on a classic syscall tracepoint — the
//! trace record it builds, the call — which BPF run-time statistics do not include.
//!
//! The detector's own open program (`sys_exit_open`, from the eBPF object the build just
//! made) is loaded with its configuration left empty, so each run returns at once, and attached
//! to `syscalls/sys_exit_openat` and detached again between short chunks of opens that this
//! thread does itself. Chunks alternate off, on, on, off, … so that a drift of the machine's
//! speed cancels; each chunk's CPU time is this thread's own. Cost per run = the median of the
//! paired differences per open, minus the program's own run time per run (statistics).
use std::{ffi::CString, fs, path::Path, time::Duration};

use anyhow::{bail, Context as _, Result};
use aya::{
    programs::{loaded_programs, TracePoint},
    EbpfLoader,
};

use crate::load;

pub const CHUNKS: usize = 160;
const OPENS_PER_CHUNK: usize = 20_000;

/// Dispatch cost per run in ns, with a ~95 % confidence interval.
pub struct Dispatch {
    pub ns: f64,
    pub ci: (f64, f64),
    pub program_ns: f64,
}

pub fn measure(root: &Path) -> Result<Dispatch> {
    let obj = newest_object(&root.join("target/release/build"))?;
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(detector_common::maps::EVENTS, 4096 * 16)
        .load_file(&obj)
        .with_context(|| format!("loading {}", obj.display()))?;
    let prog: &mut TracePoint = ebpf
        .program_mut("sys_exit_open")
        .context("program sys_exit_open missing")?
        .try_into()?;
    prog.load().context("loading sys_exit_open")?;
    let id = prog.info()?.id();
    let path = CString::new("/etc/hostname")?;
    let chunk = || -> Result<f64> {
        let t0 = thread_cpu();
        for _ in 0..OPENS_PER_CHUNK {
            // SAFETY: a valid C string; the fd is closed right away.
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
            if fd < 0 {
                bail!("open /etc/hostname: {}", std::io::Error::last_os_error());
            }
            unsafe { libc::close(fd) };
        }
        Ok((thread_cpu() - t0).as_nanos() as f64 / OPENS_PER_CHUNK as f64)
    };
    chunk()?; // warm-up
    let (mut off, mut on) = (Vec::new(), Vec::new());
    let (mut run_time, mut runs) = (Duration::ZERO, 0u64);
    for k in 0..CHUNKS {
        // off, on, on, off, off, on, ...
        if (k + 1) % 4 >= 2 {
            let link = prog.attach("syscalls", "sys_exit_openat")?;
            let before = stats(id)?;
            on.push(chunk()?);
            let after = stats(id)?;
            run_time += after.0.saturating_sub(before.0);
            runs += after.1.saturating_sub(before.1);
            prog.detach(link)?;
        } else {
            off.push(chunk()?);
        }
    }
    let program_ns = run_time.as_nanos() as f64 / runs.max(1) as f64;
    // The paired ratios on/off (the helpers in `load`), turned back into ns per open.
    let base = load::median(&mut off.clone());
    let per_run = |ratio_minus_one: f64| ratio_minus_one * base - program_ns;
    let (lo, hi) = load::paired_overhead_ci(&off, &on);
    Ok(Dispatch {
        ns: per_run(load::paired_overhead(&off, &on)),
        ci: (per_run(lo), per_run(hi)),
        program_ns,
    })
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// (run time, run count) of program `id` (BPF statistics must be on).
fn stats(id: u32) -> Result<(Duration, u64)> {
    for info in loaded_programs() {
        let info = info?;
        if info.id() == id {
            return Ok((info.run_time(), info.run_count()));
        }
    }
    bail!("program {id} not loaded")
}

/// The eBPF object of the newest build of the `detector` package (aya-build puts it in the
/// package's build-script output directory).
fn newest_object(build: &Path) -> Result<std::path::PathBuf> {
    let mut best = None;
    for entry in fs::read_dir(build).with_context(|| format!("reading {}", build.display()))? {
        let dir = entry?.path();
        let is_detector = dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("detector-") && !n.starts_with("detector-ebpf"));
        let obj = dir.join("out/detector");
        if let (true, Ok(meta)) = (is_detector, fs::metadata(&obj)) {
            let t = meta.modified()?;
            if best.as_ref().is_none_or(|(bt, _)| t > *bt) {
                best = Some((t, obj));
            }
        }
    }
    best.map(|(_, p)| p)
        .context("no eBPF object under target/release/build: run cargo xtask build")
}
