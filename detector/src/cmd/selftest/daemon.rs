//! The detector the selftest starts for itself: `detector run` with a configuration of its own
//! in the selftest's directory, writing alerts to a file there. Stopped (SIGTERM, then SIGKILL)
//! when dropped, and by the kernel should the selftest die first.
use std::{
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use super::{interrupt, payload::Workspace};

/// How long the daemon may take to stop on SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

pub struct Daemon {
    child: Child,
    log: PathBuf,
    /// It said it was ready (its programs are attached).
    ready: bool,
}

/// The configuration: alerts as JSON lines to `alerts` only, every severity, no stats records.
fn config(alerts: &Path) -> String {
    format!(
        "[output]\nstdout = false\nfile = {}\n\n[thresholds]\nmin_severity = \"info\"\nstats_interval_secs = 0\n",
        toml_string(&alerts.to_string_lossy())
    )
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

impl Daemon {
    /// Starts `exe run` and waits until it is ready (its ready file exists), at most `wait`.
    /// Returns the daemon and the file its alerts go to.
    pub fn start(exe: &Path, ws: &Workspace, wait: Duration) -> Result<(Daemon, PathBuf)> {
        let alerts = ws.path("alerts.jsonl");
        let cfg = ws.path("detector.toml");
        std::fs::write(&cfg, config(&alerts))
            .with_context(|| format!("writing {}", cfg.display()))?;
        let ready = ws.path("ready");
        let log = ws.path("daemon.log");
        let stderr =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = Command::new(exe);
        cmd.arg("run")
            .arg("--config")
            .arg(&cfg)
            .arg("--ready-file")
            .arg(&ready)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            // Its own process group: a Ctrl-C reaches the selftest, which stops it in order.
            .process_group(0);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {} run", exe.display()))?;
        let mut d = Daemon {
            child,
            log,
            ready: false,
        };
        let deadline = Instant::now() + wait;
        while !ready.exists() {
            if let Some(st) = d.child.try_wait().context("waiting for the detector")? {
                bail!(
                    "the detector started for the test exited ({st}) before it was ready: {}",
                    d.last_log_line()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "the detector started for the test was not ready after {} s: {}",
                    wait.as_secs(),
                    d.last_log_line()
                );
            }
            interrupt::check()?;
            std::thread::sleep(Duration::from_millis(50));
        }
        d.ready = true;
        Ok((d, alerts))
    }

    /// The daemon's last line on stderr, for an error message.
    fn last_log_line(&self) -> String {
        std::fs::read_to_string(&self.log)
            .ok()
            .and_then(|s| {
                s.lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .map(str::to_owned)
            })
            .map_or_else(
                || "it wrote nothing on stderr".into(),
                |l| l.trim().to_owned(),
            )
    }

    /// Stops the daemon: once ready, SIGTERM (it detaches its programs and exits), SIGKILL after
    /// `STOP_GRACE`; before, SIGKILL at once (it defers SIGTERM until it is armed, and what it
    /// holds goes with its descriptors). Returns the exit status of a daemon that stopped on
    /// SIGTERM, None for one that was killed.
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        if let Ok(Some(st)) = self.child.try_wait() {
            return Some(st);
        }
        if self.ready {
            // SAFETY: plain kill(2) of our own child.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + STOP_GRACE;
            while Instant::now() < deadline {
                if let Ok(Some(st)) = self.child.try_wait() {
                    return Some(st);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            eprintln!(
                "detector selftest: the detector started for the test did not stop within {} s of SIGTERM; killing it",
                STOP_GRACE.as_secs()
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        match self.stop() {
            Some(st) if st.success() => {}
            Some(st) => eprintln!(
                "detector selftest: the detector started for the test exited with {st}: {}",
                self.last_log_line()
            ),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_configuration_parses() {
        let cfg = super::config(std::path::Path::new("/tmp/a \"b\"/alerts.jsonl"));
        let c = crate::config::parse(&cfg, "selftest").unwrap();
        assert!(!c.output.stdout);
        assert_eq!(
            c.output.file.as_deref(),
            Some(std::path::Path::new("/tmp/a \"b\"/alerts.jsonl"))
        );
        assert_eq!(c.thresholds.stats_interval_secs, 0);
    }
}
