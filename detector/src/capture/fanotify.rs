//! Capture: files created or written in the watched directories, from fanotify marks on those
//! directories (`FAN_REPORT_DFID_NAME`: each event names its directory by file handle and the
//! file by name). A mark costs nothing to opens and writes anywhere else; no program runs on
//! the open path for it.
//!
//! `FAN_CREATE` (a new regular file) and `FAN_MODIFY` (a write, a truncation) of a file in a
//! marked directory become `FileChange` events with operation `open_write`, the path the
//! directory's canonical path plus the name, and the header of the writing process (`pid` from
//! the event: the writer's thread group; the rest from `/proc/<pid>/status` while it lives,
//! else left for the process table). Repeats of one (path, pid) within `REPEAT_WINDOW` are one
//! event. Symbolic and hard links are the link tracepoints' (`FAN_CREATE` of a symbolic link,
//! or of a name whose file has other links and was not written, is left to them); renames and
//! unlinks are the rename and unlink tracepoints', which see both names in one event.
//!
//! Except for the sensor's own files where those tracepoints do not judge absolute names (they
//! judge names under /etc, the library directories and /var/lib/dpkg, and names relative to a
//! watched directory): their directories are marked for `FAN_MOVED_TO`, `FAN_MOVED_FROM` and
//! `FAN_DELETE` too, and a name of such a file moved in or out becomes a `rename` of that file,
//! its removal an `unlink`.
use std::{
    collections::HashMap,
    ffi::CString,
    fs,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    os::unix::fs::MetadataExt as _,
    time::{Duration, Instant},
};

use anyhow::{anyhow, Result};
use tokio::io::unix::AsyncFd;

use super::decode::{Event, FileChange, FileOp, Header};

/// Repeats of a (path, pid) within this long are one event (a writer's every `write`).
const REPEAT_WINDOW: Duration = Duration::from_millis(250);
/// Writes remembered for `REPEAT_WINDOW` at most.
const RECENT_MAX: usize = 4096;
/// The events a mark asks for.
const MASK: u64 = libc::FAN_CREATE | libc::FAN_MODIFY | libc::FAN_EVENT_ON_CHILD;
/// What the directories of the sensor's own files outside the kernel's absolute prefixes ask
/// for on top of `MASK`.
const SENSOR_MASK: u64 = libc::FAN_MOVED_TO | libc::FAN_MOVED_FROM | libc::FAN_DELETE;
/// The absolute names the rename and unlink tracepoints judge (`interesting_absolute` in
/// detector-ebpf's file_change.rs).
const KERNEL_PREFIXES: &[&str] = &[
    "/etc/",
    "/lib",
    "/usr/lib",
    "/usr/local/lib",
    "/var/lib/dpkg",
];
/// The longest file handle the kernel encodes (`MAX_HANDLE_SZ`).
const MAX_HANDLE_SZ: usize = 128;

/// A directory as fanotify names it: its filesystem's id and its file handle.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DirKey {
    fsid: [i32; 2],
    handle_type: i32,
    handle: Vec<u8>,
}

pub struct Watcher {
    fd: AsyncFd<OwnedFd>,
    state: State,
}

struct State {
    dirs: HashMap<DirKey, String>,
    recent: HashMap<(String, u32), Instant>,
    /// The sensor's files whose renames and unlinks fanotify reports.
    sensor_files: Vec<String>,
    self_pid: u32,
    buf: Vec<u8>,
}

impl Watcher {
    /// A fanotify group with a mark on each of `dirs` that exists, and on the directory of each
    /// of `sensor_files` the rename and unlink tracepoints do not judge; a directory that cannot
    /// be marked is logged and left out.
    pub fn start(dirs: &[String], sensor_files: &[String]) -> Result<Self> {
        if !super::preflight::has_sys_admin() {
            // An unprivileged group would be made, and report no writer's pid.
            return Err(anyhow!(
                "the watched places' writes need CAP_SYS_ADMIN (fanotify names the writer only to it)"
            ));
        }
        // SAFETY: plain system call.
        let raw = unsafe {
            libc::fanotify_init(
                libc::FAN_CLASS_NOTIF
                    | libc::FAN_REPORT_DFID_NAME
                    | libc::FAN_CLOEXEC
                    | libc::FAN_NONBLOCK,
                (libc::O_RDONLY | libc::O_CLOEXEC) as u32,
            )
        };
        if raw < 0 {
            return Err(anyhow!(
                "fanotify_init, for the watched places' writes: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: a new fd this function owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut marked = HashMap::new();
        let sensor_files: Vec<String> = sensor_files
            .iter()
            .filter(|f| !KERNEL_PREFIXES.iter().any(|p| f.starts_with(p)))
            .cloned()
            .collect();
        let sensor_dirs: Vec<String> = sensor_files
            .iter()
            .filter_map(|f| f.rsplit_once('/'))
            .map(|(d, _)| {
                if d.is_empty() {
                    "/".to_owned()
                } else {
                    d.to_owned()
                }
            })
            .collect();
        let marks = dirs
            .iter()
            .map(|d| (d, MASK))
            .chain(sensor_dirs.iter().map(|d| (d, MASK | SENSOR_MASK)));
        for (dir, mask) in marks {
            match mark(&fd, dir, mask) {
                Ok(key) => {
                    let canonical = fs::canonicalize(dir)
                        .ok()
                        .and_then(|p| p.to_str().map(str::to_owned))
                        .unwrap_or_else(|| dir.clone());
                    marked.entry(key).or_insert(canonical);
                }
                Err(e) => log::warn!("not watching writes in {dir}: {e}"),
            }
        }
        log::debug!("fanotify: {} directories marked", marked.len());
        // SAFETY: the fd belongs to the OwnedFd, which the AsyncFd owns until it is dropped.
        let fd = unsafe { AsyncFd::register(fd) }
            .map_err(|e| anyhow!("polling the fanotify group: {e}"))?;
        Ok(Watcher {
            fd,
            state: State {
                dirs: marked,
                recent: HashMap::new(),
                sensor_files,
                self_pid: std::process::id(),
                buf: vec![0; 64 * 1024],
            },
        })
    }

    /// Waits for events and hands each change to `f`.
    pub async fn read(&mut self, mut f: impl FnMut(Event)) -> Result<()> {
        let Watcher { fd, state } = self;
        let mut guard = fd
            .readable()
            .await
            .map_err(|e| anyhow!("waiting on the fanotify group: {e}"))?;
        loop {
            // SAFETY: reads into a buffer this struct owns, of its length.
            let n = unsafe {
                libc::read(
                    fd.get_ref().as_raw_fd(),
                    state.buf.as_mut_ptr().cast(),
                    state.buf.len(),
                )
            };
            if n == 0 {
                guard.clear_ready();
                return Ok(());
            }
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::WouldBlock {
                    guard.clear_ready();
                    return Ok(());
                }
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(anyhow!("reading the fanotify group: {e}"));
            }
            let now = Instant::now();
            if state.recent.len() > RECENT_MAX {
                state
                    .recent
                    .retain(|_, t| now.duration_since(*t) < REPEAT_WINDOW);
            }
            let len = n as usize;
            let mut off = 0;
            while let Some(raw) = parse(&state.buf[off..len]) {
                off += raw.len;
                if let Some(ev) = state.change(&raw, now) {
                    f(ev);
                }
            }
        }
    }
}

impl State {
    fn change(&mut self, raw: &RawEvent, now: Instant) -> Option<Event> {
        if raw.mask & libc::FAN_Q_OVERFLOW != 0 {
            log::warn!("fanotify queue overflowed: writes in the watched places were missed");
            return None;
        }
        if raw.pid == self.self_pid || raw.name.is_empty() || raw.name == "." {
            return None;
        }
        let dir = self.dirs.get(&raw.dir)?;
        let path = if dir == "/" {
            format!("/{}", raw.name)
        } else {
            format!("{dir}/{}", raw.name)
        };
        if raw.mask & SENSOR_MASK != 0 {
            // A name moved or removed: reported for the sensor's files only.
            if !self.sensor_files.contains(&path) {
                return None;
            }
            let op = if raw.mask & libc::FAN_DELETE != 0 {
                FileOp::Unlink
            } else {
                FileOp::Rename
            };
            return Some(Event::FileChange(FileChange {
                other_mount_ns: false,
                hdr: header(raw.pid),
                op,
                paths: vec![path],
            }));
        }
        if raw.mask & libc::FAN_MODIFY == 0 {
            // A creation only: links are the link tracepoints'.
            if let Ok(m) = fs::symlink_metadata(&path) {
                if m.file_type().is_symlink() || m.is_dir() || m.nlink() > 1 {
                    return None;
                }
            }
        }
        let key = (path, raw.pid);
        if let Some(t) = self.recent.get(&key) {
            if now.duration_since(*t) < REPEAT_WINDOW {
                return None;
            }
        }
        self.recent.insert(key.clone(), now);
        Some(Event::FileChange(FileChange {
            other_mount_ns: false,
            hdr: header(raw.pid),
            op: FileOp::OpenWrite,
            paths: vec![key.0],
        }))
    }
}

/// The next batch of changes from `watcher`; never, without one.
pub async fn changes(watcher: &mut Option<Watcher>) -> Result<Vec<Event>> {
    match watcher {
        Some(w) => {
            let mut out = Vec::new();
            w.read(|e| out.push(e)).await?;
            Ok(out)
        }
        None => std::future::pending().await,
    }
}

/// Marks `dir` for `mask` (creations and writes of its files, and for the sensor's directories
/// moves and removals); returns how fanotify will name it.
fn mark(fd: &OwnedFd, dir: &str, mask: u64) -> std::io::Result<DirKey> {
    let c = CString::new(dir).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let key = dir_key(&c)?;
    // SAFETY: a valid C string and fd.
    let r = unsafe {
        libc::fanotify_mark(
            fd.as_raw_fd(),
            libc::FAN_MARK_ADD | libc::FAN_MARK_ONLYDIR,
            mask,
            libc::AT_FDCWD,
            c.as_ptr(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(key)
}

/// `dir`'s filesystem id (statfs) and file handle (name_to_handle_at), as fanotify reports a
/// directory.
fn dir_key(dir: &CString) -> std::io::Result<DirKey> {
    // SAFETY: zeroed plain data, filled by the kernel.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(dir.as_ptr(), &mut st) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fsid_t is two ints (its fields are private in libc).
    let fsid: [i32; 2] = unsafe { std::mem::transmute(st.f_fsid) };
    // struct file_handle: handle_bytes (u32), handle_type (i32), then the handle.
    let mut fh = [0u8; 8 + MAX_HANDLE_SZ];
    fh[..4].copy_from_slice(&(MAX_HANDLE_SZ as u32).to_ne_bytes());
    let mut mount_id: libc::c_int = 0;
    // SAFETY: the buffer holds a file_handle with room for MAX_HANDLE_SZ bytes.
    let r = unsafe {
        libc::name_to_handle_at(
            libc::AT_FDCWD,
            dir.as_ptr(),
            fh.as_mut_ptr().cast(),
            &mut mount_id,
            0,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let bytes = u32::from_ne_bytes(fh[..4].try_into().unwrap()) as usize;
    let handle_type = i32::from_ne_bytes(fh[4..8].try_into().unwrap());
    Ok(DirKey {
        fsid,
        handle_type,
        handle: fh[8..8 + bytes.min(MAX_HANDLE_SZ)].to_vec(),
    })
}

/// One event of a `FAN_REPORT_DFID_NAME` group.
#[derive(Debug, PartialEq, Eq)]
struct RawEvent {
    len: usize,
    mask: u64,
    pid: u32,
    dir: DirKey,
    name: String,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The first event in `b` (`fanotify_event_metadata`, then info records); None at the end or
/// on a record that does not parse.
fn parse(b: &[u8]) -> Option<RawEvent> {
    let event_len = u32_at(b, 0)? as usize;
    let metadata_len = u16_at(b, 6)? as usize;
    if event_len < metadata_len || event_len > b.len() || metadata_len < 24 {
        return None;
    }
    let mask = u64::from_ne_bytes(b.get(8..16)?.try_into().ok()?);
    let pid = u32_at(b, 20)?;
    let mut dir = DirKey {
        fsid: [0, 0],
        handle_type: 0,
        handle: Vec::new(),
    };
    let mut name = String::new();
    let mut at = metadata_len;
    while at + 4 <= event_len {
        let info_type = b[at];
        let info_len = u16_at(b, at + 2)? as usize;
        if info_len < 4 || at + info_len > event_len {
            break;
        }
        let info = &b[at..at + info_len];
        if info_type == libc::FAN_EVENT_INFO_TYPE_DFID_NAME
            || info_type == libc::FAN_EVENT_INFO_TYPE_DFID
        {
            // header (4), fsid (8), handle_bytes (4), handle_type (4), handle, [name NUL]
            let fsid = [u32_at(info, 4)? as i32, u32_at(info, 8)? as i32];
            let bytes = u32_at(info, 12)? as usize;
            let handle_type = u32_at(info, 16)? as i32;
            let handle = info.get(20..20 + bytes)?.to_vec();
            dir = DirKey {
                fsid,
                handle_type,
                handle,
            };
            if info_type == libc::FAN_EVENT_INFO_TYPE_DFID_NAME {
                let rest = &info[20 + bytes..];
                let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
                name = String::from_utf8_lossy(&rest[..end]).into_owned();
            }
        }
        at += info_len;
    }
    Some(RawEvent {
        len: event_len,
        mask,
        pid,
        dir,
        name,
    })
}

/// The writer's header, from `/proc/<pid>/status` while it lives (else its pid alone: the
/// process table knows the rest).
fn header(pid: u32) -> Header {
    let mut hdr = Header {
        ktime_ns: monotonic_ns(),
        pid,
        tid: pid,
        ppid: 0,
        uid: 0,
        gid: 0,
        comm: String::new(),
    };
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return hdr;
    };
    status_fields(&mut hdr, &status);
    hdr
}

/// Fills `hdr`'s name, parent, uid and gid from a `/proc/<pid>/status` text; a field that is
/// missing or not a number leaves its value as it was (the name) or 0.
pub fn status_fields(hdr: &mut Header, status: &str) {
    let first = |v: &str| v.split_whitespace().next().and_then(|x| x.parse().ok());
    for line in status.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        match k {
            "Name" => hdr.comm = v.trim().to_owned(),
            "PPid" => hdr.ppid = first(v).unwrap_or(0),
            "Uid" => hdr.uid = first(v).unwrap_or(0),
            "Gid" => hdr.gid = first(v).unwrap_or(0),
            _ => {}
        }
    }
}

/// CLOCK_MONOTONIC in ns: the clock of the kernel programs' `ktime_ns`.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(mask: u64, pid: u32, handle: &[u8], name: &str) -> Vec<u8> {
        let mut info = vec![libc::FAN_EVENT_INFO_TYPE_DFID_NAME, 0, 0, 0];
        info.extend_from_slice(&7i32.to_ne_bytes());
        info.extend_from_slice(&9i32.to_ne_bytes());
        info.extend_from_slice(&(handle.len() as u32).to_ne_bytes());
        info.extend_from_slice(&1i32.to_ne_bytes());
        info.extend_from_slice(handle);
        info.extend_from_slice(name.as_bytes());
        info.push(0);
        while info.len() % 4 != 0 {
            info.push(0);
        }
        let info_len = info.len() as u16;
        info[2..4].copy_from_slice(&info_len.to_ne_bytes());
        let mut b = Vec::new();
        b.extend_from_slice(&((24 + info.len()) as u32).to_ne_bytes());
        b.extend_from_slice(&[3, 0]);
        b.extend_from_slice(&24u16.to_ne_bytes());
        b.extend_from_slice(&mask.to_ne_bytes());
        b.extend_from_slice(&(-1i32).to_ne_bytes());
        b.extend_from_slice(&pid.to_ne_bytes());
        b.extend_from_slice(&info);
        b
    }

    #[test]
    fn parses_a_dfid_name_event_and_the_next() {
        let mut b = record(libc::FAN_MODIFY, 42, &[1, 2, 3, 4, 5, 6, 7, 8], "su-l");
        let first = b.len();
        b.extend(record(libc::FAN_CREATE, 43, &[8; 8], "sed1Ab2C"));
        let e = parse(&b).unwrap();
        assert_eq!(e.len, first);
        assert_eq!(e.mask, libc::FAN_MODIFY);
        assert_eq!(e.pid, 42);
        assert_eq!(e.name, "su-l");
        assert_eq!(e.dir.fsid, [7, 9]);
        assert_eq!(e.dir.handle_type, 1);
        assert_eq!(e.dir.handle, vec![1, 2, 3, 4, 5, 6, 7, 8]);
        let e2 = parse(&b[first..]).unwrap();
        assert_eq!((e2.pid, e2.name.as_str()), (43, "sed1Ab2C"));
        assert!(parse(&b[first + e2.len..]).is_none());
    }

    #[test]
    fn a_short_or_inconsistent_record_ends_the_batch() {
        let b = record(libc::FAN_MODIFY, 42, &[1; 8], "x");
        assert!(parse(&b[..10]).is_none());
        assert!(parse(&b[..b.len() - 4]).is_none());
        let mut bad = b.clone();
        bad[6..8].copy_from_slice(&8u16.to_ne_bytes());
        assert!(parse(&bad).is_none());
    }
}
