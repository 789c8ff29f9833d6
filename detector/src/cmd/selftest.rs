//! `detector selftest`: proves the sensor works on this host without a compiler there. It
//! writes the harmless libraries it carries to a private directory, runs the atomic tests
//! against a detector it starts (or the running service), checks each alert, removes what it
//! created, and prints a table. Exit 0 when every test was alerted as expected, 1 when not.
pub mod cases;
pub mod daemon;
pub mod expect;
pub mod interp;
pub mod interrupt;
pub mod memfd;
pub mod payload;
pub mod report;
pub mod source;

use std::{
    path::Path,
    process::{Command, ExitCode},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use crate::{cli::SelftestArgs, config};
use report::Row;
use source::Source;

pub fn run(args: SelftestArgs) -> Result<ExitCode> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("selftest must run as root: it loads the detector's eBPF programs or reads the service's alerts, and runs ssh and su");
    }
    interrupt::install()?;
    let exe = std::env::current_exe().context("finding this program (/proc/self/exe)")?;
    let ws = payload::Workspace::create(&std::env::temp_dir())?;
    let libs = cases::Libs::write(&ws)?;
    // Dropped before `ws`: the daemon stops before its directory goes.
    let (mut source, _daemon, against) = if args.against_service {
        let source = service_source(&args)?;
        let against = format!(
            "the {} service (alerts read from {})",
            args.unit,
            source.describe()
        );
        (source, None, against)
    } else {
        let (d, alerts) =
            daemon::Daemon::start(&exe, &ws, Duration::from_secs(args.ready_timeout))?;
        (
            Source::file(&alerts),
            Some(d),
            "a detector started for the test".to_owned(),
        )
    };
    let cases = cases::run_all(&ws, &libs, &exe)?;
    let rows = judge(&cases, &mut source, Duration::from_secs(args.timeout))?;
    print!("{}", report::table(&rows));
    let passed = rows.iter().filter(|r| r.ok).count();
    println!(
        "{passed}/{} tests alerted as expected, against {against}",
        rows.len()
    );
    Ok(if passed == rows.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Waits until every case that ran has its expected alert, at most `timeout`, then gives each
/// its row.
fn judge(cases: &[cases::Case], source: &mut Source, timeout: Duration) -> Result<Vec<Row>> {
    let deadline = Instant::now() + timeout;
    loop {
        let alerts = source.poll()?;
        let done = cases.iter().all(|c| match c.ran {
            Ok(pid) => c.expect.judge(pid, alerts).ok,
            Err(_) => true,
        });
        if done || Instant::now() > deadline {
            return Ok(cases
                .iter()
                .map(|c| {
                    let (ok, got) = match &c.ran {
                        Ok(pid) => {
                            let v = c.expect.judge(*pid, alerts);
                            (v.ok, v.got)
                        }
                        Err(why) => (false, format!("not run: {why}")),
                    };
                    Row {
                        test: c.name.to_owned(),
                        expected: c.expect.describe(),
                        got,
                        ok,
                    }
                })
                .collect());
        }
        interrupt::check()?;
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The running service's alerts: its configured output file, else its journal (stdout). Where
/// systemd runs the system, the unit must be active.
fn service_source(args: &SelftestArgs) -> Result<Source> {
    let systemd = Path::new("/run/systemd/system").is_dir();
    if systemd {
        let active = Command::new("systemctl")
            .args(["is-active", "--quiet", &args.unit])
            .status()
            .context("running systemctl is-active")?;
        if !active.success() {
            bail!(
                "the {} service is not active (systemctl is-active {})",
                args.unit,
                args.unit
            );
        }
    }
    let explicit = args.config.as_os_str() != config::DEFAULT_PATH;
    let cfg = config::load(&args.config, explicit)?;
    match (&cfg.output.file, cfg.output.stdout) {
        (Some(file), _) => Ok(Source::file(file)),
        (None, true) if systemd => Source::journal(&args.unit),
        (None, true) => bail!(
            "{}: the service writes alerts to stdout, and without systemd there is no journal to read them from (set [output] file)",
            args.config.display()
        ),
        (None, false) => bail!(
            "{}: the service writes alerts to neither a file nor stdout; selftest reads one of them (set [output] file or stdout = true)",
            args.config.display()
        ),
    }
}
