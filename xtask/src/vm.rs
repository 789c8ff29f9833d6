//! `cargo xtask vm-test`: the project's end-to-end test binaries on real Debian kernels, under qemu.
//!
//! For each kernel: `apt-get download` its Debian package, extract the vmlinuz, boot it with an
//! initramfs holding busybox-static, the detector, the `detector-tests` test binaries that
//! `GUEST_TESTS` names (built on the host with `cargo test --no-run`), the tests' fixtures compiled
//! on the host with gcc (the guest has none; the harness copies them from `DETECTOR_FIXTURES`), the
//! real programs the tests start, the shared libraries of all of these, and the runner
//! (tests/vm/init.sh, as /init). The runner runs each selected test alone, as root, and prints a
//! RESULT line per test on the serial console. Prints a test x kernel table, keeps every serial log
//! under target/vm-test/, and fails when any test does.
//!
//! Accelerator: KVM when /dev/kvm is there and its guests run, TCG otherwise. On some hosts a
//! /dev/kvm guest hangs before it prints anything (qemu reports a KVM internal error, or nothing
//! at all): a KVM boot whose serial console stays empty for `FIRST_OUTPUT_DEADLINE`, or whose qemu
//! reports a KVM internal error, is killed, and that kernel and the remaining ones boot with TCG.
//! `DETECTOR_VM_KVM=off` skips KVM; `DETECTOR_VM_KVM=hang` starts the KVM guest's CPUs stopped
//! (qemu -S), a guest that never prints, to exercise that fallback.
use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

/// One test binary of the `detector-tests` crate (tests/tests/<binary>.rs) to run in the guest.
struct GuestTests {
    /// The test target's name.
    binary: &'static str,
    /// The tests to run, by exact name; empty: all of the binary's tests but `except`.
    tests: &'static [&'static str],
    /// Tests not to run in the guest (when `tests` is empty), by exact name.
    except: &'static [&'static str],
    /// Programs these tests start, copied from the host's /usr/bin or /bin into the guest's
    /// /usr/bin with their libraries (busybox's applets are static: no preload applies to them).
    programs: &'static [&'static str],
}

/// What runs in the guest, one row per test binary. Tests that need what the guest lacks (sshd,
/// rsyslogd, su and PAM, python3, git, gcc) stay on the host.
const GUEST_TESTS: &[GuestTests] = &[
    GuestTests {
        binary: "e2e_preload",
        tests: &[],
        except: &[],
        programs: &["cat", "ls", "true"],
    },
    GuestTests {
        binary: "e2e_engine",
        tests: &[
            "preload_into_ssh_is_high_and_names_the_hook",
            "atomic_t1574_006_1_etc_ld_so_preload",
            "a_list_gone_before_the_daemon_looks_still_blames_the_process_that_loaded_it",
        ],
        except: &[],
        programs: &["ssh"],
    },
    GuestTests {
        binary: "e2e_channels",
        tests: &[],
        // The seen-cache needs a root-owned library on a disk filesystem the test can write; the
        // guest's only disk filesystem is its read-only /usr.
        except: &["mmap_seen_cache_still_reports_a_pending_file_to_credential_programs"],
        programs: &["true", "ssh"],
    },
    GuestTests {
        binary: "e2e_prevent",
        tests: &[
            "a_hook_from_tmp_preloaded_into_ssh_is_killed_before_its_constructor_runs",
            "a_memfd_library_dlopened_into_a_catalogue_named_process_is_killed",
            "a_credential_program_whose_interpreter_is_from_tmp_is_killed_at_exec",
            "audit_mode_stops_nothing_and_says_what_it_would_have_stopped",
            "sighup_back_to_detect_is_the_kill_switch",
            "check_reports_the_stop_path",
            "with_bpf_lsm_a_preloaded_ssh_runs_without_the_hook",
        ],
        except: &[],
        programs: &["ssh"],
    },
];
/// One boot, start to power-off, at most (TCG is slow; a hung kernel must not hang CI).
const BOOT_TIMEOUT: Duration = Duration::from_secs(900);
/// How many times a kernel is booted again after its guest ended before the runner finished
/// (a guest that powered off early, a qemu that died), to run the tests that have no result.
/// A test that fails is never run again; a test whose guest died under it twice fails.
const RESUMES: usize = 1;
/// How long a KVM guest may leave the serial console empty. The kernel prints its first boot
/// messages within a second or two of starting under KVM; a guest silent this long never ran.
const FIRST_OUTPUT_DEADLINE: Duration = Duration::from_secs(45);
/// The same for TCG, whose guests start slower; a TCG guest silent this long is a failed boot.
const FIRST_OUTPUT_DEADLINE_TCG: Duration = Duration::from_secs(180);

pub fn run(root: &Path, kernels: &[String]) -> Result<()> {
    let kernels: Vec<String> = if kernels.is_empty() {
        vec!["6.1".into(), "6.12".into()]
    } else {
        kernels.to_vec()
    };
    let work = root.join("target/vm-test");
    fs::create_dir_all(&work)?;
    let plan = plan(root)?;
    let tests: Vec<String> = plan
        .iter()
        .flat_map(|(g, _, names)| names.iter().map(move |n| format!("{}::{n}", g.binary)))
        .collect();
    let initrd = initramfs(root, &work, &plan)?;
    let mut kvm = Kvm::at_start();
    say(&format!("accelerator: {}", kvm.describe()));
    let mut rows = Vec::new();
    for k in &kernels {
        let vmlinuz = kernel(&work, k)?;
        let initrd = with_modules(&work, k, &vmlinuz, &initrd, MODULES)?;
        let mut logs = String::new();
        let mut accel = "?";
        for attempt in 0..=RESUMES {
            // The tests that have a result are not run again: the runner skips that many lines
            // of its plan (results come in plan order).
            let skip = Row::parse(k, &logs).results.len();
            let log = match attempt {
                0 => work.join(format!("serial-{k}.log")),
                n => work.join(format!("serial-{k}-resume{n}.log")),
            };
            say(&format!(
                "booting {} ({}), skipping {skip} tests",
                k,
                vmlinuz.display()
            ));
            let started = Instant::now();
            let machine = Machine {
                vmlinuz: &vmlinuz,
                initrd: &initrd,
                // /init skips the first `vmtest.skip` tests of its plan.
                append: format!("lsm=bpf vmtest.skip={skip}"),
                extra: Vec::new(),
                memory_mib: 1024,
                timeout: BOOT_TIMEOUT,
            };
            let (a, why) = boot(k, &machine, &log, &work, &mut kvm)?;
            accel = a;
            say(&format!(
                "{k}: done after {:.0} s with {accel} ({why})",
                started.elapsed().as_secs_f64()
            ));
            let text = fs::read_to_string(&log).unwrap_or_default();
            logs.push_str(&text);
            if text.contains("VM done") {
                break;
            }
            // The guest ended (or was killed) before the runner did: say what it printed last.
            say(&format!(
                "the {k} guest ended before its runner finished; the last lines of {}:",
                log.display()
            ));
            for l in last_lines(&text, 30) {
                println!("    | {l}");
            }
            let qemu = work.join(format!("qemu-{k}-{accel}.log"));
            for l in last_lines(&fs::read_to_string(&qemu).unwrap_or_default(), 10) {
                println!("    | qemu: {l}");
            }
            let progressed = Row::parse(k, &logs).results.len() > skip;
            if attempt == RESUMES || !progressed {
                break;
            }
            say(&format!(
                "{k}: booting once more for the tests that have no result (the one that was \
                 running included)"
            ));
        }
        let mut row = Row::parse(k, &logs);
        row.accel = accel;
        rows.push(row);
    }
    print_table(&rows, &tests);
    let failed: Vec<String> = rows
        .iter()
        .flat_map(|r| {
            tests
                .iter()
                .filter(|t| r.results.get(*t).is_none_or(|(pass, _)| !pass))
                .map(move |t| format!("{} {t}", r.kernel))
        })
        .collect();
    say(&format!(
        "serial logs: {}/serial-<kernel>.log",
        work.display()
    ));
    if !failed.is_empty() {
        bail!("vm-test failed: {}", failed.join(", "));
    }
    Ok(())
}

/// Each `GUEST_TESTS` row with its test binary (built here) and the names of the tests to run.
type Plan = Vec<(&'static GuestTests, PathBuf, Vec<String>)>;

/// Builds the `detector-tests` test binaries (release, as `cargo xtask test` builds them) and
/// lists, with each binary's own `--list`, the tests each `GUEST_TESTS` row selects.
fn plan(root: &Path) -> Result<Plan> {
    let args = [
        "test",
        "--release",
        "--package",
        "detector-tests",
        "--no-run",
        "--message-format=json",
    ];
    say(&format!("cargo {}", args.join(" ")));
    let out = Command::new("cargo")
        .args(args)
        .current_dir(root)
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo test --no-run")?;
    if !out.status.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    let exes = test_executables(&String::from_utf8_lossy(&out.stdout));
    // DETECTOR_VM_ONLY=<binary>[,<binary>...]: only those rows (a change's own tests, quickly).
    let only: Option<Vec<String>> = std::env::var("DETECTOR_VM_ONLY")
        .ok()
        .map(|v| v.split(',').map(|b| b.trim().to_owned()).collect());
    if let Some(only) = &only {
        for b in only {
            if !GUEST_TESTS.iter().any(|g| g.binary == b) {
                bail!("DETECTOR_VM_ONLY: no GUEST_TESTS row for {b}");
            }
        }
    }
    GUEST_TESTS
        .iter()
        .filter(|g| {
            only.as_ref()
                .is_none_or(|o| o.iter().any(|b| b == g.binary))
        })
        .map(|g| {
            let exe = exes.get(g.binary).with_context(|| {
                format!("cargo built no test binary {} (GUEST_TESTS)", g.binary)
            })?;
            let list = Command::new(exe)
                .args(["--list", "--format", "terse"])
                .output()
                .with_context(|| format!("running {} --list", exe.display()))?;
            let all = listed_tests(&String::from_utf8_lossy(&list.stdout));
            for t in g.tests.iter().chain(g.except) {
                if !all.iter().any(|a| a == t) {
                    bail!("{} has no test named {t} (GUEST_TESTS)", g.binary);
                }
            }
            let names: Vec<String> = if g.tests.is_empty() {
                all.into_iter()
                    .filter(|t| !g.except.contains(&t.as_str()))
                    .collect()
            } else {
                g.tests.iter().map(|t| t.to_string()).collect()
            };
            if names.is_empty() {
                bail!("{} lists no tests", g.binary);
            }
            Ok((g, exe.clone(), names))
        })
        .collect()
}

/// Test target name -> executable, from `cargo test --no-run --message-format=json`.
fn test_executables(json_lines: &str) -> BTreeMap<String, PathBuf> {
    json_lines
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| {
            v["reason"] == "compiler-artifact"
                && v["target"]["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "test"))
        })
        .filter_map(|v| {
            Some((
                v["target"]["name"].as_str()?.to_owned(),
                PathBuf::from(v["executable"].as_str()?),
            ))
        })
        .collect()
}

/// The test names in a libtest `--list` output ("<name>: test" lines).
fn listed_tests(list: &str) -> Vec<String> {
    list.lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(str::to_owned)
        .collect()
}

struct Row {
    kernel: String,
    accel: &'static str,
    release: String,
    capture: String,
    lsm: String,
    fentry: String,
    /// "<binary>::<test>" -> (passed, seconds as the runner printed them).
    results: BTreeMap<String, (bool, String)>,
}

impl Row {
    fn parse(kernel: &str, log: &str) -> Row {
        let mut row = Row {
            kernel: kernel.to_owned(),
            accel: "?",
            release: "?".into(),
            capture: "none".into(),
            lsm: "?".into(),
            fentry: "?".into(),
            results: BTreeMap::new(),
        };
        for line in log.lines() {
            let line = line.trim_end_matches('\r');
            if let Some(rest) = line.strip_prefix("RESULT ") {
                let mut parts = rest.split_whitespace();
                if let (Some(name), Some(verdict)) = (parts.next(), parts.next()) {
                    let secs = parts.next().unwrap_or("").to_owned();
                    row.results
                        .insert(name.to_owned(), (verdict == "pass", secs));
                }
            } else if let Some(rest) = line.strip_prefix("VM kernel ") {
                row.release = rest.split_whitespace().next().unwrap_or("?").to_owned();
            } else if let Some(json) = line.strip_prefix("VM check ") {
                if let Ok(v) = serde_json::from_str::<Value>(json) {
                    row.capture = v["capture_path"].as_str().unwrap_or("none").to_owned();
                    for c in v["checks"].as_array().into_iter().flatten() {
                        let yes = if c["available"] == true { "yes" } else { "no" };
                        match c["name"].as_str() {
                            Some("lsm") => row.lsm = yes.into(),
                            Some("fentry") => row.fentry = yes.into(),
                            _ => {}
                        }
                    }
                }
            }
        }
        row
    }
}

/// A test x kernel table: what each kernel offered, then each test's result there.
fn print_table(rows: &[Row], tests: &[String]) {
    let mut lines = vec![std::iter::once("kernel".to_owned())
        .chain(rows.iter().map(|r| r.kernel.clone()))
        .collect::<Vec<_>>()];
    type Fact = (&'static str, fn(&Row) -> String);
    let facts: [Fact; 5] = [
        ("release", |r| r.release.clone()),
        ("qemu", |r| r.accel.to_owned()),
        ("capture path", |r| r.capture.clone()),
        ("bpf LSM", |r| r.lsm.clone()),
        ("fentry", |r| r.fentry.clone()),
    ];
    for (name, fact) in facts {
        lines.push(
            std::iter::once(name.to_owned())
                .chain(rows.iter().map(fact))
                .collect(),
        );
    }
    for t in tests {
        lines.push(
            std::iter::once(t.clone())
                .chain(rows.iter().map(|r| match r.results.get(t) {
                    Some((true, secs)) => format!("pass {secs}"),
                    Some((false, secs)) => format!("FAIL {secs}"),
                    None => "FAIL (no result)".to_owned(),
                }))
                .collect(),
        );
    }
    let widths: Vec<usize> = (0..lines[0].len())
        .map(|i| lines.iter().map(|l| l[i].len()).max().unwrap_or(0))
        .collect();
    println!();
    for l in &lines {
        let cells: Vec<String> = l
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
    println!();
}

/// The Debian package for `version` ("6.1": the newest linux-image-6.1.0-N-cloud-amd64; "6.12":
/// the newest linux-image-6.12.P+deb12-amd64), downloaded and extracted once; its vmlinuz.
pub fn kernel(work: &Path, version: &str) -> Result<PathBuf> {
    let mut names = candidates(version)?;
    if names.is_empty() {
        say("apt-get update (no kernel packages in the package lists)");
        sh(Command::new("apt-get").args(["update", "-q"]))?;
        names = candidates(version)?;
    }
    let debs = work.join("debs");
    fs::create_dir_all(&debs)?;
    for name in names.iter().rev().take(3) {
        let dir = work.join(format!("x-{name}"));
        if let Some(v) = vmlinuz_in(&dir) {
            return Ok(v);
        }
        let existing = find_deb(&debs, name);
        let deb = match existing {
            Some(d) => d,
            None => {
                say(&format!("apt-get download {name}"));
                let ok = Command::new("apt-get")
                    .args(["download", "-q", name])
                    .current_dir(&debs)
                    .status()
                    .is_ok_and(|s| s.success());
                match (ok, find_deb(&debs, name)) {
                    (true, Some(d)) => d,
                    _ => {
                        say(&format!(
                            "{name} could not be downloaded; trying an older one"
                        ));
                        continue;
                    }
                }
            }
        };
        sh(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&dir))?;
        if let Some(v) = vmlinuz_in(&dir) {
            return Ok(v);
        }
        bail!("{} holds no boot/vmlinuz-*", deb.display());
    }
    bail!("no Debian kernel package for {version} could be downloaded (looked for: {names:?})")
}

/// Package names for `version`, oldest to newest.
fn candidates(version: &str) -> Result<Vec<String>> {
    let out = Command::new("apt-cache")
        .args(["pkgnames", "linux-image-"])
        .output()
        .context("running apt-cache")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut found: Vec<(u64, String)> = text
        .lines()
        .filter_map(|name| {
            let n = match version {
                "6.1" => name
                    .strip_prefix("linux-image-6.1.0-")?
                    .strip_suffix("-cloud-amd64")?,
                "6.12" => name
                    .strip_prefix("linux-image-6.12.")?
                    .strip_suffix("+deb12-amd64")?,
                _ => return None,
            };
            Some((n.parse().ok()?, name.to_owned()))
        })
        .collect();
    if !matches!(version, "6.1" | "6.12") {
        bail!("unknown kernel {version}: this test knows 6.1 and 6.12");
    }
    found.sort();
    Ok(found.into_iter().map(|(_, n)| n).collect())
}

fn find_deb(dir: &Path, name: &str) -> Option<PathBuf> {
    find_file(dir, |f| {
        f.starts_with(&format!("{name}_")) && f.ends_with(".deb")
    })
}

fn vmlinuz_in(dir: &Path) -> Option<PathBuf> {
    find_file(&dir.join("boot"), |f| f.starts_with("vmlinuz-"))
}

/// The first entry of `dir` whose file name satisfies `pred`.
fn find_file(dir: &Path, pred: impl Fn(&str) -> bool) -> Option<PathBuf> {
    fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|f| f.to_str()).is_some_and(&pred))
}

/// Builds target/vm-test/initrd.gz from scratch (it holds this build's detector and tests).
fn initramfs(root: &Path, work: &Path, plan: &Plan) -> Result<PathBuf> {
    let tree = work.join("root");
    if tree.exists() {
        fs::remove_dir_all(&tree)?;
    }
    for d in [
        "bin", "sbin", "usr/bin", "etc", "proc", "sys", "dev", "tmp", "root", "tests", "fixtures",
    ] {
        fs::create_dir_all(tree.join(d))?;
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .context("busybox not found (package busybox-static)")?;
    copy(busybox, &tree.join("bin/busybox"))?;
    // /init's interpreter; it installs the other applets itself.
    std::os::unix::fs::symlink("busybox", tree.join("bin/sh"))?;
    let detector = root.join("target/release/detector");
    copy(&detector, &tree.join("bin/detector"))?;
    let mut dynamic = vec![detector];
    let programs: BTreeSet<&str> = plan
        .iter()
        .flat_map(|(g, _, _)| g.programs.iter().copied())
        .collect();
    for p in programs {
        let path = which(p)?;
        copy(&path, &tree.join(format!("usr/bin/{p}")))?;
        dynamic.push(path);
    }
    let mut plan_text = String::new();
    for (g, exe, names) in plan {
        copy(exe, &tree.join("tests").join(g.binary))?;
        dynamic.push(exe.clone());
        for n in names {
            plan_text.push_str(&format!("{} {n}\n", g.binary));
        }
    }
    fs::write(tree.join("tests/plan"), plan_text)?;
    dynamic.extend(fixtures(root, &tree.join("fixtures"))?);
    let mut libs = BTreeSet::new();
    for bin in &dynamic {
        libs.extend(shared_libraries(bin)?);
    }
    for lib in &libs {
        install_from_host(&tree, lib)?;
    }
    // /usr (the programs and, through /lib -> usr/lib, the libraries) goes on an ext2 image that
    // the guest mounts over a loop device: a library loaded from the initramfs (ramfs) is one
    // the detector reports as unsafe, one loaded from a disk filesystem is not.
    let usr = tree.join("usr");
    let size_kib = du_kib(&usr)? * 5 / 4 + 8192;
    let image = tree.join("usr.img");
    sh(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext2", "-E", "root_owner=0:0", "-d"])
        .arg(&usr)
        .arg(&image)
        .arg(format!("{size_kib}k"))
        .stdout(Stdio::null()))?;
    fs::remove_dir_all(&usr)?;
    fs::create_dir(&usr)?;
    fs::write(tree.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    fs::write(tree.join("etc/group"), "root:x:0:\n")?;
    fs::write(tree.join("etc/hostname"), "vm-test\n")?;
    let init = tree.join("init");
    copy(&root.join("tests/vm/init.sh"), &init)?;
    fs::set_permissions(&init, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let initrd = work.join("initrd.gz");
    sh(Command::new("sh")
        .arg("-c")
        .arg("find . -print0 | cpio --null -o -H newc --quiet | gzip -1 > \"$0\"")
        .arg(&initrd)
        .current_dir(&tree))?;
    say(&format!(
        "built {} ({} tests, {} libraries, {} KiB)",
        initrd.display(),
        plan.iter().map(|(_, _, n)| n.len()).sum::<usize>(),
        libs.len(),
        fs::metadata(&initrd)?.len() / 1024
    ));
    Ok(initrd)
}

/// The disk usage of `dir`, in KiB.
pub fn du_kib(dir: &Path) -> Result<u64> {
    let out = Command::new("du").arg("-sk").arg(dir).output()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("du -sk {}", dir.display()))
}

/// The kernel modules the guest loads to mount its ext2 /usr image over a loop device, in load
/// order (each after the ones it depends on; ext4 needs a crc32c driver to mount anything);
/// those the kernel has built in are skipped.
const MODULES: &[&str] = &["loop", "crc16", "crc32c_generic", "mbcache", "jbd2", "ext4"];

/// `initrd` with a second archive appended (the kernel unpacks both) that holds this kernel's
/// `modules` (in load order) from its package, uncompressed, in /modules, and their load order (with
/// arguments) in /modules/order.
pub fn with_modules(
    work: &Path,
    kernel: &str,
    vmlinuz: &Path,
    initrd: &Path,
    modules: &[&str],
) -> Result<PathBuf> {
    let package = vmlinuz
        .parent()
        .and_then(Path::parent)
        .context("the kernel package's root")?;
    let dir = find_file(&package.join("lib/modules"), |_| true)
        .context("the kernel package holds no lib/modules/<release>")?;
    let builtin = fs::read_to_string(dir.join("modules.builtin")).unwrap_or_default();
    let tree = work.join(format!("modules-{kernel}"));
    if tree.exists() {
        fs::remove_dir_all(&tree)?;
    }
    fs::create_dir_all(tree.join("modules"))?;
    let mut order = String::new();
    for m in modules {
        let ko = format!("/{m}.ko");
        if builtin.lines().any(|l| l.ends_with(&ko)) {
            continue;
        }
        let found = walk(&dir)
            .into_iter()
            .find(|p| {
                let name = p.file_name().and_then(|f| f.to_str()).unwrap_or("");
                name.strip_prefix(*m)
                    .is_some_and(|rest| matches!(rest, ".ko" | ".ko.xz" | ".ko.zst"))
            })
            .with_context(|| format!("module {m} is neither built in nor in {}", dir.display()))?;
        let out = fs::File::create(tree.join(format!("modules/{m}.ko")))?;
        let name = found.to_string_lossy();
        let mut cmd = if name.ends_with(".xz") {
            let mut c = Command::new("xz");
            c.arg("-dc").arg(&found);
            c
        } else if name.ends_with(".zst") {
            let mut c = Command::new("zstd");
            c.arg("-dc").arg(&found);
            c
        } else {
            let mut c = Command::new("cat");
            c.arg(&found);
            c
        };
        sh(cmd.stdout(out))?;
        // max_loop: eight loop devices from the start, whatever the kernel's
        // CONFIG_BLK_DEV_LOOP_MIN_COUNT.
        let args = if *m == "loop" { " max_loop=8" } else { "" };
        order.push_str(&format!("{m}{args}\n"));
    }
    fs::write(tree.join("modules/order"), order)?;
    let out = work.join(format!("initrd-{kernel}.gz"));
    fs::copy(initrd, &out)?;
    sh(Command::new("sh")
        .arg("-c")
        .arg("find . -print0 | cpio --null -o -H newc --quiet | gzip -1 >> \"$0\"")
        .arg(&out)
        .current_dir(&tree))?;
    Ok(out)
}

/// Every file under `dir`, recursively.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            files.extend(walk(&p));
        } else {
            files.push(p);
        }
    }
    files
}

/// Compiles every tests/fixtures/*.c into `dir` with the flags of the test harness's `gcc()`
/// (tests/src/lib.rs) and the file names it looks for under `DETECTOR_FIXTURES`: a fixture with
/// a `main(` as a program named after it (exec_env.c: `exec_env`), the others as shared objects
/// (read_hook.c: `read_hook.so`). Returns the outputs.
fn fixtures(root: &Path, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut sources: Vec<PathBuf> = fs::read_dir(root.join("tests/fixtures"))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "c"))
        .collect();
    sources.sort();
    let mut outs = Vec::new();
    for src in sources {
        let stem = src
            .file_stem()
            .and_then(|s| s.to_str())
            .context("fixture name")?;
        let program = fs::read_to_string(&src)?.contains("main(");
        let out = dir.join(if program {
            stem.to_owned()
        } else {
            format!("{stem}.so")
        });
        let mut cmd = Command::new("gcc");
        if !program {
            cmd.args(["-shared", "-fPIC"]);
        }
        sh(cmd.arg("-o").arg(&out).arg(&src).arg("-ldl"))?;
        outs.push(out);
    }
    Ok(outs)
}

/// The absolute paths ldd names for `bin` (its libraries and the loader).
fn shared_libraries(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .with_context(|| format!("running ldd {}", bin.display()))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let path = match l.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

fn which(program: &str) -> Result<PathBuf> {
    ["/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(program))
        .find(|p| p.exists())
        .with_context(|| format!("{program} not found in /usr/bin or /bin"))
}

/// Copies the host's `path` to the same path under `tree`, recreating the symlinks met on the
/// way (a merged-/usr host's /lib -> usr/lib, /lib64/ld-linux-x86-64.so.2 -> the loader in
/// /lib/x86_64-linux-gnu), so that the guest's loader finds each file under every name the host's
/// does (ld.so looks for itself by its soname in its library directories when it loads an
/// LD_AUDIT module into a namespace of its own).
fn install_from_host(tree: &Path, path: &Path) -> Result<()> {
    let mut host = PathBuf::from("/");
    let parts: Vec<_> = path
        .strip_prefix("/")
        .unwrap_or(path)
        .components()
        .collect();
    for (i, part) in parts.iter().enumerate() {
        host.push(part);
        if !fs::symlink_metadata(&host)
            .with_context(|| format!("{}", host.display()))?
            .is_symlink()
        {
            continue;
        }
        let target = fs::read_link(&host)?;
        let inside = tree.join(host.strip_prefix("/")?);
        if fs::symlink_metadata(&inside).is_err() {
            fs::create_dir_all(inside.parent().context("a parent")?)?;
            std::os::unix::fs::symlink(&target, &inside)?;
        }
        let mut resolved = PathBuf::from("/");
        let rest = parts[i + 1..].iter();
        for c in host
            .parent()
            .context("a parent")?
            .join(&target)
            .components()
            .chain(rest.copied())
        {
            match c {
                std::path::Component::ParentDir => {
                    resolved.pop();
                }
                std::path::Component::Normal(n) => resolved.push(n),
                _ => {}
            }
        }
        return install_from_host(tree, &resolved);
    }
    copy(path, &tree.join(path.strip_prefix("/")?))
}

/// Copies the content (following symlinks) with the mode.
pub fn copy(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// What is known of KVM for the rest of the run: whether the next boot uses it, and why.
pub struct Kvm {
    usable: bool,
    why: String,
}

impl Kvm {
    /// What the next boot uses, for the logs.
    pub fn describe(&self) -> String {
        if self.usable {
            format!("KVM first ({})", self.why)
        } else {
            format!("TCG ({})", self.why)
        }
    }

    pub fn at_start() -> Kvm {
        let (usable, why) = if std::env::var("DETECTOR_VM_KVM").is_ok_and(|v| v == "off") {
            (false, "DETECTOR_VM_KVM=off".to_owned())
        } else if !Path::new("/dev/kvm").exists() {
            (false, "no /dev/kvm".to_owned())
        } else {
            (true, "/dev/kvm is there".to_owned())
        };
        Kvm { usable, why }
    }
}

/// How a boot ended.
#[derive(Debug, PartialEq)]
enum Boot {
    /// The guest printed on the serial console (first after `first_output`), then qemu exited
    /// (the guest powered off) or was killed at the boot timeout (`timed_out`).
    Ran {
        first_output: Duration,
        timed_out: bool,
    },
    /// Nothing on the serial console within the deadline; qemu killed.
    Silent(Duration),
    /// qemu reported a KVM internal error (it stops that guest for good); qemu killed.
    KvmError(String),
    /// qemu exited before the guest printed anything.
    Exited(String),
}

/// A guest to boot: a kernel, its initramfs, what its command line adds to the console and log
/// level, qemu's further arguments (drives), memory, and how long the boot may last.
pub struct Machine<'a> {
    pub vmlinuz: &'a Path,
    pub initrd: &'a Path,
    pub append: String,
    pub extra: Vec<String>,
    pub memory_mib: u32,
    pub timeout: Duration,
}

/// Boots with KVM while it is usable, else (or when the KVM guest hangs or fails) with TCG;
/// returns the accelerator that ran the tests and why that one. A KVM guest counts as running
/// once its /init printed `VM kernel `.
pub fn boot(
    kernel: &str,
    machine: &Machine,
    log: &Path,
    work: &Path,
    kvm: &mut Kvm,
) -> Result<(&'static str, String)> {
    if kvm.usable {
        let mut accel = vec!["-accel", "kvm", "-cpu", "host"];
        let simulate_hang = std::env::var("DETECTOR_VM_KVM").is_ok_and(|v| v == "hang");
        if simulate_hang {
            say("DETECTOR_VM_KVM=hang: the KVM guest's CPUs start stopped (qemu -S)");
            accel.push("-S");
        }
        let qemu_log = work.join(format!("qemu-{kernel}-kvm.log"));
        let started = Instant::now();
        let outcome = boot_with(machine, log, &qemu_log, &accel, FIRST_OUTPUT_DEADLINE)?;
        let failure = match outcome {
            Boot::Ran { first_output, .. }
                if fs::read_to_string(log).is_ok_and(|l| l.contains("VM kernel ")) =>
            {
                kvm.why = format!(
                    "KVM guests run here: the {kernel} guest printed after {:.1} s",
                    first_output.as_secs_f64()
                );
                return Ok(("kvm", kvm.why.clone()));
            }
            Boot::Ran { .. } => format!("the KVM guest for {kernel} stopped before /init ran"),
            Boot::Silent(after) => format!(
                "the KVM guest for {kernel} printed nothing on the serial console within {} s{}",
                after.as_secs(),
                first_line(&qemu_log)
                    .map(|l| format!(" (qemu: {l})"))
                    .unwrap_or_default()
            ),
            Boot::KvmError(line) => format!(
                "qemu reported a KVM internal error for the {kernel} guest after {:.0} s ({line})",
                started.elapsed().as_secs_f64()
            ),
            Boot::Exited(err) => format!("qemu with KVM failed for {kernel}: {err}"),
        };
        let _ = fs::rename(log, work.join(format!("serial-{kernel}-kvm.log")));
        kvm.usable = false;
        kvm.why = format!("{failure}; TCG for this kernel and the remaining ones");
        say(&format!("KVM unusable: {}", kvm.why));
    }
    let qemu_log = work.join(format!("qemu-{kernel}-tcg.log"));
    match boot_with(
        machine,
        log,
        &qemu_log,
        &["-accel", "tcg", "-cpu", "max"],
        FIRST_OUTPUT_DEADLINE_TCG,
    )? {
        Boot::Ran { timed_out, .. } => {
            if timed_out {
                say(&format!(
                    "the {kernel} guest did not power off within {} s; killed",
                    machine.timeout.as_secs()
                ));
            }
        }
        other => say(&format!("the TCG boot of {kernel} failed: {other:?}")),
    }
    Ok(("tcg", kvm.why.clone()))
}

fn boot_with(
    machine: &Machine,
    log: &Path,
    qemu_log: &Path,
    accel: &[&str],
    first_output_deadline: Duration,
) -> Result<Boot> {
    let _ = fs::remove_file(log);
    let mut child = Command::new("qemu-system-x86_64")
        .args(accel)
        .arg("-m")
        .arg(machine.memory_mib.to_string())
        .args(["-smp", "2"])
        .args(["-display", "none", "-monitor", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .arg("-kernel")
        .arg(machine.vmlinuz)
        .arg("-initrd")
        .arg(machine.initrd)
        .args(&machine.extra)
        // The kernel's boot messages reach the console (the first output the deadline waits
        // for); /init then lowers the console level to errors.
        .arg("-append")
        .arg(format!(
            "console=ttyS0 panic=-1 loglevel=7 {}",
            machine.append
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(qemu_log)?)
        .spawn()
        .context("starting qemu-system-x86_64 (package qemu-system-x86)")?;
    watch(
        &mut child,
        log,
        qemu_log,
        first_output_deadline,
        machine.timeout,
    )
}

/// Waits for a qemu `child` whose serial console is `log` and stderr `qemu_log`: kills it when
/// the console is still empty after `first_output_deadline`, when qemu reports a KVM internal
/// error, or at `timeout`.
fn watch(
    child: &mut Child,
    log: &Path,
    qemu_log: &Path,
    first_output_deadline: Duration,
    timeout: Duration,
) -> Result<Boot> {
    let started = Instant::now();
    let mut first_output = None;
    let stop = |child: &mut Child| {
        let _ = child.kill();
        let _ = child.wait();
    };
    loop {
        let exited = child.try_wait()?;
        if first_output.is_none() && fs::metadata(log).is_ok_and(|m| m.len() > 0) {
            first_output = Some(started.elapsed());
        }
        if let Some(status) = exited {
            return Ok(match first_output {
                Some(first_output) => Boot::Ran {
                    first_output,
                    timed_out: false,
                },
                None => Boot::Exited(format!(
                    "exit {status} without serial output: {}",
                    first_line(qemu_log).unwrap_or_default()
                )),
            });
        }
        let errors = fs::read_to_string(qemu_log).unwrap_or_default();
        if let Some(line) = errors.lines().find(|l| l.contains("KVM internal error")) {
            stop(child);
            return Ok(Boot::KvmError(line.trim().to_owned()));
        }
        if first_output.is_none() && started.elapsed() > first_output_deadline {
            stop(child);
            return Ok(Boot::Silent(first_output_deadline));
        }
        if started.elapsed() > timeout {
            stop(child);
            return Ok(Boot::Ran {
                first_output: first_output.unwrap_or_default(),
                timed_out: true,
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The first non-empty line of `path`.
fn first_line(path: &Path) -> Option<String> {
    fs::read_to_string(path)
        .ok()?
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_owned)
}

/// The last `n` lines of `text`, carriage returns removed.
pub fn last_lines(text: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

pub fn sh(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn say(msg: &str) {
    println!("[vm-test] {msg}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_serial_log() {
        let log = "VM kernel 6.1.0-56-cloud-amd64 lsm=bpf\r\n\
VM check {\"capture_path\":\"tracepoints\",\"checks\":[{\"name\":\"lsm\",\"available\":true},{\"name\":\"fentry\",\"available\":false}]}\n\
RESULT e2e_preload::read_hook_preloaded_into_cat pass 4.2s\n\
RESULT e2e_engine::preload_into_ssh_is_high_and_names_the_hook FAIL 11.0s (exit 101; 300 s at most)\n";
        let r = Row::parse("6.1", log);
        assert_eq!(r.release, "6.1.0-56-cloud-amd64");
        assert_eq!(
            (r.capture.as_str(), r.lsm.as_str(), r.fentry.as_str()),
            ("tracepoints", "yes", "no")
        );
        assert_eq!(
            r.results["e2e_preload::read_hook_preloaded_into_cat"],
            (true, "4.2s".to_owned())
        );
        assert!(!r.results["e2e_engine::preload_into_ssh_is_high_and_names_the_hook"].0);
    }

    #[test]
    fn finds_the_test_executables_and_their_tests() {
        let json = r#"{"reason":"compiler-artifact","target":{"name":"detector_tests","kind":["lib"]},"executable":null}
{"reason":"compiler-artifact","target":{"name":"e2e_preload","kind":["test"]},"executable":"/t/deps/e2e_preload-0a1b"}
{"reason":"build-finished","success":true}"#;
        let exes = test_executables(json);
        assert_eq!(exes.len(), 1);
        assert_eq!(exes["e2e_preload"], Path::new("/t/deps/e2e_preload-0a1b"));
        assert_eq!(
            listed_tests("ld_audit_library: test\nplain_exec_raises_nothing: test\n"),
            ["ld_audit_library", "plain_exec_raises_nothing"]
        );
    }

    #[test]
    fn every_guest_test_row_is_distinct() {
        let names: BTreeSet<&str> = GUEST_TESTS.iter().map(|g| g.binary).collect();
        assert_eq!(names.len(), GUEST_TESTS.len());
    }

    /// `watch` on stand-ins for qemu: a guest that never prints, one that prints and powers
    /// off, and a qemu that reports a KVM internal error.
    #[test]
    fn watch_tells_a_silent_guest_from_a_running_one() {
        let dir = std::env::temp_dir().join(format!("xtask-vm-watch-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let (log, qemu_log) = (dir.join("serial.log"), dir.join("qemu.log"));
        let spawn = |script: &str| {
            fs::write(&log, "").unwrap();
            Command::new("sh")
                .args(["-c", script, "sh"])
                .arg(&log)
                .stderr(fs::File::create(&qemu_log).unwrap())
                .spawn()
                .unwrap()
        };
        let short = Duration::from_millis(600);
        let long = Duration::from_secs(30);

        let started = Instant::now();
        let mut silent = spawn("exec sleep 30");
        assert_eq!(
            watch(&mut silent, &log, &qemu_log, short, long).unwrap(),
            Boot::Silent(short)
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(silent.try_wait().unwrap().is_some(), "killed and reaped");

        // Slow to finish, but it printed before the deadline: not cut short.
        let mut ran = spawn("echo 'Linux version' > \"$1\"; sleep 1.5");
        match watch(&mut ran, &log, &qemu_log, short, long).unwrap() {
            Boot::Ran {
                first_output,
                timed_out: false,
            } => assert!(first_output < short),
            other => panic!("{other:?}"),
        }

        let mut kvm = spawn("echo 'KVM internal error. Suberror: 1' >&2; exec sleep 30");
        assert!(matches!(
            watch(&mut kvm, &log, &qemu_log, long, long).unwrap(),
            Boot::KvmError(l) if l.starts_with("KVM internal error")
        ));
        let _ = fs::remove_dir_all(&dir);
    }
}
