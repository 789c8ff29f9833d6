//! JSON lines: on stdout (or any writer), or appended to a file that follows rotation.
use std::{
    fs::{File, OpenOptions},
    io::Write,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use serde::Serialize;
use serde_json::Value;

use super::Sink;
use crate::output::alert::Alert;

/// One JSON object per line, flushed per alert so a reader sees it at once. Written to the
/// journal, each line starts with its sd-daemon priority (`<2>` critical, `<3>` high, `<4>`
/// medium, `<5>` low, `<6>` info and records), which journald strips and stores as `PRIORITY`,
/// so that `journalctl -p err -u detector` selects high and critical alerts.
pub struct JsonLines<W: Write> {
    out: W,
    journal: bool,
}

impl JsonLines<std::io::Stdout> {
    /// JSON lines on stdout, with priorities when stdout is the journal.
    pub fn stdout() -> Self {
        let out = std::io::stdout();
        let journal = crate::output::log::is_journal(&out);
        JsonLines { out, journal }
    }
}

impl<W: Write> JsonLines<W> {
    #[cfg(test)]
    fn new(out: W, journal: bool) -> Self {
        JsonLines { out, journal }
    }

    fn line(&mut self, priority: u8, value: &impl Serialize) -> Result<()> {
        if self.journal {
            write!(self.out, "<{priority}>").context("writing alert")?;
        }
        serde_json::to_writer(&mut self.out, value).context("encoding alert")?;
        self.out.write_all(b"\n").context("writing alert")?;
        self.out.flush().context("writing alert")
    }
}

impl<W: Write> Sink for JsonLines<W> {
    fn emit(&mut self, alert: &Alert) -> Result<()> {
        self.line(super::syslog::severity_code(alert.severity), alert)
    }

    fn emit_record(&mut self, record: &Value) -> Result<()> {
        self.line(6, record)
    }
}

/// JSON lines appended to a file (created 0600). Each line goes out in one write, so lines from
/// another writer never interleave with it; `reopen` follows a rotation (logrotate, SIGHUP).
pub struct FileSink {
    path: PathBuf,
    file: File,
}

impl FileSink {
    pub fn open(path: &Path) -> Result<Self> {
        Ok(FileSink {
            file: open_append(path)?,
            path: path.to_path_buf(),
        })
    }

    fn line(&mut self, value: &impl Serialize) -> Result<()> {
        let mut line = serde_json::to_vec(value).context("encoding alert")?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .with_context(|| format!("writing alert to {}", self.path.display()))
    }
}

fn open_append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("opening alert file {}", path.display()))
}

impl Sink for FileSink {
    fn emit(&mut self, alert: &Alert) -> Result<()> {
        self.line(alert)
    }

    fn emit_record(&mut self, record: &Value) -> Result<()> {
        self.line(record)
    }

    /// Opens the path again; the old file is closed only once the new one is open, so a failed
    /// reopen keeps writing where it did.
    fn reopen(&mut self) -> Result<()> {
        self.file = open_append(&self.path)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::{super::testing::*, *};
    use crate::output::alert::Severity;

    #[test]
    fn file_sink_appends_lines_and_follows_rotation() {
        let t = Tmp::new();
        let path = t.0.join("alerts.json");
        let mut sink = FileSink::open(&path).unwrap();
        sink.emit(&alert(Severity::High)).unwrap();
        sink.emit(&alert(Severity::Low)).unwrap();
        let got = lines(&path);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0]["severity"], "high");
        assert_eq!(got[1]["process"]["command_line"], "true café 🦀\nx");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        // logrotate: rename, then SIGHUP.
        let rotated = t.0.join("alerts.json.1");
        std::fs::rename(&path, &rotated).unwrap();
        sink.emit(&alert(Severity::Medium)).unwrap();
        assert_eq!(lines(&rotated).len(), 3, "before reopen: the old file");
        sink.reopen().unwrap();
        sink.emit(&alert(Severity::Critical)).unwrap();
        sink.emit_record(&serde_json::json!({"record": "stats"}))
            .unwrap();
        assert_eq!(lines(&rotated).len(), 3);
        let new = lines(&path);
        assert_eq!(new.len(), 2);
        assert_eq!(new[0]["severity"], "critical");
        assert_eq!(new[1]["record"], "stats");
    }

    #[test]
    fn journal_lines_carry_the_alerts_priority() {
        let mut plain = JsonLines::new(Vec::new(), false);
        plain.emit(&alert(Severity::Critical)).unwrap();
        assert!(plain.out.starts_with(b"{\""));
        let mut journal = JsonLines::new(Vec::new(), true);
        for s in [Severity::Critical, Severity::High, Severity::Low] {
            journal.emit(&alert(s)).unwrap();
        }
        journal
            .emit_record(&serde_json::json!({"record": "stats"}))
            .unwrap();
        let text = String::from_utf8(journal.out).unwrap();
        let prefixes: Vec<&str> = text.lines().map(|l| &l[..3]).collect();
        assert_eq!(prefixes, ["<2>", "<3>", "<5>", "<6>"]);
        let first: Value = serde_json::from_str(&text.lines().next().unwrap()[3..]).unwrap();
        assert_eq!(first["severity"], "critical");
    }

    #[test]
    fn file_sink_appends_to_an_existing_file() {
        let t = Tmp::new();
        let path = t.0.join("alerts.json");
        std::fs::write(&path, "{\"old\":1}\n").unwrap();
        FileSink::open(&path)
            .unwrap()
            .emit(&alert(Severity::Low))
            .unwrap();
        let got = lines(&path);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0]["old"], 1);
    }

    #[test]
    fn file_sink_errors_name_the_path() {
        let e = FileSink::open(Path::new("/nonexistent-dir/alerts.json"))
            .err()
            .unwrap();
        assert!(
            format!("{e:#}").contains("/nonexistent-dir/alerts.json"),
            "{e:#}"
        );
    }
}
