//! Where alerts go.
use std::io::Write;

use anyhow::{Context as _, Result};

use crate::alert::Alert;

pub trait Sink {
    fn emit(&mut self, alert: &Alert) -> Result<()>;
}

/// One JSON object per line, flushed per alert so a reader sees it at once.
pub struct JsonLines<W: Write>(pub W);

impl<W: Write> Sink for JsonLines<W> {
    fn emit(&mut self, alert: &Alert) -> Result<()> {
        serde_json::to_writer(&mut self.0, alert).context("encoding alert")?;
        self.0.write_all(b"\n").context("writing alert")?;
        self.0.flush().context("writing alert")
    }
}
