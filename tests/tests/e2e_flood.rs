//! The reader never waits for enrichment: a flood of large files preloaded into short-lived
//! processes does not delay the alert for a hook preloaded into a credential process, and the
//! daemon's memory stays bounded while it reads them.
use std::{
    fs::File,
    process::Command,
    time::{Duration, Instant},
};

use detector_tests::{gcc, s, trigger, Daemon, TempDir};

/// Distinct sparse files, each over the default hashing budget.
const FILES: usize = 24;
const FILE_BYTES: u64 = 200 * 1024 * 1024;

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("daemon status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

fn flood(dir: &TempDir) -> Vec<std::path::PathBuf> {
    (0..FILES)
        .map(|i| {
            let p = dir.path(&format!("big{i}.so"));
            File::create(&p)
                .and_then(|f| f.set_len(FILE_BYTES))
                .expect("sparse file");
            p
        })
        .collect()
}

#[test]
fn a_flood_of_large_preloads_does_not_delay_the_credential_alert() {
    let dir = TempDir::new("flood");
    let hook = gcc(&dir, "read_hook.c", "libhook.so", true);
    let big = flood(&dir);
    // A budget above the files' size: every one of them is read and hashed, the worst case.
    let cfg = dir.path("detector.toml");
    std::fs::write(
        &cfg,
        "[enrichment]\nhash_budget_mib = 1024\n[thresholds]\naggregate_window_secs = 0\n",
    )
    .unwrap();
    let d = Daemon::start_with(&["--config", cfg.to_str().unwrap()]);
    for lib in &big {
        trigger(Command::new("/usr/bin/true").env("LD_PRELOAD", lib));
    }
    let t0 = Instant::now();
    trigger(
        Command::new("/usr/bin/ssh")
            .arg("-V")
            .env("LD_PRELOAD", &hook),
    );
    let alert = d.expect_alert("the hook preloaded into ssh", |a| {
        s(a, "library.path") == hook.to_str().unwrap()
            && s(a, "process.executable") == "/usr/bin/ssh"
    });
    let delay = t0.elapsed();
    assert!(
        delay < Duration::from_secs(1),
        "the ssh alert took {delay:?} behind the flood"
    );
    assert_eq!(s(&alert, "severity"), "critical");
    assert!(alert["library"]["hooks"]
        .as_array()
        .is_some_and(|h| h.iter().any(|x| x == "read")));
    // The flood's own alerts go out too, analysed or, past the deadline, saying they were not.
    let first = d.expect_alert("an alert for a flood file", |a| {
        s(a, "library.path") == big[0].to_str().unwrap()
    });
    assert_eq!(s(&first, "severity"), "medium");
    let rss = peak_rss_kib(d.pid());
    assert!(
        rss < 64 * 1024,
        "peak RSS {rss} KiB while hashing the flood"
    );
    d.stop();
}

#[test]
fn a_file_over_the_hashing_budget_is_analysed_and_says_why_it_has_no_hash() {
    let dir = TempDir::new("budget");
    let big = flood(&dir).swap_remove(0);
    let d = Daemon::start();
    trigger(Command::new("/usr/bin/true").env("LD_PRELOAD", &big));
    let alert = d.expect_alert("the large preload", |a| {
        s(a, "library.path") == big.to_str().unwrap()
    });
    assert!(alert["library"]["hash"].is_null(), "{alert:#}");
    let skipped = &alert["library"]["enrichment_skipped"][0];
    assert_eq!(skipped["what"], "hash", "{alert:#}");
    assert!(
        skipped["why"]
            .as_str()
            .is_some_and(|w| w.contains("over the 67108864-byte hashing budget")),
        "{alert:#}"
    );
    d.stop();
}
