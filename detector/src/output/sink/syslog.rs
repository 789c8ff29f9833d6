//! RFC 5424 syslog over a Unix datagram socket, UDP or TCP (RFC 6587 octet counting).
use std::{
    fmt,
    io::{self, Write},
    net::{SocketAddr, TcpStream, UdpSocket},
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context as _, Result};
use serde::Serialize;
use serde_json::Value;

use super::Sink;
use crate::output::alert::{Alert, Severity};

/// Where syslog messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogAddr {
    /// A local datagram socket, usually /dev/log.
    Unix(PathBuf),
    /// RFC 5426.
    Udp(SocketAddr),
    /// RFC 6587, octet-counting framing.
    Tcp(SocketAddr),
}

impl fmt::Display for SyslogAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyslogAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            SyslogAddr::Udp(a) => write!(f, "udp://{a}"),
            SyslogAddr::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// The most a send to the syslog daemon may block the pipeline.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
const APP_NAME: &str = "detector";
/// RFC 5424 NILVALUE.
const NIL: &str = "-";

/// RFC 5424 messages, one per alert:
/// `<PRI>1 TIMESTAMP HOSTNAME detector PID - - JSON`. The JSON is escaped to ASCII, so the MSG
/// needs no BOM and survives any relay.
pub struct SyslogSink {
    addr: SyslogAddr,
    facility: u8,
    hostname: String,
    procid: u32,
    /// None until connected, and after a send that failed: the next message connects again.
    conn: Option<Conn>,
}

enum Conn {
    Unix(UnixDatagram),
    /// Unconnected: every datagram names its destination.
    Udp(UdpSocket),
    Tcp(TcpStream),
}

impl SyslogSink {
    /// A sink that connects when it first sends. `facility` is the syslog facility code (0-23;
    /// auth is 4).
    pub fn new(addr: SyslogAddr, facility: u8) -> Result<Self> {
        if facility > 23 {
            bail!("syslog facility {facility} is out of range (0-23)");
        }
        Ok(SyslogSink {
            addr,
            facility,
            hostname: hostname(),
            procid: std::process::id(),
            conn: None,
        })
    }

    /// A sink connected to `addr` now.
    #[cfg(test)]
    pub fn connect(addr: SyslogAddr, facility: u8) -> Result<Self> {
        let mut s = Self::new(addr, facility)?;
        s.try_connect()?;
        Ok(s)
    }

    /// Connects unless connected.
    pub fn try_connect(&mut self) -> Result<()> {
        if self.conn.is_none() {
            self.conn = Some(self.open()?);
        }
        Ok(())
    }

    pub fn addr(&self) -> &SyslogAddr {
        &self.addr
    }

    fn open(&self) -> Result<Conn> {
        let addr = &self.addr;
        Ok(match addr {
            SyslogAddr::Unix(path) => Conn::Unix(connect_unix(path)?),
            SyslogAddr::Udp(a) => {
                let local: SocketAddr = if a.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    ([0u16; 8], 0).into()
                };
                let s = UdpSocket::bind(local)
                    .with_context(|| format!("opening a UDP socket for syslog at {addr}"))?;
                s.set_write_timeout(Some(IO_TIMEOUT))
                    .context("setting the syslog socket's timeout")?;
                Conn::Udp(s)
            }
            SyslogAddr::Tcp(a) => Conn::Tcp(connect_tcp(a)?),
        })
    }

    /// The whole RFC 5424 message for one JSON value.
    fn message(&self, severity: u8, timestamp: &str, value: &impl Serialize) -> Result<Vec<u8>> {
        let mut msg = format!(
            "<{}>1 {} {} {APP_NAME} {} {NIL} {NIL} ",
            self.facility * 8 + severity,
            rfc5424_timestamp(timestamp),
            self.hostname,
            self.procid,
        )
        .into_bytes();
        value
            .serialize(&mut serde_json::Serializer::with_formatter(
                &mut msg, AsciiJson,
            ))
            .context("encoding alert")?;
        Ok(msg)
    }

    /// Sends on the open connection; when that fails (a Unix socket whose daemon restarted, a
    /// TCP peer that closed) or there is none, connects again, once. A UDP socket has no peer:
    /// its errors are returned as they are. A send that timed out is not tried again (that
    /// would block the caller for a second `IO_TIMEOUT`); its connection, which may hold part of
    /// a TCP frame, is dropped.
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        if let Some(conn) = &mut self.conn {
            match conn.send(&self.addr, msg) {
                Ok(()) => return Ok(()),
                Err(e) if matches!(conn, Conn::Udp(_)) => return Err(e),
                Err(e) => {
                    self.conn = None;
                    if timed_out(&e) {
                        return Err(e);
                    }
                }
            }
        }
        let mut conn = self.open()?;
        conn.send(&self.addr, msg)?;
        self.conn = Some(conn);
        Ok(())
    }
}

impl Conn {
    fn send(&mut self, addr: &SyslogAddr, msg: &[u8]) -> Result<()> {
        match (self, addr) {
            (Conn::Udp(s), SyslogAddr::Udp(to)) => {
                s.send_to(msg, to)
                    .with_context(|| format!("sending to syslog at {addr}"))?;
            }
            (Conn::Unix(s), SyslogAddr::Unix(_)) => {
                s.send(msg)
                    .with_context(|| format!("sending to syslog at {addr}"))?;
            }
            (Conn::Tcp(s), SyslogAddr::Tcp(_)) => {
                // A peer that closed takes one more write without error (and loses it): check
                // first.
                if !peer_open(s) {
                    bail!("syslog at {addr} closed the connection");
                }
                // RFC 6587 octet counting: "LEN SP MSG".
                let mut frame = format!("{} ", msg.len()).into_bytes();
                frame.extend_from_slice(msg);
                s.write_all(&frame)
                    .with_context(|| format!("sending to syslog at {addr}"))?;
            }
            _ => bail!("syslog at {addr}: internal error, the socket is of another kind"),
        }
        Ok(())
    }
}

impl Sink for SyslogSink {
    fn emit(&mut self, alert: &Alert) -> Result<()> {
        let msg = self.message(severity_code(alert.severity), &alert.timestamp, alert)?;
        self.send(&msg)
    }

    fn emit_record(&mut self, record: &Value) -> Result<()> {
        let ts = record["@timestamp"].as_str().unwrap_or(NIL);
        let msg = self.message(6, ts, record)?;
        self.send(&msg)
    }
}

/// RFC 5424 severity for an alert's severity (the journal's PRIORITY uses the same codes).
pub(crate) fn severity_code(s: Severity) -> u8 {
    match s {
        Severity::Critical => 2,
        Severity::High => 3,
        Severity::Medium => 4,
        Severity::Low => 5,
        Severity::Info => 6,
    }
}

fn connect_unix(path: &Path) -> Result<UnixDatagram> {
    let s = UnixDatagram::unbound().context("opening a Unix datagram socket for syslog")?;
    s.connect(path)
        .with_context(|| format!("connecting to syslog at unix:{}", path.display()))?;
    s.set_write_timeout(Some(IO_TIMEOUT))
        .context("setting the syslog socket's timeout")?;
    Ok(s)
}

fn connect_tcp(to: &SocketAddr) -> Result<TcpStream> {
    let s = TcpStream::connect_timeout(to, IO_TIMEOUT)
        .with_context(|| format!("connecting to syslog at tcp://{to}"))?;
    s.set_write_timeout(Some(IO_TIMEOUT))
        .context("setting the syslog socket's timeout")?;
    Ok(s)
}

fn timed_out(e: &anyhow::Error) -> bool {
    e.downcast_ref::<io::Error>().is_some_and(|e| {
        matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        )
    })
}

/// False once the peer has closed (or reset) the connection. A syslog server sends nothing, so
/// anything to read is an end of file or an error.
fn peer_open(s: &TcpStream) -> bool {
    if s.set_nonblocking(true).is_err() {
        return false;
    }
    let open = match s.peek(&mut [0u8; 1]) {
        Ok(n) => n > 0,
        Err(e) => e.kind() == io::ErrorKind::WouldBlock,
    };
    s.set_nonblocking(false).is_ok() && open
}

/// The host's name as RFC 5424 HOSTNAME (1-255 printable ASCII), else NILVALUE.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it or we
    // stop at its end.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    nil_unless(&name, |n| {
        n.len() <= 255 && n.bytes().all(|b| b.is_ascii_graphic())
    })
    .to_string()
}

/// The timestamp if it is an RFC 5424 TIMESTAMP (RFC 3339 with at most 6 fraction digits),
/// else NILVALUE.
fn rfc5424_timestamp(ts: &str) -> &str {
    nil_unless(ts, |ts| {
        let b = ts.as_bytes();
        let digits =
            |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
        if !(b.len() >= 20
            && digits(0..4)
            && b[4] == b'-'
            && digits(5..7)
            && b[7] == b'-'
            && digits(8..10)
            && b[10] == b'T'
            && digits(11..13)
            && b[13] == b':'
            && digits(14..16)
            && b[16] == b':'
            && digits(17..19))
        {
            return false;
        }
        let mut i = 19;
        if b[i] == b'.' {
            let n = b[i + 1..].iter().take_while(|d| d.is_ascii_digit()).count();
            if !(1..=6).contains(&n) {
                return false;
            }
            i += 1 + n;
        }
        match &b[i..] {
            [b'Z'] => true,
            [b'+' | b'-', h1, h2, b':', m1, m2] => {
                [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit())
            }
            _ => false,
        }
    })
}

fn nil_unless(s: &str, ok: impl Fn(&str) -> bool) -> &str {
    if !s.is_empty() && ok(s) {
        s
    } else {
        NIL
    }
}

/// Compact JSON with every non-ASCII character escaped (\uXXXX): the same value, in ASCII.
struct AsciiJson;

impl serde_json::ser::Formatter for AsciiJson {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if !c.is_ascii() {
                w.write_all(&fragment.as_bytes()[start..i])?;
                for unit in c.encode_utf16(&mut [0u16; 2]) {
                    write!(w, "\\u{unit:04x}")?;
                }
                start = i + c.len_utf8();
            }
        }
        w.write_all(&fragment.as_bytes()[start..])
    }
}
#[cfg(test)]
mod tests {
    use std::{io::Read as _, net::TcpListener, time::Instant};

    use super::{super::testing::*, *};

    /// Splits an RFC 5424 message into its header fields, checks them, and returns the MSG.
    fn check_5424(msg: &str, pri: u8, a: &Alert) -> Value {
        assert!(msg.is_ascii() && !msg.contains('\n'), "{msg}");
        assert!(msg.starts_with(&format!("<{pri}>1 ")), "{msg}");
        let f: Vec<&str> = msg.splitn(8, ' ').collect();
        assert_eq!(f.len(), 8, "{msg}");
        assert_eq!(f[1], a.timestamp);
        assert_eq!(f[2], hostname());
        assert_ne!(f[2], "");
        assert_eq!(f[3], "detector");
        assert_eq!(f[4], std::process::id().to_string());
        assert_eq!((f[5], f[6]), ("-", "-"));
        let json: Value = serde_json::from_str(f[7]).unwrap();
        assert_eq!(json, serde_json::to_value(a).unwrap());
        json
    }

    #[test]
    fn syslog_udp() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut sink = SyslogSink::connect(SyslogAddr::Udp(rx.local_addr().unwrap()), 4).unwrap();
        let a = alert(Severity::High);
        sink.emit(&a).unwrap();
        let mut buf = [0u8; 65536];
        let n = rx.recv(&mut buf).unwrap();
        let msg = std::str::from_utf8(&buf[..n]).unwrap();
        // auth (4) * 8 + err (3)
        let json = check_5424(msg, 35, &a);
        assert_eq!(json["process"]["command_line"], "true café 🦀\nx");
        assert!(
            msg.contains(r#""command_line":"true caf\u00e9 \ud83e\udd80\nx""#),
            "{msg}"
        );
    }

    #[test]
    fn syslog_severities_and_facility() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // local0 (16)
        let mut sink = SyslogSink::connect(SyslogAddr::Udp(rx.local_addr().unwrap()), 16).unwrap();
        let mut buf = [0u8; 65536];
        for (sev, code) in [
            (Severity::Critical, 2),
            (Severity::High, 3),
            (Severity::Medium, 4),
            (Severity::Low, 5),
        ] {
            let a = alert(sev);
            sink.emit(&a).unwrap();
            let n = rx.recv(&mut buf).unwrap();
            check_5424(std::str::from_utf8(&buf[..n]).unwrap(), 128 + code, &a);
        }
        sink.emit_record(
            &serde_json::json!({"@timestamp": "2026-01-02T03:04:05Z", "record": "stats"}),
        )
        .unwrap();
        let n = rx.recv(&mut buf).unwrap();
        let msg = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(msg.starts_with("<134>1 2026-01-02T03:04:05Z "), "{msg}");
        assert!(
            msg.ends_with(r#" - - {"@timestamp":"2026-01-02T03:04:05Z","record":"stats"}"#),
            "{msg}"
        );
    }

    #[test]
    fn syslog_tcp_octet_counting_and_reconnect() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut sink =
            SyslogSink::connect(SyslogAddr::Tcp(listener.local_addr().unwrap()), 4).unwrap();
        let mut conn = accept_within(&listener);
        let (a, b) = (alert(Severity::Critical), alert(Severity::Low));
        sink.emit(&a).unwrap();
        sink.emit(&b).unwrap();
        let frames = read_frames(&mut conn, 2);
        check_5424(&frames[0], 34, &a);
        check_5424(&frames[1], 37, &b);

        // The server goes away and comes back (same listener): the next alert is not lost.
        drop(conn);
        std::thread::sleep(Duration::from_millis(100));
        sink.emit(&a).unwrap();
        let mut conn = accept_within(&listener);
        check_5424(&read_frames(&mut conn, 1)[0], 34, &a);
    }

    #[test]
    fn syslog_tcp_reports_a_server_that_stays_away() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut sink = SyslogSink::connect(SyslogAddr::Tcp(addr), 4).unwrap();
        drop(accept_within(&listener));
        drop(listener);
        std::thread::sleep(Duration::from_millis(100));
        let e = sink.emit(&alert(Severity::High)).err().unwrap();
        assert!(format!("{e:#}").contains(&format!("tcp://{addr}")), "{e:#}");
        assert!(SyslogSink::connect(SyslogAddr::Tcp(addr), 4).is_err());
    }

    #[test]
    fn syslog_can_start_before_its_server() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut sink = SyslogSink::new(SyslogAddr::Tcp(addr), 4).unwrap();
        assert!(sink.try_connect().is_err());
        let a = alert(Severity::High);
        assert!(sink.emit(&a).is_err());
        let listener = TcpListener::bind(addr).unwrap();
        sink.emit(&a).unwrap();
        let mut conn = accept_within(&listener);
        check_5424(&read_frames(&mut conn, 1)[0], 35, &a);
        assert!(SyslogSink::new(SyslogAddr::Tcp(addr), 24).is_err());
    }

    fn accept_within(l: &TcpListener) -> TcpStream {
        l.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match l.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    return s;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "no connection within 5 s");
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    }

    /// Reads `n` RFC 6587 octet-counted frames.
    fn read_frames(s: &mut TcpStream, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        for _ in 0..n {
            let mut len = String::new();
            loop {
                let mut c = [0u8; 1];
                s.read_exact(&mut c).unwrap();
                if c[0] == b' ' {
                    break;
                }
                assert!(c[0].is_ascii_digit(), "frame length: {len}{}", c[0] as char);
                len.push(c[0] as char);
            }
            let mut msg = vec![0u8; len.parse().unwrap()];
            s.read_exact(&mut msg).unwrap();
            out.push(String::from_utf8(msg).unwrap());
        }
        out
    }

    #[test]
    fn syslog_unix_datagram() {
        let t = Tmp::new();
        let path = t.0.join("log");
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut sink = SyslogSink::connect(SyslogAddr::Unix(path.clone()), 4).unwrap();
        let a = alert(Severity::Medium);
        sink.emit(&a).unwrap();
        let mut buf = [0u8; 65536];
        let n = rx.recv(&mut buf).unwrap();
        check_5424(std::str::from_utf8(&buf[..n]).unwrap(), 36, &a);

        // The syslog daemon restarts: a new socket at the same path.
        drop(rx);
        std::fs::remove_file(&path).unwrap();
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        sink.emit(&a).unwrap();
        let n = rx.recv(&mut buf).unwrap();
        check_5424(std::str::from_utf8(&buf[..n]).unwrap(), 36, &a);

        drop(rx);
        std::fs::remove_file(&path).unwrap();
        let e = sink.emit(&a).err().unwrap();
        assert!(format!("{e:#}").contains("unix:"), "{e:#}");
    }

    #[test]
    fn syslog_connect_errors() {
        let e = SyslogSink::connect(SyslogAddr::Unix("/nonexistent/log".into()), 4)
            .err()
            .unwrap();
        assert_eq!(format!("{e:#}").lines().count(), 1, "one line: {e:#}");
        assert!(format!("{e:#}").contains("unix:/nonexistent/log"), "{e:#}");
        let udp = SyslogAddr::Udp("127.0.0.1:514".parse().unwrap());
        assert!(SyslogSink::connect(udp.clone(), 24).is_err());
        assert_eq!(udp.to_string(), "udp://127.0.0.1:514");
    }

    #[test]
    fn timestamps_and_hostnames_are_rfc5424_or_nil() {
        for ok in [
            "2026-11-23T09:13:13.595123Z",
            "2026-11-23T09:13:13Z",
            "2026-11-23T09:13:13.5+02:00",
            "2026-11-23T09:13:13-07:30",
        ] {
            assert_eq!(rfc5424_timestamp(ok), ok);
        }
        for bad in [
            "",
            "2026-11-23T09:13:13.5951234Z",
            "2026-11-23 09:13:13Z",
            "2026-11-23T09:13:13",
            "2026-11-23T09:13:13.Z",
            "2026-11-23T09:13:13+0200",
            "yesterday",
        ] {
            assert_eq!(rfc5424_timestamp(bad), "-", "{bad}");
        }
        let h = hostname();
        assert!(!h.is_empty() && h.len() <= 255 && h.bytes().all(|b| b.is_ascii_graphic()));
    }
}
