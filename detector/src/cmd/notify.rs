//! systemd readiness (sd_notify): "READY=1" to $NOTIFY_SOCKET once every program is attached.
use std::os::unix::net::{SocketAddr, UnixDatagram};

use anyhow::{Context as _, Result};

/// Tells the service manager a state (e.g. "READY=1"); nothing when not run by one.
pub fn notify(state: &str) -> Result<()> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let path = path.to_string_lossy().into_owned();
    let addr = match path.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt as _;
            SocketAddr::from_abstract_name(name.as_bytes())
        }
        None => SocketAddr::from_pathname(&path),
    }
    .with_context(|| format!("NOTIFY_SOCKET {path}"))?;
    let sock = UnixDatagram::unbound().context("notify socket")?;
    sock.send_to_addr(state.as_bytes(), &addr)
        .with_context(|| format!("notifying {path}"))?;
    Ok(())
}
