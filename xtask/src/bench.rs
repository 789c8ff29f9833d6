//! `cargo xtask bench`: the in-kernel cost of detector's eBPF programs.
//!
//! Starts `target/release/detector run`, finds its programs through its own file descriptors
//! (`/proc/<pid>/fdinfo` names each one's tracepoints, so `sched_process_exec` and
//! `sched_process_exit`, both `sched_process_e` to the kernel, stay apart), turns on the
//! kernel's BPF run-time statistics, and reads each program's cumulative run time and run
//! count before and after a batch of execs. A small C helper forks and execs `/usr/bin/true`
//! N times with exactly the environment under test. Two batches run with the daemon stopped,
//! which takes the ring buffer's reader wake-ups out of the numbers. Prints a markdown table
//! on stdout; BENCHMARKS.md explains the scenarios and records a run.
use std::{
    collections::BTreeMap,
    fs::{self, File},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _, Result};
use aya::{
    programs::loaded_programs,
    sys::{enable_stats, Stats},
};

/// `bench_exec N ENTRY... -- PROGRAM ARG...`: fork and execve PROGRAM N times, one at a time,
/// with exactly the given environment ("@pad:N" becomes PADDING=<N bytes>); the children's
/// output goes to /dev/null.
const HELPER_C: &str = r#"#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    char **envp = calloc(argc + 1, sizeof(char *));
    int n = 0, i = 2;
    for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strncmp(argv[i], "@pad:", 5) == 0) {
            size_t len = strtoul(argv[i] + 5, NULL, 10);
            char *s = malloc(len + 9);
            memcpy(s, "PADDING=", 8);
            memset(s + 8, 'x', len);
            s[len + 8] = 0;
            envp[n++] = s;
        } else {
            envp[n++] = argv[i];
        }
    }
    if (argc < 2 || i + 1 >= argc) {
        fprintf(stderr, "usage: bench_exec N ENTRY... -- PROGRAM ARG...\n");
        return 2;
    }
    int null = open("/dev/null", O_WRONLY);
    long runs = strtol(argv[1], NULL, 10);
    for (long k = 0; k < runs; k++) {
        pid_t pid = fork();
        if (pid < 0) { perror("fork"); return 1; }
        if (pid == 0) {
            dup2(null, 1);
            dup2(null, 2);
            execve(argv[i + 1], argv + i + 1, envp);
            _exit(127);
        }
        int status;
        if (waitpid(pid, &status, 0) < 0) { perror("waitpid"); return 1; }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "run %ld of %s failed (status %d)\n", k, argv[i + 1], status);
            return 1;
        }
    }
    return 0;
}
"#;

const TARGET: &str = "/usr/bin/true";
const EXEC_PROG: &str = "sched_process_exec";
const MMAP_PROG: &str = "sys_enter_mmap";
const FORK_PROG: &str = "sched_process_fork";
const EXIT_PROG: &str = "sched_process_exit";

/// A batch of execs and the programs to report on.
struct Scenario<'a> {
    label: &'a str,
    execs: u64,
    env: &'a [String],
    programs: &'a [&'a str],
    /// Stop the daemon meanwhile (SIGSTOP): with no reader, the programs' ring-buffer submits
    /// send no wake-ups, whose cost then shows as the difference to the same execs unpaused.
    paused: bool,
}

/// One of the daemon's programs: kernel name (15 chars at most) and attached tracepoints.
struct Prog {
    name: String,
    tracepoints: Vec<String>,
}

/// Cumulative (run time, run count) per program id.
type Counters = BTreeMap<u32, (Duration, u64)>;

pub fn run(root: &Path) -> Result<()> {
    super::build()?;
    let tmp = TempDir::create()?;
    let helper = compile_helper(&tmp.0)?;
    // Held for the whole run; the kernel turns the statistics off again when it is closed,
    // however this process ends (the bpf_stats_enabled sysctl is left alone).
    let _stats = enable_stats(Stats::RunTime).context("enabling BPF run-time statistics")?;
    let mut daemon = Daemon::start(&root.join("target/release/detector"), &tmp.0)?;
    let progs = daemon_programs(daemon.child.id())?;
    ensure!(
        !progs.is_empty(),
        "no eBPF programs found among detector's file descriptors"
    );
    let typical: Vec<String> = (0..50)
        .map(|i| format!("VAR{i:02}={}", "v".repeat(14 + i % 20)))
        .collect();
    let mut preload = typical.clone();
    preload.push("LD_PRELOAD=/nonexistent-bench.so".into());
    let large = vec!["@pad:1024".to_string(); 200];
    let scenarios = [
        Scenario {
            label: "a. exec, 50 env vars",
            execs: 2000,
            env: &typical,
            programs: &[EXEC_PROG, FORK_PROG, EXIT_PROG, MMAP_PROG],
            paused: false,
        },
        Scenario {
            label: "b. exec, 200 x 1 KiB env vars",
            execs: 500,
            env: &large,
            programs: &[EXEC_PROG],
            paused: false,
        },
        Scenario {
            label: "c. exec, 50 env vars + LD_PRELOAD",
            execs: 1000,
            env: &preload,
            programs: &[EXEC_PROG],
            paused: false,
        },
        Scenario {
            label: "e. as a, daemon stopped",
            execs: 2000,
            env: &typical,
            programs: &[EXEC_PROG, FORK_PROG, EXIT_PROG],
            paused: true,
        },
        Scenario {
            label: "f. exec, empty env, daemon stopped",
            execs: 2000,
            env: &[],
            programs: &[EXEC_PROG],
            paused: true,
        },
    ];

    exec_batch(&helper, 100, &typical)?; // warm-up: page cache, seen-cache, ring buffer
    let mut rows = Vec::new();
    let all = format!("all {} programs, per exec", progs.len());
    for s in scenarios {
        let before = snapshot(&progs)?;
        if s.paused {
            daemon.signal(libc::SIGSTOP)?;
        }
        let ran = exec_batch(&helper, s.execs, s.env);
        if s.paused {
            daemon.signal(libc::SIGCONT)?;
        }
        ran?;
        let after = snapshot(&progs)?;
        let delta = |id: u32| {
            let (t0, c0) = before.get(&id).copied().unwrap_or_default();
            let (t1, c1) = after.get(&id).copied().unwrap_or_default();
            (t1.saturating_sub(t0), c1.saturating_sub(c0))
        };
        for &tp in s.programs {
            let (time, runs) = delta(find(&progs, tp)?);
            ensure!(
                runs > 0,
                "{tp} never ran during {}: are BPF run-time statistics working?",
                s.label
            );
            // Scenario d is a's sys_enter_mmap row: ld.so maps libc with PROT_EXEC.
            let row = if tp == MMAP_PROG {
                "d. mmap, during a"
            } else {
                s.label
            };
            rows.push((row, tp, runs, avg(time, runs)));
        }
        let total: Duration = progs.keys().map(|&id| delta(id).0).sum();
        let total_runs: u64 = progs.keys().map(|&id| delta(id).1).sum();
        rows.push((s.label, &all, total_runs, avg(total, s.execs)));
    }

    let status = fs::read_to_string(format!("/proc/{}/status", daemon.child.id()))
        .context("reading the daemon's /proc status")?;
    let memory: Vec<String> = ["VmRSS:", "VmHWM:"]
        .iter()
        .filter_map(|key| status.lines().find(|l| l.starts_with(key)))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    daemon.stop()?;
    let log = fs::read_to_string(&daemon.stderr).unwrap_or_default();
    let alerts = fs::read_to_string(tmp.0.join("stdout")).map_or(0, |s| s.lines().count());

    println!("| scenario | program | runs | avg ns/run |");
    println!("| --- | --- | ---: | ---: |");
    for (scenario, prog, runs, ns) in rows {
        println!("| {scenario} | {prog} | {runs} | {ns} |");
    }
    println!();
    println!("Daemon memory at the end: {}", memory.join(", "));
    println!("Alerts written by the daemon: {alerts}");
    println!("Event loss reported by the daemon at exit:");
    for line in log.lines().filter(|l| l.contains(" lost")) {
        println!("    {}", line.trim());
    }
    Ok(())
}

fn avg(time: Duration, runs: u64) -> u128 {
    time.as_nanos() / u128::from(runs.max(1))
}

fn compile_helper(dir: &Path) -> Result<PathBuf> {
    let src = dir.join("bench_exec.c");
    let bin = dir.join("bench_exec");
    fs::write(&src, HELPER_C).context("writing the exec helper")?;
    let status = Command::new("gcc")
        .args(["-O2", "-o"])
        .args([&bin, &src])
        .status()
        .context("running gcc")?;
    ensure!(status.success(), "gcc failed on the exec helper");
    Ok(bin)
}

/// Runs `n` execs of [`TARGET`] with exactly `env` (the helper's own exec has an empty one).
fn exec_batch(helper: &Path, n: u64, env: &[String]) -> Result<()> {
    let out = Command::new(helper)
        .arg(n.to_string())
        .args(env)
        .args(["--", TARGET])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .context("running the exec helper")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!("exec helper failed: {}", err.trim());
    }
    Ok(())
}

/// The programs that `pid` holds, by id: every fd whose fdinfo has a `prog_id` (programs and
/// their links; recent kernels also name a link's tracepoint, `tp_name`).
fn daemon_programs(pid: u32) -> Result<BTreeMap<u32, Prog>> {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut attached: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for entry in fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let Ok(text) = fs::read_to_string(entry?.path()) else {
            continue;
        };
        let Some(id) = field(&text, "prog_id:").and_then(|v| v.parse().ok()) else {
            continue;
        };
        let tracepoints = attached.entry(id).or_default();
        tracepoints.extend(field(&text, "tp_name:").map(str::to_string));
    }
    let mut progs = BTreeMap::new();
    for info in loaded_programs().flatten() {
        if let Some(tracepoints) = attached.remove(&info.id()) {
            let name = info.name_as_str().unwrap_or("?").to_string();
            progs.insert(info.id(), Prog { name, tracepoints });
        }
    }
    ensure!(
        attached.is_empty(),
        "programs {:?} of the daemon are not among the loaded programs",
        attached.keys()
    );
    Ok(progs)
}

fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
}

/// The id of the program attached to tracepoint `name`; a program whose links name no
/// tracepoint (older kernels) matches by its kernel name, `name` cut to 15 bytes.
fn find(progs: &BTreeMap<u32, Prog>, name: &str) -> Result<u32> {
    let short = name.get(..15).unwrap_or(name);
    let ids: Vec<u32> = progs
        .iter()
        .filter(|(_, p)| match &p.tracepoints[..] {
            [] => p.name == short,
            tps => tps.iter().any(|t| t == name),
        })
        .map(|(&id, _)| id)
        .collect();
    match ids[..] {
        [id] => Ok(id),
        [] => bail!("detector has no program attached to {name}"),
        _ => bail!("cannot tell which of detector's programs {ids:?} is {name}"),
    }
}

/// Run time and run count of each of `progs` now.
fn snapshot(progs: &BTreeMap<u32, Prog>) -> Result<Counters> {
    let mut counters = Counters::new();
    let mut last_error = None;
    for info in loaded_programs() {
        match info {
            Ok(info) if progs.contains_key(&info.id()) => {
                counters.insert(info.id(), (info.run_time(), info.run_count()));
            }
            Ok(_) => {}
            // A program unloaded while we list them; only ours matter.
            Err(e) => last_error = Some(e),
        }
    }
    if counters.len() != progs.len() {
        let why = last_error
            .map(|e| format!(" (last error: {e})"))
            .unwrap_or_default();
        bail!(
            "read {} of detector's {} programs{why}",
            counters.len(),
            progs.len()
        );
    }
    Ok(counters)
}

struct Daemon {
    child: Child,
    stderr: PathBuf,
}

impl Daemon {
    fn start(bin: &Path, dir: &Path) -> Result<Self> {
        let ready = dir.join("ready");
        let stderr = dir.join("stderr");
        let child = Command::new(bin)
            .arg("run")
            .arg("--ready-file")
            .arg(&ready)
            .stdin(Stdio::null())
            .stdout(File::create(dir.join("stdout"))?)
            .stderr(File::create(&stderr)?)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut daemon = Daemon { child, stderr };
        let start = Instant::now();
        while !ready.exists() {
            if let Some(status) = daemon.child.try_wait()? {
                bail!(
                    "detector exited ({status}) before arming: {}",
                    daemon.last_log()
                );
            }
            if start.elapsed() > Duration::from_secs(30) {
                bail!("detector not armed after 30 s: {}", daemon.last_log());
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(daemon)
    }

    fn last_log(&self) -> String {
        let log = fs::read_to_string(&self.stderr).unwrap_or_default();
        log.lines().last().unwrap_or("(no output)").to_string()
    }

    fn signal(&self, signal: libc::c_int) -> Result<()> {
        let pid = libc::pid_t::try_from(self.child.id())?;
        // SAFETY: kill(2) on our own child, which has not been waited for yet.
        if unsafe { libc::kill(pid, signal) } != 0 {
            bail!(
                "signal {signal} to detector: {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    /// SIGTERM, then up to 10 s for a clean exit (it logs its loss counters on the way out).
    fn stop(&mut self) -> Result<()> {
        self.signal(libc::SIGTERM)?;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Some(status) = self.child.try_wait()? {
                ensure!(
                    status.success(),
                    "detector exited with {status}: {}",
                    self.last_log()
                );
                return Ok(());
            }
            thread::sleep(Duration::from_millis(50));
        }
        bail!("detector still running 10 s after SIGTERM")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A scratch directory, removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn create() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("detector-bench-{}", std::process::id()));
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
