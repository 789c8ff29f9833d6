//! The workload half of `cargo xtask bench`: what the detector costs the machine it watches,
//! against the same workloads without it and with two peers, and whether it meets its budgets.
//!
//! Workloads (a small C helper, `bench_load`): exec storms (posix_spawn of a static binary and of
//! /bin/true, two spawners at once, the highest exec rate this machine sustains), a dlopen/mmap
//! storm (dlopen + dlclose of libm) and an open storm. Each runs without the detector and with it,
//! alternating, `ROUNDS` times in one run, so the ratio holds on a noisy machine; the exec storm
//! of /bin/true also runs under a bpftrace script doing the same capture and under auditd with an
//! execve rule. Then the detection latency (exec to alert line), the delay of a credential
//! process's alert under a flood of large preloads, and the daemon's memory after
//! 100k short-lived processes.
use std::{
    collections::HashMap,
    fs::{self, File},
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, ensure, Context as _, Result};

pub const ROUNDS: usize = 9;
/// Seconds the daemon is left alone after it is armed (its start-up sweep hashes libraries).
pub const SETTLE: Duration = Duration::from_secs(2);

/// Budgets on the reference machine (2 cores).
pub const BUDGET_OVERHEAD: f64 = 0.03;
/// The system library the LD_PRELOAD workloads preload (Debian's multiarch path).
pub const SYSTEM_LIBM: &str = "/usr/lib/x86_64-linux-gnu/libm.so.6";
pub const BUDGET_CPU_US_PER_EXEC: f64 = 10.0;
pub const BUDGET_RSS_MIB: f64 = 32.0;
pub const BUDGET_P99_MS: f64 = 20.0;
/// Under a flood of large preloads: a credential process's alert within this, and the daemon's
/// peak memory under this.
pub const BUDGET_FLOOD_DELAY_MS: f64 = 1000.0;
pub const BUDGET_FLOOD_HWM_MIB: f64 = 64.0;

const HELPER_C: &str = r#"#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static long long now(clockid_t c) {
    struct timespec t;
    clock_gettime(c, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* bench_load spawn|spawn-preload|latency|dlopen|open N WHAT [INTERVAL_US]
 *   spawn    posix_spawn WHAT N times, one after the other
 *   spawn-preload  the same with LD_PRELOAD=$BENCH_CHILD_PRELOAD for the children
 *   latency  the same with LD_PRELOAD=$BENCH_CHILD_PRELOAD for the children, INTERVAL_US apart,
 *            printing "pid realtime_ns" for each spawn
 *   dlopen   dlopen + dlclose WHAT N times
 *   open     open + close WHAT N times
 * Prints "elapsed_ns N" and "cpu_us N" (its own and its children's CPU) at the end. */
int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: bench_load spawn|spawn-preload|latency|dlopen|open N WHAT [INTERVAL_US]\n");
        return 2;
    }
    const char *mode = argv[1], *what = argv[3];
    long n = atol(argv[2]), interval = argc > 4 ? atol(argv[4]) : 0;
    int latency = strcmp(mode, "latency") == 0;
    int preload = latency || strcmp(mode, "spawn-preload") == 0;
    long long t0 = now(CLOCK_MONOTONIC);
    if (preload || strcmp(mode, "spawn") == 0) {
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
        char *args[] = {(char *)what, NULL};
        char **env = environ;
        if (preload) {
            int k = 0;
            while (environ[k]) k++;
            env = calloc(k + 2, sizeof(char *));
            memcpy(env, environ, k * sizeof(char *));
            const char *lib = getenv("BENCH_CHILD_PRELOAD");
            char *pre = malloc(strlen(lib ? lib : "") + 12);
            sprintf(pre, "LD_PRELOAD=%s", lib ? lib : "");
            env[k] = pre;
        }
        for (long i = 0; i < n; i++) {
            pid_t pid;
            long long t = now(CLOCK_REALTIME);
            if (posix_spawn(&pid, what, &fa, NULL, args, env) != 0) { perror("posix_spawn"); return 1; }
            int st;
            if (waitpid(pid, &st, 0) < 0) { perror("waitpid"); return 1; }
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                fprintf(stderr, "%s failed (status %d)\n", what, st);
                return 1;
            }
            if (latency) printf("%d %lld\n", pid, t);
            if (interval) usleep(interval);
        }
    } else if (strcmp(mode, "dlopen") == 0) {
        for (long i = 0; i < n; i++) {
            void *h = dlopen(what, RTLD_NOW | RTLD_LOCAL);
            if (!h) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 1; }
            dlclose(h);
        }
    } else if (strcmp(mode, "open") == 0) {
        for (long i = 0; i < n; i++) {
            int fd = open(what, O_RDONLY);
            if (fd < 0) { perror(what); return 1; }
            close(fd);
        }
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    printf("elapsed_ns %lld\n", now(CLOCK_MONOTONIC) - t0);
    /* CPU of this process and its children, user + system (BPF programs run as system time of
     * the process they trace). */
    struct rusage self, kids;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &kids);
    long long us = (self.ru_utime.tv_sec + self.ru_stime.tv_sec + kids.ru_utime.tv_sec + kids.ru_stime.tv_sec) * 1000000LL
        + self.ru_utime.tv_usec + self.ru_stime.tv_usec + kids.ru_utime.tv_usec + kids.ru_stime.tv_usec;
    printf("cpu_us %lld\n", us);
    return 0;
}
"#;

/// A bpftrace script doing the detector's core capture: the new image's environment at exec
/// (the first 64 strings: bpftrace cannot loop over all of them) and executable file mappings.
const BPFTRACE_SCRIPT: &str = r#"
tracepoint:syscalls:sys_enter_execve {
  $e = args->envp;
  $i = 0;
  unroll(64) {
    $p = *($e + $i * 8);
    if ($p != 0) { @env[tid] = str($p); }
    $i++;
  }
  delete(@env[tid]);
  printf("exec %d %s\n", pid, str(args->filename));
}
tracepoint:syscalls:sys_enter_mmap /(args->prot & 4) && (int64)args->fd >= 0/ {
  printf("mmap %d %d\n", pid, args->fd);
}
"#;

/// One workload: `workers` copies of the helper at once.
#[derive(Clone)]
pub struct Workload {
    pub name: &'static str,
    pub mode: &'static str,
    pub what: String,
    pub per_worker: u64,
    pub workers: u64,
    /// What one operation is, for the per-operation figures.
    pub unit: &'static str,
}

impl Workload {
    pub fn ops(&self) -> u64 {
        self.per_worker * self.workers
    }
    /// An exec storm without loader variables: the 3 % budget's workloads.
    pub fn is_exec(&self) -> bool {
        self.mode == "spawn"
    }
}

pub struct Tools {
    pub helper: PathBuf,
    pub static_bin: PathBuf,
    pub dir: PathBuf,
}

pub fn compile(dir: &Path) -> Result<Tools> {
    let src = dir.join("bench_load.c");
    fs::write(&src, HELPER_C)?;
    let helper = dir.join("bench_load");
    gcc(&["-O2", "-o"], &helper, &src, &["-ldl"])?;
    let tsrc = dir.join("static_true.c");
    fs::write(&tsrc, "int main(void) { return 0; }\n")?;
    let static_bin = dir.join("static_true");
    gcc(&["-O2", "-static", "-o"], &static_bin, &tsrc, &[])?;
    Ok(Tools {
        helper,
        static_bin,
        dir: dir.to_path_buf(),
    })
}

fn gcc(flags: &[&str], out: &Path, src: &Path, libs: &[&str]) -> Result<()> {
    let st = Command::new("gcc")
        .args(flags)
        .arg(out)
        .arg(src)
        .args(libs)
        .status()
        .context("running gcc")?;
    ensure!(st.success(), "gcc failed on {}", src.display());
    Ok(())
}

pub fn workloads(t: &Tools) -> Vec<Workload> {
    vec![
        Workload {
            name: "exec storm, static binary",
            mode: "spawn",
            what: t.static_bin.display().to_string(),
            per_worker: 3000,
            workers: 2,
            unit: "exec",
        },
        Workload {
            name: "exec storm, /bin/true",
            mode: "spawn",
            what: "/bin/true".into(),
            per_worker: 1500,
            workers: 2,
            unit: "exec",
        },
        Workload {
            name: "exec storm, /bin/true with LD_PRELOAD of libm",
            mode: "spawn-preload",
            what: "/bin/true".into(),
            per_worker: 1500,
            workers: 2,
            unit: "exec",
        },
        Workload {
            name: "dlopen/mmap storm (libm)",
            mode: "dlopen",
            what: "libm.so.6".into(),
            per_worker: 15000,
            workers: 1,
            unit: "dlopen",
        },
        Workload {
            name: "open storm (/etc/hostname)",
            mode: "open",
            what: "/etc/hostname".into(),
            per_worker: 150000,
            workers: 1,
            unit: "open",
        },
    ]
}

/// What one run of a workload took: wall time, and CPU time of the spawners and everything
/// they started (user + system; the detector's programs run as system time of the processes
/// they trace).
#[derive(Clone, Copy, Default)]
pub struct Took {
    pub wall: f64,
    pub cpu: f64,
}

/// Runs `w` (all workers at once).
pub fn run_workload(t: &Tools, w: &Workload) -> Result<Took> {
    let start = Instant::now();
    let children: Vec<Child> = (0..w.workers)
        .map(|_| {
            Command::new(&t.helper)
                .args([w.mode, &w.per_worker.to_string(), &w.what])
                .env_clear()
                .envs(typical_env())
                .env("BENCH_CHILD_PRELOAD", SYSTEM_LIBM)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .context("starting the load helper")
        })
        .collect::<Result<_>>()?;
    let mut cpu_us = 0.0;
    for c in children {
        let out = c.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "{} failed: {}",
                w.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        cpu_us += String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("cpu_us "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
    }
    Ok(Took {
        wall: start.elapsed().as_secs_f64(),
        cpu: cpu_us / 1e6,
    })
}

/// A realistic environment (20 variables) for every spawned program.
fn typical_env() -> Vec<(String, String)> {
    let mut env = vec![
        ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
        ("HOME".into(), "/root".into()),
        ("LANG".into(), "C.UTF-8".into()),
        ("TERM".into(), "xterm-256color".into()),
    ];
    env.extend((0..16).map(|i| (format!("BENCH_VAR{i:02}"), "v".repeat(20 + i))));
    env
}

/// CPU time of a process so far: (from /proc/<pid>/stat utime+stime, from /proc/<pid>/schedstat).
pub fn cpu(pid: u32) -> Result<(Duration, Duration)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let from_stat = Duration::from_nanos(ticks * 1_000_000_000 / hz);
    let sched = fs::read_to_string(format!("/proc/{pid}/schedstat")).unwrap_or_default();
    let ns: u64 = sched
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok((from_stat, Duration::from_nanos(ns)))
}

/// VmRSS and VmHWM in MiB.
pub fn memory(pid: u32) -> Result<(f64, f64)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok((kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0))
}

pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

/// Median of the per-round ratios b[i] / a[i], minus one: an overhead that a drift of the
/// machine's speed over the run does not bias (each pair runs back to back).
pub fn paired_overhead(a: &[f64], b: &[f64]) -> f64 {
    let mut r: Vec<f64> = a.iter().zip(b).map(|(x, y)| y / x).collect();
    median(&mut r) - 1.0
}

/// A distribution-free ~95 % confidence interval of the median of the per-round ratios
/// b[i] / a[i] (order statistics k and n-1-k with k = ⌊n/2 − 0.98·√n⌋), minus one.
pub fn paired_overhead_ci(a: &[f64], b: &[f64]) -> (f64, f64) {
    let mut r: Vec<f64> = a.iter().zip(b).map(|(x, y)| y / x).collect();
    r.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    if r.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = r.len() as f64;
    let k = (n / 2.0 - 0.98 * n.sqrt()).floor().max(0.0) as usize;
    (r[k] - 1.0, r[r.len() - 1 - k] - 1.0)
}

pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

/// Detection latency: `n` execs of /bin/true, `interval` apart, each with LD_PRELOAD of a system
/// library (a low alert each; the daemon runs with aggregation off). Latency = the alert line
/// read from the daemon's stdout minus the posix_spawn call. Returns the latencies in ms and
/// how many execs had no alert.
pub fn latency(t: &Tools, daemon_bin: &Path, lib: &str, n: u64) -> Result<(Vec<f64>, u64)> {
    let lib_owned = lib.to_owned();
    let daemon = TimedDaemon::start(
        t,
        daemon_bin,
        "latency",
        "[thresholds]\naggregate_window_secs = 0\nstats_interval_secs = 0\n",
        move |v| v["library"]["path"] == lib_owned.as_str(),
    )?;
    let out = Command::new(&t.helper)
        .args(["latency", &n.to_string(), "/bin/true", "2000"])
        .env_clear()
        .envs(typical_env())
        .env("BENCH_CHILD_PRELOAD", lib)
        .output()?;
    ensure!(
        out.status.success(),
        "latency helper: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    thread::sleep(Duration::from_millis(500));
    let arrivals = daemon.stop()?;
    let spawned: HashMap<u32, u128> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (pid, t) = l.split_once(' ')?;
            Some((pid.parse().ok()?, t.parse().ok()?))
        })
        .collect();
    let mut lat = Vec::new();
    for (pid, at) in arrivals {
        if let Some(t0) = spawned.get(&pid) {
            lat.push((epoch_ns(at).saturating_sub(*t0)) as f64 / 1e6);
        }
    }
    let missing = (spawned.len() as u64).saturating_sub(lat.len() as u64);
    Ok((lat, missing))
}

fn epoch_ns(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// A daemon whose alert lines that match a predicate are timed as they are read: (pid, arrival).
struct TimedDaemon {
    daemon: Child,
    reader: thread::JoinHandle<()>,
    arrivals: Arc<Mutex<Vec<(u32, SystemTime)>>>,
}

impl TimedDaemon {
    /// Starts `detector run` with `config` (files named after `name` in the bench's directory)
    /// and waits until it is armed.
    fn start(
        t: &Tools,
        daemon_bin: &Path,
        name: &str,
        config: &str,
        wanted: impl Fn(&serde_json::Value) -> bool + Send + 'static,
    ) -> Result<Self> {
        let cfg = t.dir.join(format!("{name}.toml"));
        fs::write(&cfg, config)?;
        let ready = t.dir.join(format!("{name}.ready"));
        let _ = fs::remove_file(&ready);
        let mut daemon = Command::new(daemon_bin)
            .args(["run", "--config"])
            .arg(&cfg)
            .arg("--ready-file")
            .arg(&ready)
            .stdout(Stdio::piped())
            .stderr(File::create(t.dir.join(format!("{name}.stderr")))?)
            .spawn()?;
        let arrivals: Arc<Mutex<Vec<(u32, SystemTime)>>> = Arc::default();
        let out = daemon.stdout.take().context("daemon stdout")?;
        let a = arrivals.clone();
        let reader = thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let at = SystemTime::now();
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if wanted(&v) {
                    if let Some(pid) = v["process"]["pid"].as_u64() {
                        a.lock().unwrap().push((pid as u32, at));
                    }
                }
            }
        });
        let start = Instant::now();
        while !ready.exists() {
            ensure!(
                start.elapsed() < Duration::from_secs(30),
                "detector not armed"
            );
            thread::sleep(Duration::from_millis(20));
        }
        Ok(TimedDaemon {
            daemon,
            reader,
            arrivals,
        })
    }

    fn arrival(&self, pid: u32) -> Option<SystemTime> {
        let arrivals = self.arrivals.lock().unwrap();
        arrivals.iter().find(|(p, _)| *p == pid).map(|(_, at)| *at)
    }

    /// SIGTERM, then every arrival.
    fn stop(mut self) -> Result<Vec<(u32, SystemTime)>> {
        // SAFETY: kill(2) on our child.
        unsafe { libc::kill(self.daemon.id() as i32, libc::SIGTERM) };
        self.daemon.wait()?;
        let _ = self.reader.join();
        let arrivals = std::mem::take(&mut *self.arrivals.lock().unwrap());
        Ok(arrivals)
    }
}

/// What a flood of large preloads does to the daemon.
pub struct Flood {
    /// Per round: ssh -V spawned → its alert line read, in ms.
    pub delays: Vec<f64>,
    /// Peak RSS (VmHWM) over the whole run, MiB.
    pub hwm: f64,
    pub files: usize,
    pub file_mib: u64,
}

/// `rounds` times: `files` distinct sparse files of `file_mib` MiB, each preloaded into a
/// short-lived /bin/true, then `lib` preloaded into `ssh -V`. The daemon hashes every file (its
/// budget raised above their size: the worst case); the ssh alert must not wait for that.
pub fn flood(
    t: &Tools,
    daemon_bin: &Path,
    lib: &str,
    rounds: usize,
    files: usize,
    file_mib: u64,
) -> Result<Flood> {
    let lib_owned = lib.to_owned();
    let daemon = TimedDaemon::start(
        t,
        daemon_bin,
        "flood",
        "[thresholds]\naggregate_window_secs = 0\nstats_interval_secs = 0\n[enrichment]\nhash_budget_mib = 4096\n",
        move |v| v["library"]["path"] == lib_owned.as_str() && v["process"]["name"] == "ssh",
    )?;
    thread::sleep(SETTLE);
    let mut delays = Vec::new();
    for round in 0..rounds {
        let dir = t.dir.join(format!("flood-{round}"));
        fs::create_dir_all(&dir)?;
        for i in 0..files {
            let f = File::create(dir.join(format!("big{i}.so")))?;
            f.set_len(file_mib * 1024 * 1024)?;
        }
        for i in 0..files {
            Command::new("/bin/true")
                .env("LD_PRELOAD", dir.join(format!("big{i}.so")))
                .stderr(Stdio::null())
                .status()?;
        }
        let t0 = SystemTime::now();
        let child = Command::new("/usr/bin/ssh")
            .arg("-V")
            .env("LD_PRELOAD", lib)
            .stderr(Stdio::null())
            .spawn()?;
        let pid = child.id();
        let _ = child.wait_with_output();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(at) = daemon.arrival(pid) {
                let delay = at.duration_since(t0).unwrap_or_default();
                delays.push(delay.as_secs_f64() * 1e3);
                break;
            }
            if Instant::now() > deadline {
                delays.push(f64::INFINITY);
                break;
            }
            thread::sleep(Duration::from_millis(1));
        }
        // Let the pool read what is left of this round before the next.
        thread::sleep(Duration::from_secs(5));
        fs::remove_dir_all(&dir)?;
    }
    let (_, hwm) = memory(daemon.daemon.id())?;
    daemon.stop()?;
    Ok(Flood {
        delays,
        hwm,
        files,
        file_mib,
    })
}

/// A peer capture running while a workload runs.
pub enum Peer {
    Bpftrace(Child),
    /// auditd, and whether the kernel's audit was enabled before it (auditd enables it and
    /// leaves it so, which would tax every later syscall of the machine).
    Auditd(Child, bool),
}

impl Peer {
    pub fn bpftrace(dir: &Path) -> Result<Peer> {
        Self::bpftrace_script(dir, BPFTRACE_SCRIPT)
    }

    /// An empty program on a syscall nobody calls: what turning syscall tracing on costs every
    /// other syscall by itself (the kernel then sends every syscall of every process through its
    /// tracing entry and exit path), with no program of ours running.
    pub fn syscall_tracing_alone(dir: &Path) -> Result<Peer> {
        Self::empty_program_on(dir, "syscalls:sys_enter_swapon")
    }

    /// An empty bpftrace program on a classic tracepoint.
    pub fn empty_program_on(dir: &Path, tracepoint: &str) -> Result<Peer> {
        Self::bpftrace_script(dir, &format!("tracepoint:{tracepoint} {{ }}\n"))
    }

    fn bpftrace_script(dir: &Path, text: &str) -> Result<Peer> {
        let script = dir.join("capture.bt");
        fs::write(&script, text)?;
        let log = dir.join("bpftrace.out");
        let mut child = Command::new("bpftrace")
            .arg("-o")
            .arg(&log)
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(dir.join("bpftrace.err"))?)
            .spawn()
            .context("starting bpftrace")?;
        // It prints "Attaching N probes..." once attached.
        let start = Instant::now();
        loop {
            if fs::read_to_string(&log).is_ok_and(|s| s.contains("Attaching")) {
                thread::sleep(Duration::from_millis(300));
                return Ok(Peer::Bpftrace(child));
            }
            if let Some(st) = child.try_wait()? {
                return Err(exited("bpftrace", st, &dir.join("bpftrace.err")));
            }
            ensure!(
                start.elapsed() < Duration::from_secs(60),
                "bpftrace did not attach"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn auditd(dir: &Path) -> Result<Peer> {
        let conf = dir.join("auditd.conf");
        let log = dir.join("audit.log");
        // The package's configuration with the log in our directory (auditd refuses a minimal
        // one, and says why only to syslog).
        let stock =
            fs::read_to_string("/etc/audit/auditd.conf").context("/etc/audit/auditd.conf")?;
        let ours: String = stock
            .lines()
            .map(|l| {
                if l.starts_with("log_file ") {
                    format!("log_file = {}\n", log.display())
                } else if l.starts_with("max_log_file ") {
                    "max_log_file = 256\n".to_owned()
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        fs::write(&conf, ours)?;
        fs::set_permissions(&conf, std::os::unix::fs::PermissionsExt::from_mode(0o640))?;
        File::create(&log)?;
        let status = Command::new("auditctl").arg("-s").output()?;
        let was_enabled = !String::from_utf8_lossy(&status.stdout)
            .lines()
            .any(|l| l.trim() == "enabled 0");
        let mut child = Command::new("auditd")
            .arg("-n")
            .arg("-c")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(dir.join("auditd.err"))?)
            .spawn()
            .context("starting auditd")?;
        thread::sleep(Duration::from_secs(1));
        if let Some(st) = child.try_wait()? {
            return Err(exited("auditd", st, &dir.join("auditd.err")));
        }
        let peer = Peer::Auditd(child, was_enabled);
        let st = Command::new("auditctl")
            .args([
                "-a",
                "always,exit",
                "-F",
                "arch=b64",
                "-S",
                "execve",
                "-k",
                "detector-bench",
            ])
            .stdout(Stdio::null())
            .status()?;
        ensure!(st.success(), "auditctl could not add the execve rule");
        Ok(peer)
    }

    /// The peer's CPU so far (for auditd, with the kernel's kauditd thread).
    pub fn cpu(&self) -> Duration {
        match self {
            Peer::Bpftrace(c) => cpu(c.id()).map(|c| c.1).unwrap_or_default(),
            Peer::Auditd(c, _) => {
                let own = cpu(c.id()).map(|c| c.1).unwrap_or_default();
                own + kauditd_pid()
                    .and_then(|p| cpu(p).ok())
                    .map(|c| c.1)
                    .unwrap_or_default()
            }
        }
    }

    pub fn stop(self) {
        match self {
            Peer::Bpftrace(mut c) => {
                // SAFETY: kill(2) on our child.
                unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
                let _ = c.wait();
            }
            Peer::Auditd(mut c, was_enabled) => {
                let _ = Command::new("auditctl")
                    .args(["-D", "-k", "detector-bench"])
                    .stdout(Stdio::null())
                    .status();
                // SAFETY: kill(2) on our child.
                unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
                let _ = c.wait();
                if !was_enabled {
                    let _ = Command::new("auditctl")
                        .args(["-e", "0"])
                        .stdout(Stdio::null())
                        .status();
                }
            }
        }
    }
}

/// A peer that stopped before it was ready, with what it said on stderr.
fn exited(name: &str, status: std::process::ExitStatus, stderr: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "{name} exited ({status}): {}",
        fs::read_to_string(stderr).unwrap_or_default().trim()
    )
}

fn kauditd_pid() -> Option<u32> {
    fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        (fs::read_to_string(format!("/proc/{pid}/comm")).ok()?.trim() == "kauditd").then_some(pid)
    })
}
