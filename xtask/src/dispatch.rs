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
    programs::{loaded_programs, BtfTracePoint, RawTracePoint, TracePoint},
    Btf, Ebpf, EbpfLoader,
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
    let mut ebpf = load_object(root)?;
    let prog: &mut TracePoint = ebpf
        .program_mut("sys_exit_open")
        .context("program sys_exit_open missing")?
        .try_into()?;
    prog.load().context("loading sys_exit_open")?;
    let id = prog.info()?.id();
    let p = paired(id, 1.0, || {
        let link = prog.attach("syscalls", "sys_exit_openat")?;
        Ok(Box::new(prog.take_link(link)?))
    })?;
    Ok(Dispatch {
        ns: p.ns,
        ci: p.ci,
        program_ns: p.program_ns,
    })
}

/// What a program on one attach point costs an open + close of /etc/hostname.
pub struct Floor {
    pub attach: &'static str,
    /// Program runs per open + close.
    pub runs_per_op: f64,
    /// Added CPU per open + close, ns, with a ~95 % confidence interval.
    pub per_op: f64,
    pub per_op_ci: (f64, f64),
    /// CPU per open + close without any program, ns.
    pub base: f64,
    /// The program's own run time per run (BPF statistics), ns.
    pub program_ns: f64,
}

/// The cheapest program on each attach point a per-open check could use (`floor.rs` in
/// detector-ebpf: each returns at once), attached and detached between chunks of opens.
pub fn floors(root: &Path) -> Result<Vec<Floor>> {
    let mut ebpf = load_object(root)?;
    let btf = Btf::from_sys_fs().context("reading kernel BTF")?;
    let mut out = Vec::new();
    {
        let prog: &mut TracePoint = ebpf
            .program_mut("floor_tp")
            .context("program floor_tp missing")?
            .try_into()?;
        prog.load().context("loading floor_tp")?;
        let id = prog.info()?.id();
        let p = paired(id, 1.0, || {
            let link = prog.attach("syscalls", "sys_exit_openat")?;
            Ok(Box::new(prog.take_link(link)?))
        })?;
        out.push(p.floor("classic tracepoint `syscalls/sys_exit_openat`", 1.0));
    }
    {
        let prog: &mut RawTracePoint = ebpf
            .program_mut("floor_raw")
            .context("program floor_raw missing")?
            .try_into()?;
        prog.load().context("loading floor_raw")?;
        let id = prog.info()?.id();
        let p = paired(id, 2.0, || {
            let link = prog.attach("sys_exit")?;
            Ok(Box::new(prog.take_link(link)?))
        })?;
        out.push(p.floor(
            "raw tracepoint `raw_syscalls/sys_exit` (every syscall)",
            2.0,
        ));
    }
    {
        let prog: &mut BtfTracePoint = ebpf
            .program_mut("floor_btf")
            .context("program floor_btf missing")?
            .try_into()?;
        prog.load("sys_exit", &btf).context("loading floor_btf")?;
        let id = prog.info()?.id();
        let p = paired(id, 2.0, || {
            let link = prog.attach()?;
            Ok(Box::new(prog.take_link(link)?))
        })?;
        out.push(p.floor("BTF tracepoint `tp_btf/sys_exit` (every syscall)", 2.0));
    }
    Ok(out)
}

fn load_object(root: &Path) -> Result<Ebpf> {
    let obj = newest_object(&root.join("target/release/build"))?;
    EbpfLoader::new()
        .map_max_entries(detector_common::maps::EVENTS, 4096 * 16)
        .load_file(&obj)
        .with_context(|| format!("loading {}", obj.display()))
}

struct Paired {
    /// Kernel work per run around the program, ns.
    ns: f64,
    ci: (f64, f64),
    program_ns: f64,
    /// Added CPU per open + close, ns, and its interval.
    per_op: f64,
    per_op_ci: (f64, f64),
    base: f64,
}

impl Paired {
    fn floor(&self, attach: &'static str, runs_per_op: f64) -> Floor {
        Floor {
            attach,
            runs_per_op,
            per_op: self.per_op,
            per_op_ci: self.per_op_ci,
            base: self.base,
            program_ns: self.program_ns,
        }
    }
}

/// Chunks of opens alternating off, on, on, off, … with the program `id` attached by `attach`
/// (dropping what it returns detaches it); `runs_per_op` program runs per open + close.
fn paired(
    id: u32,
    runs_per_op: f64,
    mut attach: impl FnMut() -> Result<Box<dyn std::any::Any>>,
) -> Result<Paired> {
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
            let link = attach()?;
            let before = stats(id)?;
            on.push(chunk()?);
            let after = stats(id)?;
            run_time += after.0.saturating_sub(before.0);
            runs += after.1.saturating_sub(before.1);
            drop(link);
        } else {
            off.push(chunk()?);
        }
    }
    let program_ns = run_time.as_nanos() as f64 / runs.max(1) as f64;
    // The paired ratios on/off (the helpers in `load`), turned back into ns per open.
    let base = load::median(&mut off.clone());
    let per_op = |ratio_minus_one: f64| ratio_minus_one * base;
    let per_run = |ratio_minus_one: f64| per_op(ratio_minus_one) / runs_per_op - program_ns;
    let (lo, hi) = load::paired_overhead_ci(&off, &on);
    let mid = load::paired_overhead(&off, &on);
    Ok(Paired {
        ns: per_run(mid),
        ci: (per_run(lo), per_run(hi)),
        program_ns,
        per_op: per_op(mid),
        per_op_ci: (per_op(lo), per_op(hi)),
        base,
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
