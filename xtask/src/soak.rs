//! `cargo xtask soak --minutes N`: the real daemon for N minutes under mixed load, with real
//! attacks injected at random times (a seeded RNG), checked at the end.
//!
//! Holds `/tmp/detector-e2e.lock` (flock) throughout: the root e2e tests also write
//! `/etc/ld.so.preload` and start daemons. `/etc/ld.so.preload` is saved first and put back on
//! every way out: after each attack that writes it, by a guard's Drop (errors, panics), and by a
//! thread woken by a handler of SIGINT, SIGTERM and SIGHUP.
//!
//! Load, each in a loop of its own at `nice -n 10`: exec storms (a dynamic and a static
//! program), dlopen storms, open storms, rename storms in a scratch directory, fork storms
//! (short-lived processes that never exec), and floods aimed at the sensor (LD_PRELOAD naming a
//! large sparse file, a FIFO, /dev/zero, /dev/null; environments near the kernel's argument
//! limit). Attacks: a read() hook preloaded into `ssh -V`; a library loaded from a memfd; a hook
//! named in `/etc/ld.so.preload`, then `ssh -V`, then the file restored; PTRACE_ATTACH and
//! PTRACE_POKETEXT into a child. The fixtures are the e2e tests' (tests/fixtures).
//!
//! Pass: every attack alerted; no kernel loss, or every loss counted in the stats record at exit
//! (and the attacks alerted anyway); the daemon's RSS after the warm-up grows by under 5 MiB; the
//! daemon is the same process from start to end. Writes target/soak/report.md (markdown) and
//! rss.tsv (the samples), keeps the daemon's output in target/soak/.
use std::{
    collections::BTreeMap,
    fs::{self, File},
    io::{BufRead as _, BufReader, Write as _},
    os::unix::{
        fs::{MetadataExt as _, PermissionsExt as _},
        io::AsRawFd as _,
    },
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering},
        Arc, Mutex, OnceLock,
    },
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, ensure, Context as _, Result};
use serde_json::Value;

use crate::load;

const LOCK: &str = "/tmp/detector-e2e.lock";
const PRELOAD_LIST: &str = "/etc/ld.so.preload";
/// RSS growth allowed after the warm-up.
const BUDGET_RSS_GROWTH_MIB: f64 = 5.0;
/// Seconds between RSS samples.
const SAMPLE_SECS: u64 = 5;
/// How long after the last attack the run waits for alerts before it judges.
const DRAIN: Duration = Duration::from_secs(20);

/// `soak_helper fork N` | `soak_helper rename N DIR`:
///   fork    fork N children that _exit(0) at once, one after the other
///   rename  in DIR: create a file, rename it back and forth, unlink and create it again
const HELPER_C: &str = r#"#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: soak_helper fork|rename N [DIR]\n"); return 2; }
    long n = atol(argv[2]);
    if (strcmp(argv[1], "fork") == 0) {
        for (long i = 0; i < n; i++) {
            pid_t pid = fork();
            if (pid < 0) { perror("fork"); return 1; }
            if (pid == 0) _exit(0);
            if (waitpid(pid, NULL, 0) < 0) { perror("waitpid"); return 1; }
        }
        return 0;
    }
    if (strcmp(argv[1], "rename") == 0 && argc == 4) {
        char a[4096], b[4096];
        snprintf(a, sizeof a, "%s/a.conf", argv[3]);
        snprintf(b, sizeof b, "%s/b.conf", argv[3]);
        for (long i = 0; i < n; i++) {
            int fd = open(a, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd < 0) { perror(a); return 1; }
            if (write(fd, "x = 1\n", 6) != 6) return 1;
            close(fd);
            if (rename(a, b) != 0 || rename(b, a) != 0) { perror("rename"); return 1; }
            if (i % 16 == 15 && unlink(a) != 0) { perror("unlink"); return 1; }
        }
        unlink(a);
        return 0;
    }
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
}
"#;

pub fn run(root: &Path, minutes: u64, seed: Option<u64>) -> Result<()> {
    ensure!(minutes >= 1, "--minutes must be at least 1");
    // SAFETY: geteuid has no preconditions.
    ensure!(
        unsafe { libc::geteuid() } == 0,
        "the soak loads eBPF programs and writes /etc/ld.so.preload: run it as root"
    );
    super::build()?;
    let seed = seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    println!("[soak] seed {seed} (rerun with --seed {seed})");
    handle_signals()?;
    let _lock = Lock::take(LOCK)?;
    let out_dir = root.join("target/soak");
    fs::create_dir_all(&out_dir)?;
    let scratch = Scratch::create()?;
    let _preload = PreloadGuard::save()?;
    let tools = Tools::build(root, &scratch.0)?;
    let bin = root.join("target/release/detector");
    let daemon = Daemon::start(&bin, &scratch.0, &out_dir)?;
    println!(
        "[soak] detector running, pid {}; {minutes} min of load and attacks; its output goes to {}",
        daemon.pid,
        out_dir.display()
    );
    let ran = soak(&tools, &daemon, Duration::from_secs(minutes * 60), seed);
    let stopped = daemon.stop();
    let ran = ran?;
    let (text, failures) = judge(&ran, &stopped?, seed, minutes);
    fs::write(out_dir.join("report.md"), &text)?;
    let samples: String = ran
        .rss
        .iter()
        .map(|(t, mib)| format!("{t:.0}\t{mib:.2}\n"))
        .collect();
    fs::write(
        out_dir.join("rss.tsv"),
        format!("seconds\tvmrss_mib\n{samples}"),
    )?;
    println!("\n{text}");
    if !failures.is_empty() {
        bail!("soak failed: {}", failures.join("; "));
    }
    println!("[soak] passed");
    Ok(())
}

/// splitmix64: the attack schedule from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    PreloadEnv,
    Memfd,
    PreloadList,
    Ptrace,
}

impl Kind {
    const ALL: [Kind; 4] = [
        Kind::PreloadEnv,
        Kind::Memfd,
        Kind::PreloadList,
        Kind::Ptrace,
    ];

    fn label(self) -> &'static str {
        match self {
            Kind::PreloadEnv => "LD_PRELOAD read() hook into ssh -V",
            Kind::Memfd => "memfd library (dlopen /proc/self/fd/N)",
            Kind::PreloadList => "/etc/ld.so.preload naming a hook, then ssh -V",
            Kind::Ptrace => "PTRACE_ATTACH + PTRACE_POKETEXT into a child",
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Kind::PreloadEnv => "process.pid = ssh, library.path = hook, detections ∋ preload_env",
            Kind::Memfd => "process.pid = loadlib, library.path = /memfd:payload…",
            Kind::PreloadList => {
                "process.pid = ssh, library.path = hook, detections ∋ preload_file; and the write of the list (file.path, open_write, loader_config_change, the soak's pid)"
            }
            Kind::Ptrace => {
                "target.pid = child, target.operation = ptrace, target.request = 4, detections ∋ memory_tamper"
            }
        }
    }
}

/// One injected attack and what must answer it.
struct Attack {
    kind: Kind,
    /// Seconds since the daemon was armed.
    at_secs: f64,
    at: Instant,
    /// The pid the alert must name (process.pid, or target.pid for ptrace).
    pid: u32,
    /// The library the alert must name (empty for ptrace).
    lib: String,
    /// Why the trigger itself failed, if it did.
    failed: Option<String>,
}

impl Attack {
    /// The alerts this attack must produce, each as a test on an alert: for the list, ssh
    /// loading the hook and the soak's own write of the list (within 30 s of it).
    fn wanted(&self) -> usize {
        if self.kind == Kind::PreloadList {
            2
        } else {
            1
        }
    }

    fn matches_nth(&self, i: usize, a: &Alert) -> bool {
        if i == 1 {
            return a.pid == u64::from(std::process::id())
                && a.file_path == PRELOAD_LIST
                && a.file_op == "open_write"
                && a.detections.iter().any(|x| x == "loader_config_change")
                && a.at >= self.at
                && a.at.duration_since(self.at) < Duration::from_secs(30);
        }
        self.matches(a)
    }

    /// Seconds from the injection to the last of its alerts, when all came.
    fn latency(&self, alerts: &[Alert]) -> Option<f64> {
        (0..self.wanted())
            .map(|i| {
                alerts
                    .iter()
                    .filter(|x| self.matches_nth(i, x))
                    .map(|x| x.at.saturating_duration_since(self.at).as_secs_f64())
                    .reduce(f64::min)
            })
            .try_fold(0.0f64, |m, l| l.map(|l| m.max(l)))
    }

    fn matches(&self, a: &Alert) -> bool {
        let pid = u64::from(self.pid);
        let has = |d: &str| a.detections.iter().any(|x| x == d);
        match self.kind {
            Kind::PreloadEnv => a.pid == pid && a.lib == self.lib && has("preload_env"),
            Kind::Memfd => a.pid == pid && a.lib.starts_with("/memfd:payload"),
            Kind::PreloadList => a.pid == pid && a.lib == self.lib && has("preload_file"),
            Kind::Ptrace => {
                a.target_pid == pid
                    && a.target_op == "ptrace"
                    && a.request == 4
                    && has("memory_tamper")
            }
        }
    }
}

/// What the run keeps of each alert.
struct Alert {
    at: Instant,
    pid: u64,
    lib: String,
    target_pid: u64,
    target_op: String,
    request: u64,
    detections: Vec<String>,
    rule: String,
    file_path: String,
    file_op: String,
}

impl Alert {
    fn from(v: &Value, at: Instant) -> Alert {
        let str_at = |path: &str| {
            path.split('.')
                .fold(v, |v, k| &v[k])
                .as_str()
                .unwrap_or("")
                .to_owned()
        };
        Alert {
            at,
            pid: v["process"]["pid"].as_u64().unwrap_or(0),
            lib: str_at("library.path"),
            target_pid: v["target"]["pid"].as_u64().unwrap_or(0),
            target_op: str_at("target.operation"),
            request: v["target"]["request"].as_u64().unwrap_or(u64::MAX),
            detections: v["detections"]
                .as_array()
                .map(|d| {
                    d.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            rule: str_at("rule.name"),
            file_path: str_at("file.path"),
            file_op: str_at("file.operation"),
        }
    }
}

/// The compiled helpers and fixtures, and the files the floods preload.
struct Tools {
    load: load::Tools,
    helper: PathBuf,
    hook: PathBuf,
    loadlib: PathBuf,
    tamper: PathBuf,
    fifo: PathBuf,
    dir: PathBuf,
}

impl Tools {
    fn build(root: &Path, dir: &Path) -> Result<Tools> {
        let fixtures = root.join("tests/fixtures");
        let load = load::compile(dir)?;
        let src = dir.join("soak_helper.c");
        fs::write(&src, HELPER_C)?;
        let helper = dir.join("soak_helper");
        gcc(&["-O2"], &src, &helper)?;
        // As the e2e tests' gcc helper builds them.
        let hook = dir.join("read_hook.so");
        gcc(&["-shared", "-fPIC"], &fixtures.join("read_hook.c"), &hook)?;
        let loadlib = dir.join("loadlib");
        gcc(&[], &fixtures.join("loadlib.c"), &loadlib)?;
        let tamper = dir.join("tamper");
        gcc(&[], &fixtures.join("tamper.c"), &tamper)?;
        let fifo = dir.join("fifo.so");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes())?;
        // SAFETY: a valid NUL-terminated path.
        ensure!(
            unsafe { libc::mkfifo(c.as_ptr(), 0o644) } == 0,
            "mkfifo {}: {}",
            fifo.display(),
            std::io::Error::last_os_error()
        );
        Ok(Tools {
            load,
            helper,
            hook,
            loadlib,
            tamper,
            fifo,
            dir: dir.to_owned(),
        })
    }

    /// A fresh copy of the hook (a new inode, a new path) for one attack.
    fn hook_copy(&self, n: usize) -> Result<PathBuf> {
        let p = self.dir.join(format!("libsoakhook{n}.so"));
        fs::copy(&self.hook, &p).with_context(|| format!("copying the hook to {}", p.display()))?;
        Ok(p)
    }
}

fn gcc(flags: &[&str], src: &Path, out: &Path) -> Result<()> {
    let st = Command::new("gcc")
        .args(flags)
        .arg("-o")
        .arg(out)
        .arg(src)
        .arg("-ldl")
        .status()
        .context("running gcc")?;
    ensure!(st.success(), "gcc failed on {}", src.display());
    Ok(())
}

/// The daemon, its stdout read by a thread of its own.
struct Daemon {
    child: Mutex<Child>,
    pid: u32,
    armed: Instant,
    alerts: Arc<Mutex<Vec<Alert>>>,
    stats: Arc<Mutex<Vec<Value>>>,
    reader: Mutex<Option<thread::JoinHandle<()>>>,
    log: PathBuf,
}

static DAEMON_PID: AtomicU32 = AtomicU32::new(0);

impl Daemon {
    fn start(bin: &Path, scratch: &Path, out_dir: &Path) -> Result<Daemon> {
        // Every alert goes out (no aggregation: each memfd attack is the same library in the
        // same program); a stats record every 10 s.
        let config = scratch.join("soak.toml");
        fs::write(
            &config,
            "[thresholds]\naggregate_window_secs = 0\nstats_interval_secs = 10\n",
        )?;
        let ready = scratch.join("ready");
        let log = out_dir.join("daemon.log");
        let mut child = Command::new(bin)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--ready-file")
            .arg(&ready)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id();
        DAEMON_PID.store(pid, Ordering::SeqCst);
        let alerts = Arc::new(Mutex::new(Vec::new()));
        let stats = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().context("daemon stdout")?;
        let mut saved = File::create(out_dir.join("daemon.jsonl"))?;
        let (a, s) = (alerts.clone(), stats.clone());
        let reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let at = Instant::now();
                let _ = writeln!(saved, "{line}");
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    eprintln!("[soak] daemon stdout line is not JSON: {line}");
                    continue;
                };
                if v["record"] == "stats" {
                    s.lock().unwrap().push(v);
                } else {
                    a.lock().unwrap().push(Alert::from(&v, at));
                }
            }
        });
        let start = Instant::now();
        while !ready.exists() {
            if let Some(st) = child.try_wait()? {
                bail!(
                    "detector exited ({st}) before arming: see {}",
                    log.display()
                );
            }
            ensure!(
                start.elapsed() < Duration::from_secs(90),
                "detector not armed after 90 s"
            );
            thread::sleep(Duration::from_millis(50));
        }
        Ok(Daemon {
            child: Mutex::new(child),
            pid,
            armed: Instant::now(),
            alerts,
            stats,
            reader: Mutex::new(Some(reader)),
            log,
        })
    }

    fn alive(&self) -> bool {
        matches!(self.child.lock().unwrap().try_wait(), Ok(None))
    }

    /// SIGTERM, up to 30 s for the exit; then its stdout to the end (the stats record at exit).
    fn stop(&self) -> Result<Exit> {
        let mut child = self.child.lock().unwrap();
        let was_alive = matches!(child.try_wait(), Ok(None));
        // SAFETY: kill(2) on our own child, not yet waited for when it was alive.
        if was_alive {
            unsafe { libc::kill(self.pid as i32, libc::SIGTERM) };
        }
        let t = Instant::now();
        let status = loop {
            if let Some(st) = child.try_wait()? {
                break st;
            }
            if t.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                break child.wait()?;
            }
            thread::sleep(Duration::from_millis(20));
        };
        DAEMON_PID.store(0, Ordering::SeqCst);
        if let Some(r) = self.reader.lock().unwrap().take() {
            let _ = r.join();
        }
        let stats = self.stats.lock().unwrap();
        Ok(Exit {
            was_alive,
            status: status.code(),
            stop_secs: t.elapsed().as_secs_f64(),
            log: fs::read_to_string(&self.log).unwrap_or_default(),
            final_stats: stats.last().cloned(),
            stats_records: stats.len(),
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap();
        if let Ok(None) = child.try_wait() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How the daemon ended.
struct Exit {
    was_alive: bool,
    status: Option<i32>,
    stop_secs: f64,
    log: String,
    final_stats: Option<Value>,
    stats_records: usize,
}

/// What the run measured.
struct Ran {
    attacks: Vec<Attack>,
    /// (seconds since armed, VmRSS MiB), every SAMPLE_SECS.
    rss: Vec<(f64, f64)>,
    hwm: f64,
    warmup: Duration,
    /// When the daemon was first seen gone, if it was.
    died_at: Option<f64>,
    cpu: Duration,
    wall: Duration,
    storms: Vec<(String, u64, u64)>,
    /// (alert arrival - injection) per attack, None when no alert came.
    latency: Vec<Option<f64>>,
    alerts: usize,
    rules: BTreeMap<String, u64>,
}

/// A load generator: runs `argv` again and again (each run a batch of `ops` operations) until
/// told to stop; counts its batches and failures.
struct Storm {
    name: String,
    argv: Vec<String>,
    batches: Arc<AtomicU64>,
    failures: Arc<AtomicU64>,
    ops: u64,
}

fn storm_env() -> Vec<(String, String)> {
    let mut env = vec![
        ("PATH".to_owned(), "/usr/local/bin:/usr/bin:/bin".to_owned()),
        ("HOME".to_owned(), "/root".to_owned()),
        ("LANG".to_owned(), "C.UTF-8".to_owned()),
    ];
    env.extend((0..12).map(|i| (format!("SOAK_VAR{i:02}"), "v".repeat(20 + i))));
    env
}

fn soak(t: &Tools, d: &Daemon, duration: Duration, seed: u64) -> Result<Ran> {
    let stop = Arc::new(AtomicBool::new(false));
    let helper = t.load.helper.display().to_string();
    let ours = t.helper.display().to_string();
    let scratch_file = t.dir.join("open-target.txt");
    fs::write(&scratch_file, "soak\n")?;
    let rename_dir = t.dir.join("renames");
    fs::create_dir_all(&rename_dir)?;
    let specs: Vec<(&str, Vec<String>, u64)> = vec![
        (
            "exec storm, /bin/true",
            vec![
                helper.clone(),
                "spawn".into(),
                "1000".into(),
                "/bin/true".into(),
            ],
            1000,
        ),
        (
            "exec storm, static binary",
            vec![
                helper.clone(),
                "spawn".into(),
                "1000".into(),
                t.load.static_bin.display().to_string(),
            ],
            1000,
        ),
        (
            "dlopen storm (libm)",
            vec![
                helper.clone(),
                "dlopen".into(),
                "3000".into(),
                "libm.so.6".into(),
            ],
            3000,
        ),
        (
            "open storm (a scratch file)",
            vec![
                helper.clone(),
                "open".into(),
                "30000".into(),
                scratch_file.display().to_string(),
            ],
            30000,
        ),
        (
            "open storm (/etc/hostname, read-only)",
            vec![
                helper,
                "open".into(),
                "30000".into(),
                "/etc/hostname".into(),
            ],
            30000,
        ),
        (
            "rename storm (scratch directory)",
            vec![
                ours.clone(),
                "rename".into(),
                "3000".into(),
                rename_dir.display().to_string(),
            ],
            3000,
        ),
        (
            "fork storm (short-lived processes, no exec)",
            vec![ours, "fork".into(), "2000".into()],
            2000,
        ),
    ];
    let storms: Vec<Storm> = specs
        .into_iter()
        .map(|(name, argv, ops)| Storm {
            name: name.to_owned(),
            argv,
            batches: Arc::default(),
            failures: Arc::default(),
            ops,
        })
        .collect();
    let mut threads = Vec::new();
    for s in &storms {
        let (argv, batches, failures, stop) = (
            s.argv.clone(),
            s.batches.clone(),
            s.failures.clone(),
            stop.clone(),
        );
        let name = s.name.clone();
        threads.push(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let out = Command::new("nice")
                    .args(["-n", "10"])
                    .args(&argv)
                    .env_clear()
                    .envs(storm_env())
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .output();
                match out {
                    Ok(o) if o.status.success() => {
                        batches.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(o) => {
                        if failures.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!(
                                "[soak] {name}: {}",
                                String::from_utf8_lossy(&o.stderr).trim()
                            );
                        }
                    }
                    Err(e) => {
                        if failures.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("[soak] {name}: {e}");
                        }
                    }
                }
                thread::sleep(Duration::from_millis(200));
            }
        }));
    }
    let flood = Flood::new(t)?;
    let flood_rounds = Arc::new(AtomicU64::new(0));
    {
        let (stop, rounds) = (stop.clone(), flood_rounds.clone());
        threads.push(thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if let Err(e) = flood.round(n) {
                    eprintln!("[soak] flood: {e:#}");
                }
                n += 1;
                rounds.store(n, Ordering::Relaxed);
                thread::sleep(Duration::from_millis(500));
            }
        }));
    }

    // The schedule: one attack per 40 s on average (at least one of each kind, in a random
    // order), at random times between 20 s after the start and 30 s before the end.
    let mut rng = Rng(seed);
    let total = duration.as_secs();
    let window = (20, total.saturating_sub(30).max(21));
    let n = (total / 40).max(Kind::ALL.len() as u64) as usize;
    let mut kinds: Vec<Kind> = Kind::ALL.to_vec();
    for i in (1..kinds.len()).rev() {
        kinds.swap(i, rng.below(i as u64 + 1) as usize);
    }
    while kinds.len() < n {
        kinds.push(Kind::ALL[rng.below(Kind::ALL.len() as u64) as usize]);
    }
    let mut times: Vec<u64> = (0..n)
        .map(|_| window.0 * 1000 + rng.below((window.1 - window.0) * 1000))
        .collect();
    times.sort_unstable();
    let schedule: Vec<(Duration, Kind)> = times
        .into_iter()
        .map(Duration::from_millis)
        .zip(kinds)
        .collect();
    println!(
        "[soak] {} attacks scheduled: {}",
        schedule.len(),
        schedule
            .iter()
            .map(|(at, k)| format!("{:.1}s {k:?}", at.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let warmup = Duration::from_secs(120).min(duration / 2);
    let start = d.armed;
    let (cpu0, _) = load::cpu(d.pid)?;
    let mut attacks = Vec::new();
    let mut rss = Vec::new();
    let mut hwm = 0.0f64;
    let mut died_at = None;
    let mut next_sample = Duration::ZERO;
    let mut next_attack = 0;
    while start.elapsed() < duration {
        let now = start.elapsed();
        if now >= next_sample {
            next_sample += Duration::from_secs(SAMPLE_SECS);
            match (d.alive(), load::memory(d.pid)) {
                (true, Ok((r, h))) => {
                    rss.push((now.as_secs_f64(), r));
                    hwm = hwm.max(h);
                }
                _ => {
                    died_at = Some(now.as_secs_f64());
                    println!("[soak] the daemon is gone at {:.0} s", now.as_secs_f64());
                    break;
                }
            }
            if rss.len() % 12 == 1 {
                println!(
                    "[soak] {:>4.0} s: RSS {:.1} MiB, {} alerts, {} attacks injected",
                    now.as_secs_f64(),
                    rss.last().map_or(0.0, |r| r.1),
                    d.alerts.lock().unwrap().len(),
                    attacks.len()
                );
            }
        }
        if next_attack < schedule.len() && now >= schedule[next_attack].0 {
            let kind = schedule[next_attack].1;
            let attack = inject(t, kind, attacks.len(), start);
            println!(
                "[soak] {:>4.0} s: attack {} {:?}, pid {}{}",
                attack.at_secs,
                attacks.len() + 1,
                kind,
                attack.pid,
                attack
                    .failed
                    .as_ref()
                    .map(|e| format!(" — trigger failed: {e}"))
                    .unwrap_or_default()
            );
            attacks.push(attack);
            next_attack += 1;
        }
        thread::sleep(Duration::from_millis(100));
    }
    let wall = start.elapsed();
    let (cpu1, _) = load::cpu(d.pid).unwrap_or((cpu0, Duration::ZERO));
    stop.store(true, Ordering::Relaxed);
    println!("[soak] load stopping; waiting up to {DRAIN:?} for the last alerts");
    for th in threads {
        let _ = th.join();
    }
    let waited = Instant::now();
    while waited.elapsed() < DRAIN {
        let alerts = d.alerts.lock().unwrap();
        if attacks
            .iter()
            .all(|a| a.failed.is_some() || a.latency(&alerts).is_some())
        {
            break;
        }
        drop(alerts);
        thread::sleep(Duration::from_millis(200));
    }
    if died_at.is_none() {
        match (d.alive(), load::memory(d.pid)) {
            (true, Ok((r, h))) => {
                rss.push((start.elapsed().as_secs_f64(), r));
                hwm = hwm.max(h);
            }
            _ => died_at = Some(start.elapsed().as_secs_f64()),
        }
    }
    let alerts = d.alerts.lock().unwrap();
    let latency = attacks.iter().map(|a| a.latency(&alerts)).collect();
    let mut rules = BTreeMap::new();
    for a in alerts.iter() {
        *rules.entry(a.rule.clone()).or_insert(0) += 1;
    }
    let mut storms_done: Vec<(String, u64, u64)> = storms
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                s.batches.load(Ordering::Relaxed) * s.ops,
                s.failures.load(Ordering::Relaxed),
            )
        })
        .collect();
    storms_done.push((
        format!("flood rounds (each: {})", Flood::WHAT),
        flood_rounds.load(Ordering::Relaxed),
        0,
    ));
    Ok(Ran {
        attacks,
        rss,
        hwm,
        warmup,
        died_at,
        cpu: cpu1.saturating_sub(cpu0),
        wall,
        storms: storms_done,
        latency,
        alerts: alerts.len(),
        rules,
    })
}

/// Floods aimed at the sensor: programs whose LD_PRELOAD names what a sensor must not read
/// blindly, and environments near the kernel's limit.
struct Flood {
    dir: PathBuf,
    fifo: PathBuf,
    libm: String,
    /// Bytes of environment strings that fit under the kernel's argument limit, with a margin.
    env_budget: usize,
}

impl Flood {
    const WHAT: &'static str = "/bin/true with LD_PRELOAD = a 256 MiB sparse file (a new one every 20 rounds), a FIFO (killed after 300 ms), /dev/zero, /dev/null, all four at once; /bin/true with an environment at the kernel's argument limit, with and without LD_PRELOAD=libm after it";

    fn new(t: &Tools) -> Result<Flood> {
        // SAFETY: sysconf has no preconditions.
        let arg_max = unsafe { libc::sysconf(libc::_SC_ARG_MAX) };
        ensure!(arg_max > 0, "sysconf(_SC_ARG_MAX)");
        Ok(Flood {
            dir: t.dir.clone(),
            fifo: t.fifo.clone(),
            libm: load::SYSTEM_LIBM.to_owned(),
            env_budget: (arg_max as usize).saturating_sub(48 * 1024),
        })
    }

    fn big(&self, round: u64) -> PathBuf {
        self.dir.join(format!("big{}.so", round / 20))
    }

    fn round(&self, n: u64) -> Result<()> {
        let big = self.big(n);
        if n.is_multiple_of(20) {
            if n > 0 {
                let _ = fs::remove_file(self.big(n - 20));
            }
            File::create(&big)?.set_len(256 << 20)?;
        }
        let all = format!(
            "{}:{}:/dev/zero:/dev/null",
            big.display(),
            self.fifo.display()
        );
        for value in [
            big.display().to_string(),
            "/dev/zero".to_owned(),
            "/dev/null".to_owned(),
        ] {
            quiet(Command::new("/bin/true").env("LD_PRELOAD", value)).status()?;
        }
        for value in [self.fifo.display().to_string(), all] {
            // The loader blocks opening a FIFO nobody writes.
            let mut child = quiet(Command::new("/bin/true").env("LD_PRELOAD", value)).spawn()?;
            thread::sleep(Duration::from_millis(300));
            let _ = child.kill();
            child.wait()?;
        }
        for preload in [None, Some(&self.libm)] {
            let mut cmd = Command::new("/bin/true");
            cmd.env_clear();
            // MAX_ARG_STRLEN (32 pages) bounds each string, the budget all of them and their
            // pointers.
            let per = 32 * 4096 - 1;
            let mut used = 0;
            let mut i = 0;
            while used + per + 8 < self.env_budget {
                let name = format!("SOAKPAD{i:02}");
                let value = "p".repeat(per - name.len() - 1);
                used += per + 1 + 8;
                cmd.env(name, value);
                i += 1;
            }
            if let Some(lib) = preload {
                cmd.env("LD_PRELOAD", lib);
            }
            quiet(&mut cmd).status()?;
        }
        Ok(())
    }
}

fn quiet(cmd: &mut Command) -> &mut Command {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
}

/// Runs one attack now; the pid its alert must name.
fn inject(t: &Tools, kind: Kind, n: usize, start: Instant) -> Attack {
    let at = Instant::now();
    let mut attack = Attack {
        kind,
        at_secs: at.duration_since(start).as_secs_f64(),
        at,
        pid: 0,
        lib: String::new(),
        failed: None,
    };
    if let Err(e) = run_attack(t, kind, n, &mut attack) {
        attack.failed = Some(format!("{e:#}"));
    }
    attack
}

fn run_attack(t: &Tools, kind: Kind, n: usize, attack: &mut Attack) -> Result<()> {
    match kind {
        Kind::PreloadEnv => {
            let lib = t.hook_copy(n)?;
            attack.lib = lib.display().to_string();
            let mut child = quiet(
                Command::new("/usr/bin/ssh")
                    .arg("-V")
                    .env("LD_PRELOAD", &lib),
            )
            .spawn()
            .context("ssh -V")?;
            attack.pid = child.id();
            child.wait()?;
        }
        Kind::Memfd => {
            let lib = t.hook_copy(n)?;
            attack.lib = lib.display().to_string();
            let mut child = quiet(Command::new(&t.loadlib).arg("memfd").arg(&lib))
                .spawn()
                .context("loadlib memfd")?;
            attack.pid = child.id();
            let st = child.wait()?;
            ensure!(st.success(), "loadlib memfd: {st}");
        }
        Kind::PreloadList => {
            let lib = t.hook_copy(n)?;
            attack.lib = lib.display().to_string();
            let _held = PRELOAD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
            DIRTY.store(true, Ordering::SeqCst);
            let ran = (|| -> Result<u32> {
                fs::write(PRELOAD_LIST, format!("{}\n", lib.display()))?;
                let mut child = quiet(Command::new("/usr/bin/ssh").arg("-V"))
                    .spawn()
                    .context("ssh -V")?;
                let pid = child.id();
                child.wait()?;
                Ok(pid)
            })();
            // Put back at once, whatever happened.
            let restored = restore_preload_list();
            attack.pid = ran?;
            restored?;
        }
        Kind::Ptrace => {
            let out = Command::new(&t.tamper)
                .arg("ptrace")
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .context("tamper ptrace")?;
            attack.pid = String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .context("tamper's child pid")?;
            ensure!(out.status.success(), "tamper ptrace: {}", out.status);
        }
    }
    Ok(())
}

fn judge(r: &Ran, exit: &Exit, seed: u64, minutes: u64) -> (String, Vec<String>) {
    let mut failures = Vec::new();
    let mut md = String::new();
    let mut line = |s: String| {
        md.push_str(&s);
        md.push('\n');
    };
    let alerted = r.latency.iter().filter(|l| l.is_some()).count();
    line(format!(
        "Seed {seed}; {minutes} min asked, {:.1} min of load and attacks (daemon armed to the load's end), then up to {} s for the last alerts.",
        r.wall.as_secs_f64() / 60.0,
        DRAIN.as_secs()
    ));
    line(String::new());
    line("| # | at (s) | attack | pid | must alert | alerted after |".into());
    line("| ---: | ---: | --- | ---: | --- | ---: |".into());
    for (i, (a, l)) in r.attacks.iter().zip(&r.latency).enumerate() {
        let result = match (&a.failed, l) {
            (Some(e), _) => format!("trigger failed: {e}"),
            (None, Some(s)) => format!("{:.0} ms", s * 1e3),
            (None, None) => "**no alert**".into(),
        };
        line(format!(
            "| {} | {:.1} | {} | {} | {} | {result} |",
            i + 1,
            a.at_secs,
            a.kind.label(),
            a.pid,
            a.kind.expected()
        ));
    }
    line(String::new());
    let mut per_kind: BTreeMap<Kind, (usize, usize)> = BTreeMap::new();
    for (a, l) in r.attacks.iter().zip(&r.latency) {
        let e = per_kind.entry(a.kind).or_default();
        e.0 += 1;
        e.1 += usize::from(l.is_some() && a.failed.is_none());
    }
    let max_latency = r.latency.iter().flatten().copied().fold(0.0, f64::max);
    let injected_ok = r.attacks.iter().all(|a| a.failed.is_none());
    let every_kind = Kind::ALL.iter().all(|k| per_kind.contains_key(k));
    let attacks_ok = injected_ok && every_kind && alerted == r.attacks.len();
    line("| criterion | result | verdict |".into());
    line("| --- | --- | --- |".into());
    line(format!(
        "| every injected attack alerted | {alerted} of {} ({}); slowest {:.0} ms | {} |",
        r.attacks.len(),
        per_kind
            .iter()
            .map(|(k, (n, ok))| format!("{k:?} {ok}/{n}"))
            .collect::<Vec<_>>()
            .join(", "),
        max_latency * 1e3,
        verdict(attacks_ok)
    ));
    if !attacks_ok {
        failures.push(format!(
            "{} of {} attacks alerted{}",
            alerted,
            r.attacks.len(),
            if injected_ok {
                ""
            } else {
                " (a trigger failed)"
            }
        ));
    }

    // Losses: the stats record the daemon wrote at exit against what it logged on the way.
    let stats = exit.final_stats.as_ref();
    let lost: BTreeMap<String, u64> = stats
        .and_then(|s| s["lost"].as_object())
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    let mut logged: BTreeMap<String, u64> = BTreeMap::new();
    for l in exit.log.lines() {
        // "lost N CHANNEL events (ring buffer full); T lost in total"
        let Some(rest) = l.split("lost ").nth(1) else {
            continue;
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        if let (Some(ch), Some(total)) = (
            words.get(1),
            l.rsplit_once("; ")
                .and_then(|(_, t)| t.split_whitespace().next())
                .and_then(|t| t.parse::<u64>().ok()),
        ) {
            let e = logged.entry((*ch).to_owned()).or_default();
            *e = (*e).max(total);
        }
    }
    let total_lost: u64 = lost.values().sum();
    let uncounted: Vec<String> = logged
        .iter()
        .filter(|(ch, n)| lost.get(*ch).copied().unwrap_or(0) < **n)
        .map(|(ch, n)| {
            format!(
                "{ch}: {n} logged, {} in the stats",
                lost.get(ch).copied().unwrap_or(0)
            )
        })
        .collect();
    let losses_ok = stats.is_some() && uncounted.is_empty() && (total_lost == 0 || attacks_ok);
    line(format!(
        "| kernel losses 0, or all counted in the stats record and the attacks alerted | {total_lost} lost{}{} | {} |",
        if total_lost > 0 {
            format!(
                " ({})",
                lost.iter()
                    .filter(|(_, n)| **n > 0)
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            String::new()
        },
        if stats.is_none() {
            "; no stats record at exit".to_owned()
        } else if uncounted.is_empty() {
            format!(
                "; the {} stats record agrees with the log ({} channels logged a loss)",
                if exit.status == Some(0) { "exit's" } else { "last" },
                logged.len()
            )
        } else {
            format!("; logged but not counted: {}", uncounted.join(", "))
        },
        verdict(losses_ok)
    ));
    if !losses_ok {
        failures.push(if stats.is_none() {
            "no stats record at exit".to_owned()
        } else if !uncounted.is_empty() {
            format!("losses not counted in the stats: {}", uncounted.join(", "))
        } else {
            format!("{total_lost} events lost and an attack missed")
        });
    }

    // Memory after the warm-up.
    let after: Vec<(f64, f64)> = r
        .rss
        .iter()
        .copied()
        .filter(|(t, _)| *t >= r.warmup.as_secs_f64())
        .collect();
    let first = r.rss.first().map_or(f64::NAN, |x| x.1);
    let (base, end) = (
        after.first().map_or(f64::NAN, |x| x.1),
        after.last().map_or(f64::NAN, |x| x.1),
    );
    let max_after = after.iter().map(|x| x.1).fold(0.0, f64::max);
    let growth = end - base;
    let rss_ok = after.len() >= 2 && growth < BUDGET_RSS_GROWTH_MIB;
    line(format!(
        "| RSS growth after the {} s warm-up < {BUDGET_RSS_GROWTH_MIB} MiB | {base:.1} MiB at {:.0} s → {end:.1} MiB at the end: {growth:+.1} MiB (max after warm-up {max_after:.1}; first sample {first:.1}; peak VmHWM {:.1}; {} samples, every {SAMPLE_SECS} s) | {} |",
        r.warmup.as_secs(),
        after.first().map_or(f64::NAN, |x| x.0),
        r.hwm,
        r.rss.len(),
        verdict(rss_ok)
    ));
    if !rss_ok {
        failures.push(format!(
            "RSS grew {growth:+.1} MiB after the warm-up ({base:.1} → {end:.1})"
        ));
    }

    let alive_ok = r.died_at.is_none() && exit.was_alive && exit.status == Some(0);
    line(format!(
        "| the daemon never died (one pid throughout, alive at the end, exit 0 on SIGTERM) | {}; exit {} after SIGTERM in {:.2} s | {} |",
        match r.died_at {
            Some(t) => format!("gone at {t:.0} s"),
            None if exit.was_alive => "alive at every sample and at the end".to_owned(),
            None => "gone after the last sample".to_owned(),
        },
        exit.status.map_or("by a signal".to_owned(), |c| c.to_string()),
        exit.stop_secs,
        verdict(alive_ok)
    ));
    if !alive_ok {
        failures.push(match r.died_at {
            Some(t) => format!("the daemon died at {t:.0} s"),
            None => format!("the daemon exited {:?} on SIGTERM", exit.status),
        });
    }
    line(String::new());

    let events: Vec<(String, u64)> = stats
        .and_then(|s| s["events"].as_object())
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    let total_events: u64 = events.iter().map(|e| e.1).sum();
    line(format!(
        "Events decoded ({}): {total_events} — {}; malformed {}; read errors {}; dropped {}; enrichment {}; {} stats records.",
        if exit.status == Some(0) {
            "the stats record at exit"
        } else {
            "the last stats record; none at exit"
        },
        events
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        stats.map_or("?".into(), |s| s["malformed"].to_string()),
        stats.map_or("?".into(), |s| s["read_errors"].to_string()),
        stats.map_or("?".into(), |s| s["dropped"].to_string()),
        stats.map_or("?".into(), |s| s["enrichment"].to_string()),
        exit.stats_records
    ));
    line(String::new());
    line(format!(
        "Daemon CPU (utime + stime over the load): {:.1} s in {:.0} s, {:.1}% of one CPU. Alerts written: {} ({}).",
        r.cpu.as_secs_f64(),
        r.wall.as_secs_f64(),
        100.0 * r.cpu.as_secs_f64() / r.wall.as_secs_f64().max(1.0),
        r.alerts,
        r.rules
            .iter()
            .map(|(k, v)| format!("{} {v}", if k.is_empty() { "(no rule)" } else { k }))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    line(String::new());
    line("Load (each generator in a loop, `nice -n 10`, 200 ms between batches; operations completed):".into());
    line(String::new());
    for (name, ops, failed) in &r.storms {
        line(format!(
            "- {name}: {ops}{}",
            if *failed > 0 {
                format!(" ({failed} batches failed)")
            } else {
                String::new()
            }
        ));
    }
    (md, failures)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "pass"
    } else {
        "**FAIL**"
    }
}

/// An exclusive flock held until dropped (the fd closes).
struct Lock(#[allow(dead_code)] File);

impl Lock {
    fn take(path: &str) -> Result<Lock> {
        let f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {path}"))?;
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            println!("[soak] waiting for {path} (an e2e run holds it)");
            // SAFETY: as above.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
                bail!("flock {path}: {}", std::io::Error::last_os_error());
            }
        }
        println!("[soak] holding {path}");
        Ok(Lock(f))
    }
}

/// The scratch directory, removed at the end (and by the signal thread).
struct Scratch(PathBuf);

static SCRATCH: OnceLock<PathBuf> = OnceLock::new();

impl Scratch {
    fn create() -> Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("detector-soak-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let _ = SCRATCH.set(dir.clone());
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// What /etc/ld.so.preload was before the soak.
enum Was {
    Absent,
    File {
        bytes: Vec<u8>,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Link(PathBuf),
}

static ORIGINAL: OnceLock<Was> = OnceLock::new();
/// Set while /etc/ld.so.preload may differ from ORIGINAL.
static DIRTY: AtomicBool = AtomicBool::new(false);
/// Held by whoever writes or restores /etc/ld.so.preload.
static PRELOAD_LOCK: Mutex<()> = Mutex::new(());

/// Saves /etc/ld.so.preload; puts it back when dropped if an attack left it changed.
struct PreloadGuard;

impl PreloadGuard {
    fn save() -> Result<PreloadGuard> {
        let path = Path::new(PRELOAD_LIST);
        let was = match fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Was::Absent,
            Err(e) => bail!("{PRELOAD_LIST}: {e}"),
            Ok(m) if m.file_type().is_symlink() => Was::Link(fs::read_link(path)?),
            Ok(m) => Was::File {
                bytes: fs::read(path)?,
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
            },
        };
        println!(
            "[soak] {PRELOAD_LIST} saved ({})",
            match &was {
                Was::Absent => "absent".to_owned(),
                Was::File { bytes, .. } => format!("{} bytes", bytes.len()),
                Was::Link(t) => format!("a link to {}", t.display()),
            }
        );
        let _ = ORIGINAL.set(was);
        Ok(PreloadGuard)
    }
}

impl Drop for PreloadGuard {
    fn drop(&mut self) {
        let _held = PRELOAD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        if DIRTY.load(Ordering::SeqCst) {
            if let Err(e) = restore_preload_list() {
                eprintln!("[soak] could not restore {PRELOAD_LIST}: {e:#}");
            }
        }
    }
}

/// Puts /etc/ld.so.preload back as saved: a sibling written and renamed over it (a file), a
/// link made and renamed over it, or the file removed. The caller holds PRELOAD_LOCK.
fn restore_preload_list() -> Result<()> {
    let Some(was) = ORIGINAL.get() else {
        return Ok(());
    };
    let path = Path::new(PRELOAD_LIST);
    let side = PathBuf::from(format!(
        "{PRELOAD_LIST}.detector-soak-{}",
        std::process::id()
    ));
    let _ = fs::remove_file(&side);
    match was {
        Was::Absent => match fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        },
        Was::Link(target) => {
            std::os::unix::fs::symlink(target, &side)?;
            fs::rename(&side, path)?;
        }
        Was::File {
            bytes,
            mode,
            uid,
            gid,
        } => {
            fs::write(&side, bytes)?;
            std::os::unix::fs::chown(&side, Some(*uid), Some(*gid))?;
            fs::set_permissions(&side, fs::Permissions::from_mode(*mode))?;
            fs::rename(&side, path)?;
        }
    }
    DIRTY.store(false, Ordering::SeqCst);
    Ok(())
}

const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// The write end of the pipe the signal handler writes the signal's number to.
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    let byte = sig as u8;
    // SAFETY: write(2) is async-signal-safe; a one-byte buffer of our own.
    unsafe {
        libc::write(
            SIGNAL_PIPE.load(Ordering::Relaxed),
            (&byte as *const u8).cast(),
            1,
        )
    };
}

/// Handles SIGINT, SIGTERM and SIGHUP: the handler writes to a pipe, a thread reads it,
/// restores /etc/ld.so.preload, stops the daemon, removes the scratch directory and exits 130.
/// (Handlers, unlike a blocked mask, are not inherited across exec: the daemon and the load
/// keep the default dispositions and an empty mask.)
fn handle_signals() -> Result<()> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two fds.
    ensure!(
        unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == 0,
        "pipe2: {}",
        std::io::Error::last_os_error()
    );
    SIGNAL_PIPE.store(fds[1], Ordering::SeqCst);
    for sig in SIGNALS {
        // SAFETY: a zeroed sigaction with a handler that only calls write(2).
        let rc = unsafe {
            let mut sa = std::mem::zeroed::<libc::sigaction>();
            sa.sa_sigaction = on_signal as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = libc::SA_RESTART;
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        ensure!(rc == 0, "sigaction: {}", std::io::Error::last_os_error());
    }
    let read_end = fds[0];
    thread::spawn(move || {
        let mut byte = 0u8;
        // SAFETY: reads one byte into our buffer from our pipe.
        while unsafe { libc::read(read_end, (&mut byte as *mut u8).cast(), 1) } != 1 {}
        eprintln!("[soak] signal {byte}: restoring {PRELOAD_LIST}, stopping the daemon");
        {
            let _held = PRELOAD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = restore_preload_list() {
                eprintln!("[soak] could not restore {PRELOAD_LIST}: {e:#}");
            }
        }
        let pid = DAEMON_PID.load(Ordering::SeqCst);
        if pid != 0 {
            // SAFETY: kill(2) on the daemon, our child.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            thread::sleep(Duration::from_secs(3));
        }
        if let Some(dir) = SCRATCH.get() {
            let _ = fs::remove_dir_all(dir);
        }
        std::process::exit(130);
    });
    Ok(())
}
