//! `detector events`: the capture alone. Every record the kernel programs send, and every
//! creation or write in the watched directories the fanotify group reports, is decoded and
//! written as one JSON object per line (the decoded event, under its kind's name); nothing of
//! the engine runs (no rules, enrichment or process table). A failure seen here and not in
//! `detector run` is the engine's; one not seen here is the kernel program's or the decoder's.
use std::{
    cell::RefCell,
    io::{self, BufWriter, Stdout},
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context as _, Result};
use detector_common::{EventKind, KernelConfig, CHANNELS};
use tokio::signal::unix::{signal, SignalKind};

use crate::{
    capture::decode::{decode, Event, Header},
    capture::fanotify::{self, Watcher},
    capture::load::{report_loss, Capture},
    cli::{EventsArgs, RING_BUFFER_KIB},
    engine::{credential::Catalogue, rules::config_change::Watched},
};

/// How often the ring buffer is drained while events flow (as in `detector run`: the programs
/// wake the reader only for some events, when a lot is queued, or after it said it is idle).
const DRAIN_EVERY: Duration = Duration::from_millis(20);
/// How often the kernel's lost-event counters are checked.
const LOSS_EVERY: Duration = Duration::from_secs(10);

pub fn run(args: EventsArgs) -> Result<ExitCode> {
    let (kcfg, rt) = super::capture_runtime()?;
    rt.block_on(serve(args, kcfg))
}

fn header(event: &Event) -> &Header {
    match event {
        Event::Exec(e) => &e.hdr,
        Event::LoaderEnv(e) => &e.hdr,
        Event::Mmap(e) => &e.hdr,
        Event::FileChange(e) => &e.hdr,
        Event::Exit(e) => &e.hdr,
        Event::MemTamper(e) => &e.hdr,
        Event::PreloadList(e) => &e.hdr,
        Event::MemRead(e) => &e.hdr,
        Event::Signal(e) => &e.hdr,
    }
}

/// Decodes, filters and writes events.
struct Printer<W: io::Write> {
    out: W,
    kinds: Vec<EventKind>,
    pids: Vec<u32>,
    /// The first write error (a closed pipe ends the command, cleanly).
    error: Option<io::Error>,
}

impl<W: io::Write> Printer<W> {
    fn wanted(&self, event: &Event) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&event.kind()))
            && (self.pids.is_empty() || self.pids.contains(&header(event).pid))
    }

    fn on_raw(&mut self, raw: &[u8]) {
        match decode(raw) {
            Ok(event) => self.on_event(&event),
            Err(e) => log::warn!("dropped a malformed event: {e}"),
        }
    }

    fn on_event(&mut self, event: &Event) {
        if self.error.is_some() || !self.wanted(event) {
            return;
        }
        let written = serde_json::to_writer(&mut self.out, event)
            .map_err(io::Error::from)
            .and_then(|()| self.out.write_all(b"\n"));
        if let Err(e) = written {
            self.error = Some(e);
        }
    }

    /// Flushes what a batch of records wrote; false once writing has failed.
    fn flush(&mut self) -> bool {
        if self.error.is_none() {
            if let Err(e) = self.out.flush() {
                self.error = Some(e);
            }
        }
        self.error.is_none()
    }
}

async fn serve(args: EventsArgs, kcfg: KernelConfig) -> Result<ExitCode> {
    // Before the ready file: a signal sent as soon as it appears must find its handler.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let dirs = Watched::discover().directories();
    let (mut capture, mut kernel_log) = Capture::start(
        kcfg,
        &dirs,
        RING_BUFFER_KIB * 1024,
        true, // every channel: `--kind` and `--pid` filter in user space
    )?;
    // The built-in catalogue: the kernel reports credential programs' mappings of a file
    // version whose first report nothing has decided on, as the daemon's kernel does.
    capture.set_credential_names(Catalogue::default().basenames())?;
    let mut writes = Some(Watcher::start(&dirs, &[])?);
    super::touch_ready(args.ready_file.as_deref())?;
    log::info!("armed: writing events on stdout");
    let printer: RefCell<Printer<BufWriter<Stdout>>> = RefCell::new(Printer {
        out: BufWriter::new(io::stdout()),
        kinds: args.kind,
        pids: args.pid,
        error: None,
    });
    let on_raw = |raw: &[u8]| printer.borrow_mut().on_raw(raw);
    let mut drain = tokio::time::interval(DRAIN_EVERY);
    drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut draining = true;
    let mut loss_tick = tokio::time::interval(LOSS_EVERY);
    // A record reserved just before the reader said it is idle and submitted just after its
    // second look sends no wake-up: this catches it within a second.
    let mut late_tick = tokio::time::interval(Duration::from_secs(1));
    let mut seen_lost = [0u64; CHANNELS as usize];
    loop {
        let mut got = false;
        tokio::select! {
            r = capture.read(on_raw) => {
                r?;
                got = true;
            }
            _ = drain.tick(), if draining => {
                draining = capture.drain_or_idle(on_raw)?;
            }
            _ = late_tick.tick(), if !draining => {
                got = capture.drain(on_raw) > 0;
            }
            r = fanotify::changes(&mut writes) => {
                capture.drain(on_raw);
                for event in r? {
                    printer.borrow_mut().on_event(&event);
                }
            }
            r = kernel_log.flush() => r?,
            _ = loss_tick.tick() => report_loss(capture.lost()?, &mut seen_lost, false),
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
        if got && !draining {
            draining = true;
            capture.set_reader_idle(false)?;
            drain.reset();
        }
        if !printer.borrow_mut().flush() {
            break;
        }
    }
    capture.drain(on_raw);
    let mut printer = printer.into_inner();
    printer.flush();
    match printer.error {
        Some(e) if e.kind() == io::ErrorKind::BrokenPipe => {
            log::info!("stdout closed: stopping");
        }
        Some(e) => return Err(e).context("writing events on stdout"),
        None => {}
    }
    report_loss(capture.lost()?, &mut seen_lost, true);
    capture.detach();
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use detector_common::{
        EventKind, ExitEvent, FileInfo, LoaderVar, MemTamperEvent, MmapEvent, LOADER_VALUE_TAIL,
        LOADER_VALUE_TRUNCATED, MMAP_SOURCE_EXEC_INTERPRETER, MMAP_SOURCE_EXEC_PROGRAM,
        MMAP_SOURCE_MPROTECT, PATH_BUF, TAMPER_PTRACE, TMPFS_MAGIC,
    };
    use serde_json::{json, Value};

    use super::*;
    use crate::capture::decode::tests::{bytes_of, exec_event, hdr, loader_event, rename_event};

    /// `s` right-aligned in a path buffer, as the kernel builds paths; returns the offset.
    fn right_aligned(buf: &mut [u8; PATH_BUF], s: &str) -> u32 {
        let off = PATH_BUF - s.len() - 1;
        buf[off..off + s.len()].copy_from_slice(s.as_bytes());
        off as u32
    }

    fn json_of(raw: Vec<u8>) -> Value {
        serde_json::to_value(decode(&raw).unwrap()).unwrap()
    }

    /// The header's fields, as every kind has them.
    fn assert_header(v: &Value, kind: EventKind, pid: u32, comm: &str) {
        assert_eq!(v["kind"], kind.name(), "{v}");
        assert_eq!(v["pid"], pid, "{v}");
        assert_eq!(v["tid"], pid, "{v}");
        assert_eq!(v["ppid"], 1, "{v}");
        assert_eq!(v["uid"], 1000, "{v}");
        assert_eq!(v["gid"], 1000, "{v}");
        assert_eq!(v["ktime_ns"], 7, "{v}");
        assert_eq!(v["comm"], comm, "{v}");
    }

    #[test]
    fn exec_json() {
        let v = json_of(bytes_of(&exec_event(
            42,
            "cat",
            "/usr/bin/cat",
            &["cat", "/etc/hostname"],
        )));
        assert_header(&v, EventKind::Exec, 42, "cat");
        assert_eq!(v["filename"], "/usr/bin/cat");
        assert_eq!(v["filename_truncated"], false);
        assert_eq!(v["argc"], 2);
        assert_eq!(v["argv"], json!(["cat", "/etc/hostname"]));
        assert_eq!(v["args_truncated"], false);
        assert_eq!(v["envc"], 3);
        assert_eq!(v["env_incomplete"], false);
        assert_eq!(v["loader_vars"], 1);
    }

    #[test]
    fn loader_env_json() {
        let mut e = loader_event(9, "ls", LoaderVar::LdAudit, "/tmp/a.so");
        e.occurrences = 2;
        e.index = 5;
        e.hdr.flags = LOADER_VALUE_TRUNCATED;
        e.tail = [b'b'; LOADER_VALUE_TAIL];
        let v = json_of(bytes_of(&e));
        assert_header(&v, EventKind::LoaderEnv, 9, "ls");
        assert_eq!(v["var"], "LD_AUDIT");
        assert_eq!(v["occurrences"], 2);
        assert_eq!(v["index"], 5);
        assert_eq!(v["value_len"], 9);
        assert_eq!(v["head"], "/tmp/a.so");
        assert_eq!(v["tail"], "b".repeat(LOADER_VALUE_TAIL));
        assert_eq!(v["truncated"], true);
    }

    #[test]
    fn mmap_json() {
        let mut e = MmapEvent {
            hdr: hdr(EventKind::Mmap, 5, "loadlib"),
            file: FileInfo {
                ino: 1234,
                mtime_sec: 99,
                dev: (8 << 20) | 1,
                mode: 0o100755,
                uid: 0,
                nlink: 1,
                fs_magic: TMPFS_MAGIC,
            },
            source: MMAP_SOURCE_MPROTECT,
            prot: 5,
            map_flags: 2,
            path_off: 0,
            path: [0; PATH_BUF],
        };
        e.path_off = right_aligned(&mut e.path, "/dev/shm/x.so");
        let v = json_of(bytes_of(&e));
        assert_header(&v, EventKind::Mmap, 5, "loadlib");
        assert_eq!(v["mprotect"], true);
        assert_eq!(v["source"], "mprotect");
        assert_eq!(v["prot"], 5);
        assert_eq!(
            v["file"],
            json!({
                "path": "/dev/shm/x.so", "path_truncated": false, "inode": 1234,
                "device": "8:1", "mode": "100755", "uid": 0, "nlink": 1, "mtime_sec": 99,
                "fs": "tmpfs", "fs_magic": "0x1021994",
            })
        );
    }

    #[test]
    fn mmap_sources_at_exec_are_named_and_unknown_ones_rejected() {
        let mut e = MmapEvent {
            hdr: hdr(EventKind::Mmap, 5, "ssh"),
            file: FileInfo::default(),
            source: MMAP_SOURCE_EXEC_INTERPRETER,
            prot: 5,
            map_flags: 2,
            path_off: 0,
            path: [0; PATH_BUF],
        };
        e.path_off = right_aligned(
            &mut e.path,
            "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        );
        let v = json_of(bytes_of(&e));
        assert_eq!(v["source"], "exec_interpreter");
        assert_eq!(v["mprotect"], false);
        e.source = MMAP_SOURCE_EXEC_PROGRAM;
        assert_eq!(json_of(bytes_of(&e))["source"], "exec_program");
        e.source = 99;
        assert!(decode(&bytes_of(&e)).is_err());
    }

    #[test]
    fn file_change_json() {
        let mut e = rename_event(6, "mv", "a", "/etc/ld.so.preload");
        e.dir_off = right_aligned(&mut e.dir, "/etc");
        let v = json_of(bytes_of(&e));
        assert_header(&v, EventKind::FileChange, 6, "mv");
        assert_eq!(v["op"], "rename");
        assert_eq!(v["paths"], json!(["/etc/a", "/etc/ld.so.preload"]));
    }

    #[test]
    fn exit_json() {
        let e = ExitEvent {
            hdr: hdr(EventKind::Exit, 7, "sh"),
            exit_code: 3 << 8,
            _pad: 0,
        };
        let v = json_of(bytes_of(&e));
        // Exit events carry no comm: user space needs only which process and when.
        assert_header(&v, EventKind::Exit, 7, "");
        assert_eq!(v["exit_code"], 768);
    }

    #[test]
    fn mem_tamper_json() {
        let e = MemTamperEvent {
            hdr: hdr(EventKind::MemTamper, 8, "tamper"),
            op: TAMPER_PTRACE,
            target_pid: 80,
            request: 4,
            addr: 0x1000,
            path_off: 0,
            _pad: 0,
            path: [0; PATH_BUF],
        };
        let v = json_of(bytes_of(&e));
        assert_header(&v, EventKind::MemTamper, 8, "tamper");
        assert_eq!(v["op"], "ptrace");
        assert_eq!(v["target_pid"], 80);
        assert_eq!(v["request"], 4);
        assert_eq!(v["addr"], 0x1000);
    }

    #[test]
    fn printer_filters_by_kind_and_pid_and_writes_lines() {
        let mut p = Printer {
            out: Vec::new(),
            kinds: vec![EventKind::Exec],
            pids: vec![42],
            error: None,
        };
        p.on_raw(&bytes_of(&exec_event(42, "a", "/a", &["a"])));
        p.on_raw(&bytes_of(&exec_event(43, "b", "/b", &["b"])));
        p.on_raw(&bytes_of(&loader_event(42, "a", LoaderVar::LdPreload, "x")));
        p.on_raw(&[1, 2]);
        assert!(p.flush());
        let out = String::from_utf8(p.out).unwrap();
        let lines: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 1, "{out}");
        assert_eq!(lines[0]["filename"], "/a");
    }
}
