//! Capture: loads the embedded eBPF object, hands it this kernel's facts, attaches every
//! program, and yields raw ring-buffer records. Lost records and failed kernel reads are
//! counted in the kernel per channel and read back here.
use anyhow::{anyhow, Context as _, Result};
use std::os::unix::fs::MetadataExt as _;

use aya::{
    maps::{Array, HashMap, Map, MapData, PerCpuArray, RingBuf},
    programs::{BtfTracePoint, Lsm, TracePoint},
    Btf, Ebpf, EbpfLoader,
};
use detector_common::{
    maps, Attach, Channel, ExeKey, KernelConfig, ProgramName, SeenKey, WatchKey, CHANNELS,
};
use tokio::io::unix::AsyncFd;

type KernelLogger = aya_log::EbpfLogger<&'static dyn log::Log>;

/// Every attach point of every channel (one table in detector-common).
fn attach_points() -> impl Iterator<Item = &'static Attach> {
    Channel::ALL.iter().flat_map(|c| c.attach())
}

/// The classic tracepoints the programs attach to: (category, name, required).
pub fn tracepoints() -> impl Iterator<Item = (&'static str, &'static str, bool)> {
    attach_points().filter_map(|a| Some((a.category?, a.tracepoint, a.required)))
}

/// The BTF tracepoints (tp_btf) the programs attach to.
pub fn btf_tracepoints() -> impl Iterator<Item = &'static str> {
    attach_points()
        .filter(|a| a.category.is_none())
        .map(|a| a.tracepoint)
}

/// The eBPF object `build.rs` built, embedded.
#[cfg(not(fuzzing))]
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/detector"));
/// A fuzzing build embeds no object (loading it fails): the fuzz targets never load programs.
#[cfg(fuzzing)]
static EBPF_OBJECT: &[u8] = &[];

pub struct Capture {
    _ebpf: Ebpf,
    /// Owned links: dropping one detaches it (see `detach`).
    links: Vec<Box<dyn Send>>,
    ring: AsyncFd<RingBuf<MapData>>,
    lost: PerCpuArray<MapData, u64>,
    read_errors: PerCpuArray<MapData, u64>,
    reader_idle: Array<MapData, u32>,
    seen: Option<HashMap<MapData, SeenKey, u8>>,
    prevention: Option<Prevention>,
    /// Prevent mode's deny path (the LSM programs) is attached.
    deny_path: bool,
    /// Prevention's own programs, attached while it is on.
    prevent_links: Vec<Box<dyn Send>>,
}

/// Prevention's programs: (program, tracefs category of a classic tracepoint or None for a
/// BTF one, tracepoint). Attached after the mapping programs of the same tracepoints.
const PREVENT_PROGRAMS: [(&str, Option<&str>, &str); 3] = [
    ("prevent_mmap", Some("syscalls"), "sys_enter_mmap"),
    ("prevent_mprotect", Some("syscalls"), "sys_enter_mprotect"),
    ("prevent_exec_interpreter", None, "sched_process_exec"),
];

/// Prevent mode's deny path: (program, LSM hook).
const LSM_PROGRAMS: [(&str, &str); 2] = [
    ("lsm_mmap_file", "mmap_file"),
    ("lsm_file_mprotect", "file_mprotect"),
];

/// The kernel's side of prevention: the `prevent` bits of `CONFIG`, the executables
/// (`PREVENT_EXES`) and the file versions (`PREVENT_FILES`) the mapping programs judge by.
pub struct Prevention {
    config: Array<MapData, KernelConfig>,
    kernel: KernelConfig,
    exes: HashMap<MapData, ExeKey, u32>,
    files: HashMap<MapData, SeenKey, u32>,
}

impl Prevention {
    /// The `PREVENT_*` bits the programs act on (0: none of the prevention work runs).
    pub fn set_bits(&mut self, bits: u32) -> Result<()> {
        self.kernel.prevent = bits;
        self.config
            .set(0, self.kernel, 0)
            .context("writing CONFIG (prevention)")
    }

    /// Replaces the executables and their `PREVENT_EXE_*` roles.
    pub fn set_exes(&mut self, entries: &[(ExeKey, u32)]) -> Result<()> {
        let old: Vec<ExeKey> = self.exes.keys().filter_map(|k| k.ok()).collect();
        for k in old.iter().filter(|k| !entries.iter().any(|(e, _)| e == *k)) {
            let _ = self.exes.remove(k);
        }
        for (exe, role) in entries {
            self.exes
                .insert(exe, role, 0)
                .context("writing PREVENT_EXES")?;
        }
        Ok(())
    }

    /// Replaces the file versions listed with `value` (a `PREVENT_FILE_*`) by `keys`; those
    /// listed with another value are kept, unless `keys` has them.
    pub fn set_files(&mut self, value: u32, keys: &[SeenKey]) -> Result<()> {
        let old: Vec<SeenKey> = self
            .files
            .iter()
            .filter_map(|kv| kv.ok())
            .filter(|(k, v)| *v == value && !keys.contains(k))
            .map(|(k, _)| k)
            .collect();
        for k in &old {
            let _ = self.files.remove(k);
        }
        for k in keys {
            self.files
                .insert(k, value, 0)
                .context("writing PREVENT_FILES")?;
        }
        Ok(())
    }

    /// Lists one file version with `value`, unless it is allowed already.
    pub fn list_file(&mut self, key: SeenKey, value: u32) -> Result<()> {
        if self.files.get(&key, 0).ok() == Some(detector_common::PREVENT_FILE_ALLOWED) {
            return Ok(());
        }
        self.files
            .insert(key, value, 0)
            .context("writing PREVENT_FILES")
    }
}

/// The kernel's seen-cache of executable mappings (files only root controls): after a file
/// version's first report, only credential programs' mappings of it are reported, until user
/// space remembers it (vouched for: no longer reported) or forgets it (the next mapping is
/// reported again).
pub struct SeenCache(HashMap<MapData, SeenKey, u8>);

impl SeenCache {
    pub fn forget(&mut self, key: SeenKey) {
        // Absent already (evicted, or never added): nothing to do.
        let _ = self.0.remove(&key);
    }

    pub fn remember(&mut self, key: SeenKey) {
        if let Err(e) = self.0.insert(key, detector_common::SEEN_VOUCHED, 0) {
            log::debug!("seen-cache insert: {e}");
        }
    }
}

/// The programs' own log lines (aya-log), forwarded to our logger.
pub struct KernelLog(Option<AsyncFd<KernelLogger>>);

fn register<T: std::os::fd::AsRawFd>(inner: T, what: &str) -> Result<AsyncFd<T>> {
    // SAFETY: the fd belongs to `inner`, which the AsyncFd owns until it is dropped.
    unsafe { AsyncFd::register(inner) }.map_err(|e| anyhow!("polling {what}: {e}"))
}

/// The object's map `name` (a `detector_common::maps` constant).
fn map_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Map> {
    ebpf.map_mut(name)
        .ok_or_else(|| anyhow!("map {name} missing"))
}

/// The object's map `name` (a `detector_common::maps` constant), taken out of it.
fn take_map(ebpf: &mut Ebpf, name: &str) -> Result<Map> {
    ebpf.take_map(name)
        .ok_or_else(|| anyhow!("map {name} missing"))
}

impl Capture {
    /// Loads and attaches; without `syscalls`, only the scheduler tracepoints (exec, exit).
    pub fn start(
        config: KernelConfig,
        watch_dirs: &[String],
        ring_bytes: u32,
        syscalls: bool,
    ) -> Result<(Self, KernelLog)> {
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(maps::EVENTS, ring_bytes)
            .load(EBPF_OBJECT)
            .context("loading the eBPF object")?;
        let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(l) => Some(register(l, "the eBPF logger")?),
            Err(e) => {
                log::debug!("eBPF logger not initialised: {e}");
                None
            }
        };
        let mut cfg: Array<_, KernelConfig> = Array::try_from(map_mut(&mut ebpf, maps::CONFIG)?)?;
        cfg.set(0, config, 0).context("writing CONFIG")?;
        let mut watch: HashMap<_, WatchKey, u32> =
            HashMap::try_from(map_mut(&mut ebpf, maps::WATCH)?)?;
        for dir in watch_dirs {
            match std::fs::metadata(dir) {
                Ok(m) => {
                    let dev = m.dev();
                    let key = WatchKey {
                        ino: m.ino(),
                        dev: (libc::major(dev) << 20) | libc::minor(dev),
                        _pad: 0,
                    };
                    watch
                        .insert(key, 1, 0)
                        .with_context(|| format!("watching {dir}"))?;
                }
                Err(e) => log::warn!("not watching {dir}: {e}"),
            }
        }
        let mut links: Vec<Box<dyn Send>> = Vec::new();
        // Classic tracepoints: the syscall channels.
        for t in attach_points().filter(|_| syscalls) {
            let Some(category) = t.category else {
                continue;
            };
            let prog: &mut TracePoint = ebpf
                .program_mut(t.program)
                .ok_or_else(|| anyhow!("program {} missing", t.program))?
                .try_into()?;
            if prog.fd().is_err() {
                prog.load()
                    .with_context(|| format!("loading {} (verifier)", t.program))?;
            }
            match prog.attach(category, t.tracepoint) {
                Ok(id) => links.push(Box::new(prog.take_link(id)?)),
                Err(e) if !t.required => {
                    log::info!("no tracepoint {category}/{} here: {e}", t.tracepoint)
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("attaching {category}/{}", t.tracepoint))
                }
            }
        }
        let btf = Btf::from_sys_fs().context("reading kernel BTF")?;
        for t in attach_points().filter(|a| a.category.is_none()) {
            let (prog_name, name) = (t.program, t.tracepoint);
            let prog: &mut BtfTracePoint = ebpf
                .program_mut(prog_name)
                .ok_or_else(|| anyhow!("program {prog_name} missing"))?
                .try_into()?;
            prog.load(name, &btf)
                .with_context(|| format!("loading tp_btf/{name} (verifier)"))?;
            let id = prog
                .attach()
                .with_context(|| format!("attaching tp_btf/{name}"))?;
            links.push(Box::new(prog.take_link(id)?));
        }
        log::info!(
            "capture path: tracepoints ({} attached; fentry/LSM not used){}",
            links.len(),
            if syscalls {
                ""
            } else {
                "; syscall channels off ([capture] syscalls = false): no mmap, file-change, memory-tamper or memory-read capture"
            }
        );
        let ring = RingBuf::try_from(take_map(&mut ebpf, maps::EVENTS)?)?;
        let lost = PerCpuArray::try_from(take_map(&mut ebpf, maps::LOST)?)?;
        let read_errors = PerCpuArray::try_from(take_map(&mut ebpf, maps::READ_ERRORS)?)?;
        let reader_idle = Array::try_from(take_map(&mut ebpf, maps::READER_IDLE)?)?;
        let seen = HashMap::try_from(take_map(&mut ebpf, maps::SEEN)?)?;
        let prevention = Prevention {
            config: Array::try_from(take_map(&mut ebpf, maps::CONFIG)?)?,
            kernel: config,
            exes: HashMap::try_from(take_map(&mut ebpf, maps::PREVENT_EXES)?)?,
            files: HashMap::try_from(take_map(&mut ebpf, maps::PREVENT_FILES)?)?,
        };
        let ring = register(ring, "the ring buffer")?;
        Ok((
            Capture {
                _ebpf: ebpf,
                links,
                ring,
                lost,
                read_errors,
                reader_idle,
                seen: Some(seen),
                prevention: Some(prevention),
                deny_path: false,
                prevent_links: Vec::new(),
            },
            KernelLog(logger),
        ))
    }

    /// Writes the credential catalogue's executable basenames for the kernel, which reports a
    /// credential program's mappings of a file version user space has not yet decided on. A
    /// name that does not fit is left to user space alone (logged).
    pub fn set_credential_names<'a>(
        &mut self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<()> {
        let mut map: HashMap<_, ProgramName, u8> =
            HashMap::try_from(map_mut(&mut self._ebpf, maps::CREDENTIAL_NAMES)?)?;
        for name in names {
            match ProgramName::new(name.as_bytes()) {
                Some(key) => map
                    .insert(key, 1, 0)
                    .with_context(|| format!("writing the credential name {name}"))?,
                None => log::warn!(
                    "the credential program name {name:?} is too long for the kernel's catalogue: its mappings of a file version are reported once"
                ),
            }
        }
        Ok(())
    }

    /// The handle to the kernel's seen-cache, once.
    pub fn take_seen_cache(&mut self) -> Option<SeenCache> {
        self.seen.take().map(SeenCache)
    }

    /// Loads and attaches prevent mode's deny path (the BPF LSM programs of `lsm.rs`); once
    /// attached it stays (its programs do nothing until `PREVENT_DENY` is set).
    pub fn attach_deny_path(&mut self) -> Result<()> {
        if self.deny_path {
            return Ok(());
        }
        let btf = Btf::from_sys_fs().context("reading kernel BTF")?;
        for (name, hook) in LSM_PROGRAMS {
            let prog: &mut Lsm = self
                ._ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("program {name} missing"))?
                .try_into()?;
            prog.load(hook, &btf)
                .with_context(|| format!("loading lsm/{hook} (verifier)"))?;
            let id = prog
                .attach()
                .with_context(|| format!("attaching lsm/{hook}"))?;
            self.links.push(Box::new(prog.take_link(id)?));
        }
        self.deny_path = true;
        Ok(())
    }

    /// Attaches prevention's programs (`on`), or detaches them: while they are detached,
    /// prevention costs the mapping paths nothing. Each program that does not load or attach
    /// is left out, and named with why in what this returns; the others are attached.
    pub fn prevention_programs(&mut self, on: bool) -> Vec<String> {
        if !on {
            self.prevent_links.clear();
            return Vec::new();
        }
        if !self.prevent_links.is_empty() {
            return Vec::new();
        }
        let mut failed = Vec::new();
        for p in PREVENT_PROGRAMS {
            match self.attach_prevention_program(p) {
                Ok(link) => self.prevent_links.push(link),
                Err(e) => {
                    // The verifier's whole log is in the cause: its last line says why.
                    let cause = e.root_cause().to_string();
                    let last = cause.lines().rev().find(|l| !l.trim().is_empty());
                    failed.push(format!("{}: {e}: {}", p.0, last.unwrap_or("").trim()));
                }
            }
        }
        failed
    }

    fn attach_prevention_program(
        &mut self,
        (name, category, tracepoint): (&str, Option<&str>, &str),
    ) -> Result<Box<dyn Send>> {
        let prog = self
            ._ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow!("program {name} missing"))?;
        match category {
            Some(category) => {
                let prog: &mut TracePoint = prog.try_into()?;
                if prog.fd().is_err() {
                    prog.load()
                        .with_context(|| format!("loading {name} (verifier)"))?;
                }
                let id = prog
                    .attach(category, tracepoint)
                    .with_context(|| format!("attaching {category}/{tracepoint}"))?;
                Ok(Box::new(prog.take_link(id)?))
            }
            None => {
                let prog: &mut BtfTracePoint = prog.try_into()?;
                if prog.fd().is_err() {
                    let btf = Btf::from_sys_fs().context("reading kernel BTF")?;
                    prog.load(tracepoint, &btf)
                        .with_context(|| format!("loading tp_btf/{tracepoint} (verifier)"))?;
                }
                let id = prog
                    .attach()
                    .with_context(|| format!("attaching tp_btf/{tracepoint}"))?;
                Ok(Box::new(prog.take_link(id)?))
            }
        }
    }

    /// The handle to the kernel's side of prevention, once.
    pub fn take_prevention(&mut self) -> Option<Prevention> {
        self.prevention.take()
    }

    /// How many programs are attached.
    pub fn attached(&self) -> usize {
        self.links.len()
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

    /// Reads whatever is queued without waiting; returns how many records. The programs wake
    /// the daemon only for alert-making events, when the ring fills up, or when the daemon said
    /// it is idle (a wake-up per event is costly), so the daemon drains on a short timer too.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let ring = self.ring.get_mut();
        let mut n = 0;
        while let Some(item) = ring.next() {
            f(&item);
            n += 1;
        }
        n
    }

    /// A timed drain; when it finds nothing, tells the programs to wake the daemon on the next
    /// event and returns false (the caller stops its timer). An event that came before the
    /// programs saw the flag is caught by a second look.
    pub fn drain_or_idle(&mut self, mut f: impl FnMut(&[u8])) -> Result<bool> {
        if self.drain(&mut f) > 0 {
            return Ok(true);
        }
        self.set_reader_idle(true)?;
        if self.drain(&mut f) == 0 {
            return Ok(false);
        }
        self.set_reader_idle(false)?;
        Ok(true)
    }

    /// Tells the programs whether the daemon's drain timer is stopped (then the next event
    /// wakes it) or running (then only alert-making events and a filling ring do).
    pub fn set_reader_idle(&mut self, idle: bool) -> Result<()> {
        self.reader_idle
            .set(0, idle as u32, 0)
            .context("writing READER_IDLE")
    }

    /// Detaches every program, one after the other. Each detach waits for an RCU grace period:
    /// 25 links take about 0.5 s on a loaded 2-CPU host, against 50 ms when each is dropped on
    /// a thread of its own. Those parallel detaches once left both vCPUs of a Debian 6.1 guest
    /// in a soft lockup in the detaching threads, for good; the kernel detaches one at a time
    /// too when the daemon is killed.
    pub fn detach(self) {
        let t = std::time::Instant::now();
        let Capture {
            _ebpf,
            links,
            prevent_links,
            ..
        } = self;
        for link in prevent_links.into_iter().chain(links) {
            drop(link);
        }
        log::debug!("links detached in {:?}", t.elapsed());
    }

    /// Records lost so far, per channel (summed over CPUs).
    pub fn lost(&self) -> Result<[u64; CHANNELS as usize]> {
        per_channel(&self.lost)
    }

    /// Failed kernel or user memory reads so far, per channel (indexed by `Channel`, summed
    /// over CPUs): a count of reads whose failure made a program drop an event or send it
    /// without the field it was reading (an empty filename, a zero inode number, a truncated
    /// path). Cumulative since the programs were loaded.
    pub fn read_errors(&self) -> Result<[u64; CHANNELS as usize]> {
        per_channel(&self.read_errors)
    }
}

/// A per-channel counter map's entries, summed over CPUs.
fn per_channel(map: &PerCpuArray<MapData, u64>) -> Result<[u64; CHANNELS as usize]> {
    let mut out = [0; CHANNELS as usize];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = map.get(&(i as u32), 0)?.iter().sum();
    }
    Ok(out)
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
    for ((n, s), channel) in now.iter().zip(seen.iter_mut()).zip(Channel::ALL) {
        if n > s {
            log::warn!(
                "lost {} {} events (ring buffer full); {} lost in total",
                n - *s,
                channel.name(),
                n
            );
            *s = *n;
        } else if at_exit {
            log::info!("{} events lost on channel {}", n, channel.name());
        }
    }
}
