//! The daemon's own log on stderr. Under systemd, when stderr is the journal (`JOURNAL_STREAM`
//! names stderr's device and inode), each line starts with its sd-daemon priority (`<3>` error,
//! `<4>` warning, `<6>` info, `<7>` debug), so that `journalctl -p warning -u detector` selects
//! by level; elsewhere lines are `[LEVEL target] message`.
use std::{io::Write as _, os::fd::AsRawFd};

use log::Level;

/// Starts the logger at `default_level` (RUST_LOG overrides it).
pub fn init(default_level: &str) {
    let journal = is_journal(&std::io::stderr());
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_level))
        .target(env_logger::Target::Stderr)
        .format(move |buf, r| {
            if journal {
                writeln!(buf, "<{}>{}: {}", priority(r.level()), r.target(), r.args())
            } else {
                writeln!(buf, "[{:<5} {}] {}", r.level(), r.target(), r.args())
            }
        })
        .init();
}

/// The line for an error that ends the program, with the journal's error priority there.
pub fn fatal_line(message: &str) -> String {
    if is_journal(&std::io::stderr()) {
        format!("<3>{message}")
    } else {
        message.to_owned()
    }
}

/// sd-daemon(3) priority of a log level.
fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// Whether `stream` (stdout, stderr) is the stream systemd connected to the journal:
/// `JOURNAL_STREAM` is `device:inode` of that stream, and `stream` is still it (not redirected by
/// a wrapper).
pub fn is_journal(stream: &impl AsRawFd) -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat of an open descriptor into a zeroed stat.
    let rc = unsafe { libc::fstat(stream.as_raw_fd(), &mut st) };
    rc == 0 && st.st_dev == dev && st.st_ino == ino
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_follow_sd_daemon() {
        assert_eq!(priority(Level::Error), 3);
        assert_eq!(priority(Level::Warn), 4);
        assert_eq!(priority(Level::Info), 6);
        assert_eq!(priority(Level::Trace), 7);
    }
}
