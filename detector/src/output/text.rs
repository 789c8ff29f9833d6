//! Human output for terminal sessions: one readable line per alert (`run --format text`), and
//! tables (`scan`, `analyze`). Colour only on a terminal and when NO_COLOR is not set.
use std::io::{IsTerminal as _, Write};

use anyhow::{Context as _, Result};
use serde_json::Value;

use crate::{
    capture::names,
    output::alert::{Alert, Severity},
    output::sink::Sink,
};

/// Whether stdout gets colour.
pub fn colour_stdout() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn paint(on: bool, code: &str, s: &str) -> String {
    if on {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_owned()
    }
}

fn severity_code(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "1;31",
        Severity::High => "31",
        Severity::Medium => "33",
        Severity::Low => "36",
        Severity::Info => "2",
    }
}

fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "CRITICAL",
        Severity::High => "HIGH",
        Severity::Medium => "MEDIUM",
        Severity::Low => "LOW",
        Severity::Info => "INFO",
    }
}

/// What the alert is about: the library (with its hooks), the file, or the target process.
fn object(a: &Alert) -> String {
    let mut out = String::new();
    if let Some(lib) = &a.library {
        out.push_str(&lib.path);
        if !lib.hooks.is_empty() {
            out.push_str(&format!(" hooks {}", lib.hooks.join(",")));
        }
        if !lib.unsafe_reasons.is_empty() {
            out.push_str(&format!(" ({})", lib.unsafe_reasons.join(",")));
        }
    } else if let Some(f) = &a.file {
        out.push_str(&format!("{} {:?}", f.path, f.operation).to_lowercase());
        if let Some(t) = &f.target_path {
            out.push_str(&format!(" -> {t}"));
        }
        if let Some(d) = &f.diff {
            for l in &d.added {
                out.push_str(&format!(" +[{l}]"));
            }
            for l in &d.removed {
                out.push_str(&format!(" -[{l}]"));
            }
        }
        if let Some(pm) = f.package_manager {
            out.push_str(&format!(" by {pm}"));
        }
    } else if let Some(t) = &a.target {
        out.push_str(&format!("-> {}[{}] {}", t.comm, t.pid, t.exe));
    }
    if let Some(c) = &a.config {
        out.push_str(&format!(" in {}:{}", c.path, c.line));
    }
    if let Some(p) = &a.preload {
        if let Some(from) = &p.inherited_from {
            out.push_str(&format!(" inherited from {}[{}]", from.exe, from.pid));
        }
    }
    out
}

/// The alert's detection ids, as the JSON schema spells them.
fn detection_ids(a: &Alert) -> Vec<String> {
    a.detections
        .iter()
        .filter_map(|d| serde_json::to_value(d).ok()?.as_str().map(str::to_owned))
        .collect()
}

fn who(a: &Alert) -> String {
    if a.process.is_none() {
        "-".to_owned()
    } else {
        format!("{}[{}]", a.process.comm, a.process.pid)
    }
}

/// One line: time, severity, rule, process, what, detections (and the count of a summary).
pub fn line(a: &Alert, colour: bool) -> String {
    let time = a.timestamp.get(11..23).unwrap_or(&a.timestamp);
    let sev = format!("{:<8}", severity_name(a.severity));
    let detections = detection_ids(a);
    let mut out = format!(
        "{} {} {} {} {} [{}]",
        paint(colour, "2", time),
        paint(colour, severity_code(a.severity), &sev),
        paint(colour, "1", &names::visible(&who(a))),
        a.rule,
        names::visible(&object(a)),
        detections.join(" "),
    );
    if a.count > 1 {
        out.push_str(&format!(" x{}", a.count));
    }
    out
}

/// A table of alerts, most severe first.
pub fn table(alerts: &[Alert], colour: bool) -> String {
    let mut sorted: Vec<&Alert> = alerts.iter().collect();
    sorted.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.process.pid.cmp(&b.process.pid))
    });
    let rows: Vec<[String; 5]> = sorted
        .iter()
        .map(|a| {
            [
                severity_name(a.severity).to_owned(),
                if a.process.is_none() {
                    "-".into()
                } else {
                    a.process.pid.to_string()
                },
                if a.process.is_none() {
                    "-".into()
                } else {
                    a.process.comm.clone()
                },
                detection_ids(a).join(","),
                object(a),
            ]
        })
        .collect();
    let header = ["SEVERITY", "PID", "PROCESS", "DETECTIONS", "WHAT"];
    render(&header, &rows, |row, i, cell| {
        if i == 0 && row < sorted.len() {
            paint(colour, severity_code(sorted[row].severity), cell)
        } else {
            cell.to_owned()
        }
    })
}

/// Left-aligned columns (the last one unpadded); `style` may colour a padded cell.
pub fn render<const N: usize>(
    header: &[&str; N],
    rows: &[[String; N]],
    style: impl Fn(usize, usize, &str) -> String,
) -> String {
    // A name with a newline or an escape sequence stays in its cell, visibly.
    let rows: Vec<[String; N]> = rows
        .iter()
        .map(|r| r.clone().map(|c| names::visible(&c)))
        .collect();
    let rows = &rows[..];
    let mut width = header.map(str::len);
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let fmt_row = |cells: Vec<String>, row: Option<usize>| {
        let mut line = String::new();
        for (i, c) in cells.iter().enumerate() {
            let padded = if i + 1 == N {
                c.clone()
            } else {
                format!("{c:<w$}  ", w = width[i])
            };
            line.push_str(&match row {
                Some(r) => style(r, i, &padded),
                None => padded,
            });
        }
        line.trim_end().to_owned() + "\n"
    };
    let mut out = fmt_row(header.iter().map(|h| h.to_string()).collect(), None);
    for (r, row) in rows.iter().enumerate() {
        out.push_str(&fmt_row(row.to_vec(), Some(r)));
    }
    out
}

/// `run --format text`: the live stream on stdout.
pub struct TextLines {
    colour: bool,
}

impl TextLines {
    pub fn stdout() -> Self {
        TextLines {
            colour: colour_stdout(),
        }
    }
}

impl Sink for TextLines {
    fn emit(&mut self, alert: &Alert) -> Result<()> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", line(alert, self.colour)).context("writing alert")?;
        out.flush().context("writing alert")
    }

    fn emit_record(&mut self, record: &Value) -> Result<()> {
        let text = format!(
            "stats: events {} lost {} alerts {}",
            record["events"], record["lost"], record["alerts"]
        );
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", paint(self.colour, "2", &text)).context("writing stats")?;
        out.flush().context("writing stats")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let t = render(
            &["A", "BB", "C"],
            &[["xxx".into(), "y".into(), "last column".into()]],
            |_, _, c| c.to_owned(),
        );
        assert_eq!(t, "A    BB  C\nxxx  y   last column\n");
    }
}
