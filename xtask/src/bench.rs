//! `cargo xtask bench`: the in-kernel cost of detector's eBPF programs.
//!
//! Starts `target/release/detector run`, finds its programs through its own file descriptors
//! (`/proc/<pid>/fdinfo` names each syscall program's tracepoints; the exec and exit programs
//! go by their own names), turns on the
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

use crate::{dispatch, load};
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
/// The exec and exit programs, by their kernel names (BTF tracepoints: their links do not name
/// the tracepoint, so the programs have names of their own).
const EXEC_PROG: &str = "sched_exec";
const MMAP_PROG: &str = "sys_enter_mmap";
/// The mmap channel's programs on the exec tracepoint: the program and the interpreter mapped at
/// exec.
const EXEC_PROGRAM_PROG: &str = "exec_program";
const EXEC_INTERPRETER_PROG: &str = "exec_interpreter";
const EXIT_PROG: &str = "sched_exit";
/// The signal program: it runs for every signal the kernel queues, the SIGCHLD of each exit too.
const SIGNAL_PROG: &str = "signal_generate";

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

/// What the detector costs a workload.
struct Overhead {
    /// Median paired ratio with/without, minus one: wall time, and CPU time.
    wall: f64,
    cpu: f64,
    /// Low end of the CPU ratio's ~95 % confidence interval.
    ci_lo: f64,
    /// The detector's own CPU (its programs' run time + the daemon) over the workload's.
    accounted: f64,
}

impl Overhead {
    /// The budget holds when what the detector spends is within it and the with/without
    /// measurement, whose noise on this VM is larger than the budget, does not say otherwise
    /// (its confidence interval reaches down into the budget).
    fn within_budget(&self) -> bool {
        self.accounted <= load::BUDGET_OVERHEAD && self.ci_lo <= load::BUDGET_OVERHEAD
    }
}

/// One of the daemon's programs: kernel name (15 chars at most) and attached tracepoints.
struct Prog {
    name: String,
    tracepoints: Vec<String>,
}

/// Cumulative (run time, run count) per program id.
type Counters = BTreeMap<u32, (Duration, u64)>;

pub fn run(root: &Path, dispatch_only: bool, latency_only: bool) -> Result<()> {
    super::build()?;
    super::setup::ensure_bench()?;
    let tmp = TempDir::create()?;
    // Held for the whole run; the kernel turns the statistics off again when it is closed,
    // however this process ends (the bpf_stats_enabled sysctl is left alone).
    let _stats = enable_stats(Stats::RunTime).context("enabling BPF run-time statistics")?;
    let bin = root.join("target/release/detector");
    if latency_only {
        let t = load::compile(&tmp.0)?;
        let mut missed = Vec::new();
        latency_report(&t, &bin, libm()?, &mut missed)?;
        if !missed.is_empty() {
            bail!("budgets missed: {}", missed.join("; "));
        }
        return Ok(());
    }
    println!("## Workloads, peers and budgets\n");
    let d = dispatch::measure(root)?;
    println!(
        "Kernel work around each run of a program on a classic syscall tracepoint (not in the\n\
         programs' run time): {:.0} ns [95% CI {:.0}..{:.0}] per run (`dispatch.rs`: the open\n\
         program attached and detached between {} alternating chunks of opens; its own run\n\
         time, {:.0} ns per run, subtracted).\n",
        d.ns,
        d.ci.0,
        d.ci.1,
        dispatch::CHUNKS,
        d.program_ns
    );
    floors_report(root)?;
    if dispatch_only {
        return Ok(());
    }
    let budgets = workload_report(&bin, &tmp.0, d.ns.max(0.0))?;
    println!("## In-kernel cost per program\n");
    program_costs(&bin, &tmp.0)?;
    if !budgets.is_empty() {
        bail!("budgets missed: {}", budgets.join("; "));
    }
    Ok(())
}

/// The system's libm, preloaded by the latency and flood workloads.
fn libm() -> Result<&'static str> {
    [load::SYSTEM_LIBM, "/lib/x86_64-linux-gnu/libm.so.6"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .context("libm not found")
}

/// Detection latency: prints the line, records a miss, returns p99 in ms and the execs without
/// an alert.
fn latency_report(
    t: &load::Tools,
    bin: &Path,
    libm: &str,
    missed: &mut Vec<String>,
) -> Result<(f64, u64)> {
    let (mut lat, missing) = load::latency(t, bin, libm, 2000)?;
    let p50 = load::percentile(&mut lat, 0.5);
    let p99 = load::percentile(&mut lat, 0.99);
    println!();
    println!(
        "Detection latency, posix_spawn → alert line on the daemon's stdout (2000 execs with LD_PRELOAD={libm}, 2 ms apart): p50 {p50:.2} ms, p99 {p99:.2} ms, max {:.2} ms; {} of {} execs matched, {missing} without an alert.",
        lat.last().copied().unwrap_or(f64::NAN),
        lat.len(),
        lat.len() as u64 + missing
    );
    if p99 > load::BUDGET_P99_MS || missing > 0 {
        missed.push(format!("latency p99 {p99:.2} ms ({missing} missing)"));
    }
    Ok((p99, missing))
}

/// Alternating rounds without and with the detector (and peers), latency, memory; prints the
/// tables and returns the budgets missed.
/// The floor of a program that must see every open, per attach point this kernel offers.
fn floors_report(root: &Path) -> Result<()> {
    let floors = dispatch::floors(root)?;
    println!(
        "What the cheapest program (it returns at once) costs an open + close of /etc/hostname\n\
         on each attach point a per-open check could use (`floor.rs`; chunks of opens with and\n\
         without it, alternating as above):\n"
    );
    println!("| attach point | runs per open + close | added CPU per open + close [95% CI] | share of an open + close | program's own run time |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for f in floors {
        println!(
            "| {} | {:.0} | {:.0} ns [{:.0}..{:.0}] | {:.1}% of {:.0} ns | {:.0} ns per run |",
            f.attach,
            f.runs_per_op,
            f.per_op,
            f.per_op_ci.0,
            f.per_op_ci.1,
            100.0 * f.per_op / f.base,
            f.base,
            f.program_ns
        );
    }
    println!();
    Ok(())
}

fn workload_report(bin: &Path, dir: &Path, dispatch_ns: f64) -> Result<Vec<String>> {
    let t = load::compile(dir)?;
    let works = load::workloads(&t);
    let n = works.len();
    let mut without: Vec<Vec<load::Took>> = vec![Vec::new(); n];
    let mut again: Vec<Vec<load::Took>> = vec![Vec::new(); n];
    let mut with: Vec<Vec<load::Took>> = vec![Vec::new(); n];
    let mut with_lite: Vec<Vec<load::Took>> = vec![Vec::new(); n];
    let lite_cfg = dir.join("lite.toml");
    fs::write(&lite_cfg, "[capture]\nsyscalls = false\n")?;
    // Prevent mode on its kill path, as on this machine: the exec storms with it on.
    let mut with_prevent: Vec<Vec<load::Took>> = vec![Vec::new(); n];
    let mut prevent_spent = vec![(Duration::ZERO, 0u64); n];
    let prevent_cfg = dir.join("prevent.toml");
    fs::write(
        &prevent_cfg,
        "[prevent]\nmode = \"prevent\"\nstop = \"kill\"\n",
    )?;
    let mut daemon_cpu_stat = vec![Duration::ZERO; n];
    let mut daemon_cpu_sched = vec![Duration::ZERO; n];
    let mut bpf_time = vec![Duration::ZERO; n];
    let mut bpf_runs = vec![0u64; n];
    let mut lost_lines = Vec::new();
    for w in &works {
        load::run_workload(&t, w)?; // warm-up
    }
    for round in 0..load::ROUNDS {
        eprintln!("[bench] round {} of {}", round + 1, load::ROUNDS);
        // Without; the exec storms with the syscall channels off; without again; with the
        // default configuration. Each "with" follows its "without" directly (this machine's
        // speed drifts over tens of seconds); the two "without" give the noise floor.
        // Every block of runs starts after the same pause, and every run is followed by the
        // same 100 ms, with or without a detector: a run right after an idle spell is not the
        // same as one right after a busy one on this VM.
        thread::sleep(load::SETTLE);
        for (i, w) in works.iter().enumerate() {
            without[i].push(load::run_workload(&t, w)?);
            thread::sleep(Duration::from_millis(100));
        }
        let mut lite = Daemon::start_config(bin, dir, Some(&lite_cfg))?;
        thread::sleep(load::SETTLE);
        for (i, w) in works.iter().enumerate().filter(|(_, w)| w.is_exec()) {
            let (_, c0) = load::cpu(lite.child.id())?;
            let mut took = load::run_workload(&t, w)?;
            thread::sleep(Duration::from_millis(100));
            let (_, c1) = load::cpu(lite.child.id())?;
            took.cpu += c1.saturating_sub(c0).as_secs_f64();
            with_lite[i].push(took);
        }
        lite.stop()?;
        thread::sleep(load::SETTLE);
        for (i, w) in works.iter().enumerate() {
            again[i].push(load::run_workload(&t, w)?);
            thread::sleep(Duration::from_millis(100));
        }
        let mut daemon = Daemon::start(bin, dir)?;
        thread::sleep(load::SETTLE);
        let progs = daemon_programs(daemon.child.id())?;
        let pid = daemon.child.id();
        for (i, w) in works.iter().enumerate() {
            let before = snapshot(&progs)?;
            let (s0, c0) = load::cpu(pid)?;
            with[i].push(load::run_workload(&t, w)?);
            // Let the daemon drain what the workload queued before reading its CPU.
            thread::sleep(Duration::from_millis(100));
            let (s1, c1) = load::cpu(pid)?;
            let after = snapshot(&progs)?;
            daemon_cpu_stat[i] += s1.saturating_sub(s0);
            daemon_cpu_sched[i] += c1.saturating_sub(c0);
            for id in progs.keys() {
                let (t0, n0) = before.get(id).copied().unwrap_or_default();
                let (t1, n1) = after.get(id).copied().unwrap_or_default();
                bpf_time[i] += t1.saturating_sub(t0);
                bpf_runs[i] += n1.saturating_sub(n0);
            }
        }
        daemon.stop()?;
        let log = fs::read_to_string(&daemon.stderr).unwrap_or_default();
        lost_lines.extend(
            log.lines()
                .filter(|l| l.contains(" lost") && !l.contains(" 0 events lost"))
                .map(str::to_owned),
        );
        let mut prevent = Daemon::start_config(bin, dir, Some(&prevent_cfg))?;
        thread::sleep(load::SETTLE);
        let progs = daemon_programs(prevent.child.id())?;
        for (i, w) in works.iter().enumerate().filter(|(_, w)| w.is_exec()) {
            let before = snapshot(&progs)?;
            let (_, c0) = load::cpu(prevent.child.id())?;
            let mut took = load::run_workload(&t, w)?;
            thread::sleep(Duration::from_millis(100));
            let (_, c1) = load::cpu(prevent.child.id())?;
            let after = snapshot(&progs)?;
            let daemon = c1.saturating_sub(c0);
            took.cpu += daemon.as_secs_f64();
            with_prevent[i].push(took);
            let (mut spent, mut runs) = (daemon, 0u64);
            for id in progs.keys() {
                let (t0, n0) = before.get(id).copied().unwrap_or_default();
                let (t1, n1) = after.get(id).copied().unwrap_or_default();
                spent += t1.saturating_sub(t0);
                runs += n1.saturating_sub(n0);
            }
            prevent_spent[i].0 += spent;
            prevent_spent[i].1 += runs;
        }
        prevent.stop()?;
    }
    let mut missed = Vec::new();
    println!(
        "{} rounds; each runs every workload without the detector, the exec storms with\n\
         `[capture] syscalls = false`, every workload without the detector again, then with it\n\
         (each detector started afresh and left {} s to settle). Overheads are medians of the\n\
         per-round ratios with / the run without just before: of wall time, and of CPU time (the\n\
         workload's own user + system time, which includes the detector's programs, plus the\n\
         daemon's CPU over the same interval). The noise floor is the same ratio for the two runs\n\
         without: what the machine's jitter makes of doing nothing twice.\n\n\
         **Accounted** is what the detector itself spends, as a share of the workload's CPU without\n\
         it: its programs' run time (BPF statistics), the kernel's work around each run that the\n\
         statistics leave out (building the tracepoint record and calling the program: {dispatch_ns:.0} ns\n\
         per run, measured above, and charged to every run of every program, though the BTF\n\
         tracepoints build no record), and the daemon's CPU. On this VM single runs vary by ±15 %, so the\n\
         measured overhead's confidence interval is wider than the budget; accounted is the\n\
         figure the budget is judged on, provided the measured interval reaches into it.\n",
        load::ROUNDS,
        load::SETTLE.as_secs()
    );
    println!("| workload | ops | without (s) | with (s) | wall overhead | noise floor | CPU overhead [95% CI] | noise floor | accounted | daemon CPU per op (stat / schedstat) | BPF time per op |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut exec_ops = 0u64;
    let mut exec_cpu = Duration::ZERO;
    let mut exec_cpu_stat = Duration::ZERO;
    let mut overheads = Vec::new();
    for (i, w) in works.iter().enumerate() {
        let rounds = load::ROUNDS as f64;
        let wall = |v: &[load::Took]| v.iter().map(|t| t.wall).collect::<Vec<_>>();
        // The daemon's CPU per round is spread evenly over the rounds (it is read per workload
        // over all rounds).
        let daemon_round = daemon_cpu_sched[i].as_secs_f64() / rounds;
        let cpu_with: Vec<f64> = with[i].iter().map(|t| t.cpu + daemon_round).collect();
        let cpu = |v: &[load::Took]| v.iter().map(|t| t.cpu).collect::<Vec<_>>();
        let overhead = load::paired_overhead(&wall(&again[i]), &wall(&with[i]));
        let noise = load::paired_overhead(&wall(&without[i]), &wall(&again[i]));
        let cpu_overhead = load::paired_overhead(&cpu(&again[i]), &cpu_with);
        let cpu_noise = load::paired_overhead(&cpu(&without[i]), &cpu(&again[i]));
        let (ci_lo, ci_hi) = load::paired_overhead_ci(&cpu(&again[i]), &cpu_with);
        // What the detector itself spent (its programs' run time and the daemon's CPU) as a
        // share of what the workload spent without it.
        let base_cpu: f64 = cpu(&again[i]).iter().sum();
        let dispatch = bpf_runs[i] as f64 * dispatch_ns / 1e9;
        let accounted = ((bpf_time[i] + daemon_cpu_sched[i]).as_secs_f64() + dispatch) / base_cpu;
        let a = load::median(&mut wall(&again[i]));
        let b = load::median(&mut wall(&with[i]));
        let ops = w.ops() * load::ROUNDS as u64;
        let per = |d: Duration| d.as_nanos() as f64 / 1000.0 / ops as f64;
        println!(
            "| {} | {} {}s | {a:.3} | {b:.3} | {:+.1}% | {:+.1}% | {:+.1}% [{:+.1}, {:+.1}] | {:+.1}% | {:.1}% | {:.2} / {:.2} µs | {:.2} µs |",
            w.name,
            w.ops(),
            w.unit,
            overhead * 100.0,
            noise * 100.0,
            cpu_overhead * 100.0,
            ci_lo * 100.0,
            ci_hi * 100.0,
            cpu_noise * 100.0,
            accounted * 100.0,
            per(daemon_cpu_stat[i]),
            per(daemon_cpu_sched[i]),
            per(bpf_time[i]),
        );
        overheads.push(Overhead {
            wall: overhead,
            cpu: cpu_overhead,
            ci_lo,
            accounted,
        });
        if w.is_exec() {
            exec_ops += ops;
            exec_cpu += daemon_cpu_sched[i];
            exec_cpu_stat += daemon_cpu_stat[i];
            if !overheads[i].within_budget() {
                missed.push(format!(
                    "{}: overhead {:.1}% accounted, {:+.1}% measured (CI from {:+.1}%) > {:.0}%",
                    w.name,
                    accounted * 100.0,
                    cpu_overhead * 100.0,
                    ci_lo * 100.0,
                    load::BUDGET_OVERHEAD * 100.0
                ));
            }
        }
    }
    println!();
    println!(
        "The exec storms with the syscall channels off (`[capture] syscalls = false`: exec and\n\
         exit tracepoints only), same rounds:\n"
    );
    println!("| workload | wall overhead | CPU overhead (incl. daemon) |");
    println!("| --- | ---: | ---: |");
    let mut lite_overheads = vec![(0.0, 0.0); n];
    for (i, w) in works.iter().enumerate().filter(|(_, w)| w.is_exec()) {
        let wall = |v: &[load::Took]| v.iter().map(|t| t.wall).collect::<Vec<_>>();
        let cpu = |v: &[load::Took]| v.iter().map(|t| t.cpu).collect::<Vec<_>>();
        let o = load::paired_overhead(&wall(&without[i]), &wall(&with_lite[i]));
        let c = load::paired_overhead(&cpu(&without[i]), &cpu(&with_lite[i]));
        lite_overheads[i] = (o, c);
        println!("| {} | {:+.1}% | {:+.1}% |", w.name, o * 100.0, c * 100.0);
    }
    println!();
    println!(
        "The exec storms with prevent mode on (`[prevent] mode = \"prevent\"`, `stop = \"kill\"`:\n\
         prevention's programs attached beside the others), same rounds, against the same budget:\n"
    );
    let mut prevent_overheads = Vec::new();
    println!("| workload | wall overhead | CPU overhead [95% CI] | accounted | verdict |");
    println!("| --- | ---: | ---: | ---: | --- |");
    for (i, w) in works.iter().enumerate().filter(|(_, w)| w.is_exec()) {
        let wall = |v: &[load::Took]| v.iter().map(|t| t.wall).collect::<Vec<_>>();
        let cpu = |v: &[load::Took]| v.iter().map(|t| t.cpu).collect::<Vec<_>>();
        let base_cpu: f64 = cpu(&again[i]).iter().sum();
        let (spent, runs) = prevent_spent[i];
        let o = Overhead {
            wall: load::paired_overhead(&wall(&again[i]), &wall(&with_prevent[i])),
            cpu: load::paired_overhead(&cpu(&again[i]), &cpu(&with_prevent[i])),
            ci_lo: load::paired_overhead_ci(&cpu(&again[i]), &cpu(&with_prevent[i])).0,
            accounted: (spent.as_secs_f64() + runs as f64 * dispatch_ns / 1e9) / base_cpu,
        };
        let ci_hi = load::paired_overhead_ci(&cpu(&again[i]), &cpu(&with_prevent[i])).1;
        println!(
            "| {} | {:+.1}% | {:+.1}% [{:+.1}, {:+.1}] | {:.1}% | {} |",
            w.name,
            o.wall * 100.0,
            o.cpu * 100.0,
            o.ci_lo * 100.0,
            ci_hi * 100.0,
            o.accounted * 100.0,
            if o.within_budget() { "met" } else { "MISSED" }
        );
        if !o.within_budget() {
            missed.push(format!(
                "{} with prevent mode on: overhead {:.1}% accounted, CI from {:+.1}% > {:.0}%",
                w.name,
                o.accounted * 100.0,
                o.ci_lo * 100.0,
                load::BUDGET_OVERHEAD * 100.0
            ));
        }
        prevent_overheads.push((w.name, o));
    }
    let cpu_per_exec = exec_cpu.as_nanos() as f64 / 1000.0 / exec_ops.max(1) as f64;
    let cpu_per_exec_stat = exec_cpu_stat.as_nanos() as f64 / 1000.0 / exec_ops.max(1) as f64;
    println!();
    println!(
        "Daemon CPU per exec over both exec storms: {cpu_per_exec:.2} µs (schedstat), {cpu_per_exec_stat:.2} µs (stat utime+stime, 10 ms ticks)."
    );
    if cpu_per_exec > load::BUDGET_CPU_US_PER_EXEC {
        missed.push(format!("daemon CPU {cpu_per_exec:.2} µs per exec"));
    }
    println!(
        "Lost events: {}",
        if lost_lines.is_empty() {
            "none".to_owned()
        } else {
            lost_lines.join("; ")
        }
    );
    if !lost_lines.is_empty() {
        missed.push("events lost".into());
    }

    // Peers on the /bin/true exec storm.
    let w = &works[1];
    let mut base = Vec::new();
    let mut peers: Vec<(&str, Vec<load::Took>, Duration, Option<String>)> = vec![
        (
            "bpftrace (execve env + exec mmap)",
            Vec::new(),
            Duration::ZERO,
            None,
        ),
        ("auditd (execve rule)", Vec::new(), Duration::ZERO, None),
        (
            "syscall tracing alone (bpftrace, empty program on sys_enter_swapon)",
            Vec::new(),
            Duration::ZERO,
            None,
        ),
    ];
    for _ in 0..load::ROUNDS {
        thread::sleep(load::SETTLE);
        base.push(load::run_workload(&t, w)?);
        for (k, peer) in peers.iter_mut().enumerate() {
            if peer.3.is_some() {
                continue;
            }
            let started = match k {
                0 => load::Peer::bpftrace(dir),
                1 => load::Peer::auditd(dir),
                _ => load::Peer::syscall_tracing_alone(dir),
            };
            match started {
                Ok(p) => {
                    let c0 = p.cpu();
                    let wall = load::run_workload(&t, w);
                    thread::sleep(Duration::from_millis(100));
                    peer.2 += p.cpu().saturating_sub(c0);
                    p.stop();
                    peer.1.push(wall?);
                }
                Err(e) => peer.3 = Some(format!("{e:#}")),
            }
        }
    }
    println!();
    println!(
        "Peers on the same workload ({}, {} execs), in the same run:\n",
        w.name,
        w.ops()
    );
    println!("| capture | wall overhead | workload CPU overhead | its own CPU per exec |");
    println!("| --- | ---: | ---: | ---: |");
    let det_cpu =
        daemon_cpu_sched[1].as_nanos() as f64 / 1000.0 / (w.ops() * load::ROUNDS as u64) as f64;
    println!(
        "| detector (the table above) | {:+.1}% | {:+.1}% | {det_cpu:.2} µs |",
        overheads[1].wall * 100.0,
        overheads[1].cpu * 100.0
    );
    for (name, runs, cpu, err) in peers {
        match err {
            Some(e) => println!("| {name} | not run: {e} | | |"),
            None => {
                let per = cpu.as_nanos() as f64 / 1000.0 / (w.ops() * runs.len() as u64) as f64;
                let wall = |v: &[load::Took]| v.iter().map(|t| t.wall).collect::<Vec<_>>();
                let cpu = |v: &[load::Took]| v.iter().map(|t| t.cpu).collect::<Vec<_>>();
                let b = &base[..runs.len()];
                let o = load::paired_overhead(&wall(b), &wall(&runs));
                let c = load::paired_overhead(&cpu(b), &cpu(&runs));
                println!(
                    "| {name} | {:+.1}% | {:+.1}% | {per:.2} µs |",
                    o * 100.0,
                    c * 100.0
                );
            }
        }
    }

    // Detection latency.
    let libm = libm()?;
    let (p99, missing) = latency_report(&t, bin, libm, &mut missed)?;

    // A flood of large preloads, then a preload into a credential process.
    let flood = load::flood(&t, bin, libm, 5, 24, 200)?;
    let mut fd = flood.delays.clone();
    let flood_max = fd.iter().copied().fold(0.0, f64::max);
    let flood_median = load::median(&mut fd);
    println!();
    println!(
        "Flood: {} rounds of {} distinct sparse {} MiB files preloaded into /bin/true, each file hashed (budget raised above their size), then LD_PRELOAD={libm} into `ssh -V`: the ssh alert {flood_median:.1} ms after the spawn (median; max {flood_max:.1} ms); daemon peak RSS {:.1} MiB.",
        flood.delays.len(),
        flood.files,
        flood.file_mib,
        flood.hwm
    );
    let flood_ok =
        flood_max <= load::BUDGET_FLOOD_DELAY_MS && flood.hwm <= load::BUDGET_FLOOD_HWM_MIB;
    if !flood_ok {
        missed.push(format!(
            "flood: ssh alert max {flood_max:.1} ms, peak RSS {:.1} MiB",
            flood.hwm
        ));
    }

    // Memory after 100k short-lived processes.
    let mut daemon = Daemon::start(bin, dir)?;
    thread::sleep(load::SETTLE);
    let (rss0, _) = load::memory(daemon.child.id())?;
    let hundred_k = load::Workload {
        per_worker: 50_000,
        ..works[0].clone()
    };
    load::run_workload(&t, &hundred_k)?;
    thread::sleep(Duration::from_millis(500));
    let (rss, hwm) = load::memory(daemon.child.id())?;
    daemon.stop()?;
    println!();
    println!(
        "Daemon memory: {rss0:.1} MiB RSS when armed; after 100,000 short-lived processes {rss:.1} MiB RSS, peak (VmHWM) {hwm:.1} MiB."
    );
    if rss > load::BUDGET_RSS_MIB {
        missed.push(format!("RSS {rss:.1} MiB after 100k processes"));
    }
    package_index_report(bin)?;
    println!();
    println!("| budget | limit | measured | verdict |");
    println!("| --- | ---: | ---: | --- |");
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    for (i, w) in works.iter().enumerate().filter(|(_, w)| w.is_exec()) {
        let o = &overheads[i];
        println!(
            "| {} overhead (accounted; measured CPU [CI low]; wall) | 3% | {:.1}%; {:+.1}% [{:+.1}%]; {:+.1}% | {} |",
            w.name,
            o.accounted * 100.0,
            o.cpu * 100.0,
            o.ci_lo * 100.0,
            o.wall * 100.0,
            verdict(o.within_budget())
        );
    }
    for (name, o) in &prevent_overheads {
        println!(
            "| {name} overhead with prevent mode on (accounted; measured CPU [CI low]; wall) | 3% | {:.1}%; {:+.1}% [{:+.1}%]; {:+.1}% | {} |",
            o.accounted * 100.0,
            o.cpu * 100.0,
            o.ci_lo * 100.0,
            o.wall * 100.0,
            verdict(o.within_budget())
        );
    }
    for (i, w) in works.iter().enumerate().filter(|(_, w)| w.is_exec()) {
        let (o, c) = lite_overheads[i];
        println!(
            "| {} overhead, syscalls = false (measured CPU; wall) | 3% | {:+.1}%; {:+.1}% | (information) |",
            w.name,
            c * 100.0,
            o * 100.0,
        );
    }
    println!(
        "| daemon CPU per exec | 10 µs | {cpu_per_exec:.2} µs | {} |",
        verdict(cpu_per_exec <= load::BUDGET_CPU_US_PER_EXEC)
    );
    println!(
        "| lost events at the highest exec rate | 0 | {} | {} |",
        lost_lines.len(),
        verdict(lost_lines.is_empty())
    );
    println!(
        "| RSS after 100k processes | 32 MiB | {rss:.1} MiB | {} |",
        verdict(rss <= load::BUDGET_RSS_MIB)
    );
    println!(
        "| detection latency p99 | 20 ms | {p99:.2} ms | {} |",
        verdict(p99 <= load::BUDGET_P99_MS && missing == 0)
    );
    println!(
        "| flood of large preloads: credential alert delay (max) | 1000 ms | {flood_max:.1} ms | {} |",
        verdict(flood_max <= load::BUDGET_FLOOD_DELAY_MS)
    );
    println!(
        "| flood of large preloads: daemon peak RSS | 64 MiB | {:.1} MiB | {} |",
        flood.hwm,
        verdict(flood.hwm <= load::BUDGET_FLOOD_HWM_MIB)
    );
    println!();
    Ok(missed)
}

fn program_costs(bin: &Path, dir: &Path) -> Result<()> {
    let helper = compile_helper(dir)?;
    let mut daemon = Daemon::start(bin, dir)?;
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
            programs: &[
                EXEC_PROG,
                EXEC_PROGRAM_PROG,
                EXEC_INTERPRETER_PROG,
                EXIT_PROG,
                SIGNAL_PROG,
                MMAP_PROG,
            ],
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
            programs: &[EXEC_PROG, EXIT_PROG],
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

    daemon.stop()?;

    println!("| scenario | program | runs | avg ns/run |");
    println!("| --- | --- | ---: | ---: |");
    for (scenario, prog, runs, ns) in rows {
        println!("| {scenario} | {prog} | {runs} | {ns} |");
    }
    println!();
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
            // The kernel keeps 15 bytes of a program's name.
            _ if p.name == name || p.name == short => true,
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
        Self::start_config(bin, dir, None)
    }

    /// With `--config` when `config` is given.
    fn start_config(bin: &Path, dir: &Path, config: Option<&Path>) -> Result<Self> {
        let ready = dir.join("ready");
        let _ = fs::remove_file(&ready);
        let stderr = dir.join("stderr");
        let mut cmd = Command::new(bin);
        cmd.arg("run");
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        let child = cmd
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

/// The package database's index (dpkg): how long its first build takes and what it holds, from
/// the line the detector logs when it builds it, in fresh `detector analyze` processes (the
/// index is built on the first question), and their peak RSS.
fn package_index_report(bin: &Path) -> Result<()> {
    const RUNS: usize = 7;
    let (mut ms, mut rss) = (Vec::new(), Vec::new());
    let mut facts = String::new();
    for _ in 0..RUNS {
        let mut child = Command::new(bin)
            .args(["--log-level", "info", "analyze", "--json", "/usr/bin/true"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("running detector analyze")?;
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err)?;
        let (mut status, mut usage) = (0, unsafe { std::mem::zeroed::<libc::rusage>() });
        // SAFETY: waits for our own child; status and usage are ours to write.
        if unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) } < 0 {
            bail!("wait4: {}", std::io::Error::last_os_error());
        }
        let Some(line) = err.lines().find(|l| l.contains("package index of")) else {
            println!("\nPackage index: not built (no package database this build reads?)");
            return Ok(());
        };
        let (built, took) = line
            .rsplit_once(", built in ")
            .context("package index line")?;
        ms.push(took.trim_end_matches(" ms").trim().parse::<f64>()?);
        rss.push(usage.ru_maxrss as f64 / 1024.0);
        facts = built.split_once(": ").map_or(built, |(_, f)| f).to_owned();
    }
    let (ms_min, ms_max) = (
        ms.iter().copied().fold(f64::INFINITY, f64::min),
        ms.iter().copied().fold(0.0, f64::max),
    );
    let ms_median = load::median(&mut ms);
    let rss_median = load::median(&mut rss);
    println!();
    println!(
        "Package index (dpkg, built on the first question; {RUNS} fresh `detector analyze /usr/bin/true`): {facts}; built in {ms_median:.0} ms median (min {ms_min:.0}, max {ms_max:.0}); the process's peak RSS {rss_median:.1} MiB."
    );
    Ok(())
}
