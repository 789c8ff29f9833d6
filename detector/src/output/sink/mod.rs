//! Where alerts go: JSON lines on stdout or in a file, RFC 5424 syslog, or several at once.
mod json;
mod syslog;

use anyhow::Result;
use serde_json::Value;

pub use json::{FileSink, JsonLines};
pub use syslog::{SyslogAddr, SyslogSink};

use crate::{
    cli::Format,
    config::{Config, SyslogTarget},
    output::{alert::Alert, text::TextLines},
};

pub trait Sink {
    fn emit(&mut self, alert: &Alert) -> Result<()>;

    /// A record that is not an alert (periodic stats), on the same channel; informational.
    fn emit_record(&mut self, record: &Value) -> Result<()>;

    /// Reopens what the sink writes to (a rotated file); a no-op for most sinks.
    fn reopen(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Every sink gets every alert: one failing does not starve the others. The first error is
/// returned once all were tried.
pub struct Fanout(pub Vec<Box<dyn Sink + Send>>);

impl Fanout {
    fn each(&mut self, mut f: impl FnMut(&mut (dyn Sink + Send)) -> Result<()>) -> Result<()> {
        let mut first = None;
        for sink in &mut self.0 {
            if let Err(e) = f(sink.as_mut()) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Sink for Fanout {
    fn emit(&mut self, alert: &Alert) -> Result<()> {
        self.each(|s| s.emit(alert))
    }

    fn emit_record(&mut self, record: &Value) -> Result<()> {
        self.each(|s| s.emit_record(record))
    }

    fn reopen(&mut self) -> Result<()> {
        self.each(|s| s.reopen())
    }
}
/// The outputs the configuration's `[output]` section asks for, `format` for stdout.
pub fn from_config(cfg: &Config, format: Format) -> Result<Fanout> {
    let mut out: Vec<Box<dyn Sink + Send>> = Vec::new();
    if cfg.output.stdout {
        match format {
            Format::Json => out.push(Box::new(JsonLines(std::io::stdout()))),
            Format::Text => out.push(Box::new(TextLines::stdout())),
        }
    }
    if let Some(path) = &cfg.output.file {
        out.push(Box::new(FileSink::open(path)?));
    }
    if let Some(target) = &cfg.output.syslog {
        let addr = match target {
            SyslogTarget::Unix(p) => SyslogAddr::Unix(p.clone()),
            SyslogTarget::Udp(a) => SyslogAddr::Udp(*a),
            SyslogTarget::Tcp(a) => SyslogAddr::Tcp(*a),
        };
        out.push(Box::new(SyslogSink::connect(
            addr,
            cfg.output.syslog_facility.code(),
        )?));
    }
    Ok(Fanout(out))
}

/// What the sinks' tests share.
#[cfg(test)]
pub(crate) mod testing {
    use std::{
        path::{Path, PathBuf},
        sync::atomic::{AtomicU32, Ordering},
    };

    use serde_json::Value;

    use crate::output::alert::{Alert, Severity};

    pub fn alert(severity: Severity) -> Alert {
        let mut a = crate::output::alert::test_alert(4242, "2026-11-23T09:13:13.595123Z");
        a.severity = severity;
        // Non-ASCII and a newline: the syslog MSG stays one ASCII line.
        a.process.cmdline = "true café 🦀\nx".into();
        a
    }

    pub struct Tmp(pub PathBuf);

    impl Tmp {
        pub fn new() -> Self {
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "detector-sink-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Tmp(p)
        }
    }

    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    pub fn lines(p: &Path) -> Vec<Value> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    };

    use anyhow::bail;

    use super::{testing::*, *};
    use crate::output::alert::Severity;

    /// Counts what it is given; fails when told to.
    struct Probe {
        seen: Arc<AtomicU32>,
        fail: bool,
    }

    impl Sink for Probe {
        fn emit(&mut self, _: &Alert) -> Result<()> {
            self.seen.fetch_add(1, Ordering::Relaxed);
            if self.fail {
                bail!("probe failed");
            }
            Ok(())
        }

        fn emit_record(&mut self, _: &Value) -> Result<()> {
            self.emit(&alert(Severity::Low))
        }
    }

    #[test]
    fn fanout_tries_every_sink_and_returns_the_first_error() {
        let seen = Arc::new(AtomicU32::new(0));
        let probe = |fail| -> Box<dyn Sink + Send> {
            Box::new(Probe {
                seen: seen.clone(),
                fail,
            })
        };
        let t = Tmp::new();
        let path = t.0.join("alerts.json");
        let mut f = Fanout(vec![
            probe(true),
            probe(false),
            Box::new(FileSink::open(&path).unwrap()),
            probe(true),
        ]);
        let e = f.emit(&alert(Severity::High)).err().unwrap();
        assert_eq!(e.to_string(), "probe failed");
        assert_eq!(seen.load(Ordering::Relaxed), 3);
        assert_eq!(lines(&path).len(), 1);
        assert!(f.emit_record(&Value::Null).is_err());
        assert_eq!(seen.load(Ordering::Relaxed), 6);
        std::fs::remove_file(&path).unwrap();
        f.reopen().unwrap();
        assert!(f.emit(&alert(Severity::High)).is_err());
        assert_eq!(lines(&path).len(), 1, "the file sink reopened");
        assert!(Fanout(Vec::new()).emit(&alert(Severity::Low)).is_ok());
    }
}
