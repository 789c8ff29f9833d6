//! Where the selftest reads the detector's alerts: the JSON lines of an output file, from the
//! size it had when the selftest began, or the lines a systemd unit wrote to the journal since
//! then.
use std::{
    io::{Read as _, Seek as _, SeekFrom},
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

/// Alerts written since the selftest began.
pub enum Source {
    File {
        path: PathBuf,
        offset: u64,
        partial: Vec<u8>,
        seen: Vec<Value>,
    },
    Journal {
        unit: String,
        /// `journalctl --since` argument: `@<unix seconds>`.
        since: String,
        seen: Vec<Value>,
    },
}

impl Source {
    /// The lines appended to `path` from now on (a file not there yet is read from its start).
    pub fn file(path: &Path) -> Source {
        let offset = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        Source::File {
            path: path.to_owned(),
            offset,
            partial: Vec::new(),
            seen: Vec::new(),
        }
    }

    /// What `unit` writes to the journal from now on (with a second's margin: the journal's
    /// timestamps and `--since` have a second's resolution).
    pub fn journal(unit: &str) -> Result<Source> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .context("the clock is before 1970")?;
        Ok(Source::Journal {
            unit: unit.to_owned(),
            since: format!("@{}", now.as_secs().saturating_sub(1)),
            seen: Vec::new(),
        })
    }

    /// For the report: where the alerts were read.
    pub fn describe(&self) -> String {
        match self {
            Source::File { path, .. } => path.display().to_string(),
            Source::Journal { unit, .. } => format!("the journal of {unit}"),
        }
    }

    /// Every JSON object written since the start, the new ones read now.
    pub fn poll(&mut self) -> Result<&[Value]> {
        match self {
            Source::File {
                path,
                offset,
                partial,
                seen,
            } => {
                let mut f = match std::fs::File::open(&*path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(seen),
                    Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
                };
                if f.metadata().map(|m| m.len()).unwrap_or(0) < *offset {
                    // Rotated or truncated: what is there now is new.
                    *offset = 0;
                    partial.clear();
                }
                f.seek(SeekFrom::Start(*offset))
                    .with_context(|| format!("reading {}", path.display()))?;
                let mut buf = Vec::new();
                f.read_to_end(&mut buf)
                    .with_context(|| format!("reading {}", path.display()))?;
                *offset += buf.len() as u64;
                partial.extend_from_slice(&buf);
                let complete = partial
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |i| i + 1);
                let lines: Vec<u8> = partial.drain(..complete).collect();
                seen.extend(parse_lines(&lines));
                Ok(seen)
            }
            Source::Journal { unit, since, seen } => {
                let out = Command::new("journalctl")
                    .args(["-u", unit, "-o", "cat", "--no-pager", "--since", since])
                    .output()
                    .context("running journalctl")?;
                if !out.status.success() {
                    bail!(
                        "journalctl -u {unit}: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
                *seen = parse_lines(&out.stdout);
                Ok(seen)
            }
        }
    }
}

/// The JSON objects among `text`'s lines (log lines and partial lines are skipped).
fn parse_lines(text: &[u8]) -> Vec<Value> {
    text.split(|&b| b == b'\n')
        .filter(|l| l.first() == Some(&b'{'))
        .filter_map(|l| serde_json::from_slice::<Value>(l).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_read_from_where_it_was_and_lines_complete() {
        let dir = std::env::temp_dir().join(format!("detector-source-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("alerts.jsonl");
        std::fs::write(&p, "{\"old\":1}\n").unwrap();
        let mut s = Source::file(&p);
        assert!(s.poll().unwrap().is_empty());
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        use std::io::Write as _;
        f.write_all(b"<6>a log line\n{\"new\":1}\n{\"new\":")
            .unwrap();
        assert_eq!(s.poll().unwrap().len(), 1);
        f.write_all(b"2}\n").unwrap();
        let seen = s.poll().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1]["new"], 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn journal_lines_keep_the_json_objects_only() {
        let out = b"<6>armed\n{\"event\":{\"kind\":\"alert\"}}\n<4>a warning\n{\"broken\"\n";
        let v = parse_lines(out);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0]["event"]["kind"], "alert");
    }
}
