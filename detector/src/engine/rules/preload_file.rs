//! Rule: /etc/ld.so.preload names libraries that ld.so loads into every dynamically linked
//! program it starts.
//!
//! Live, a process is judged by what its loader read, from the kernel's facts of that moment
//! (`detector-ebpf/src/preload_list.rs`): each object mapped while the loader held the list
//! (an `Mmap` with `after_preload_list`) is one the list named. Those mappings are held back
//! until the list itself arrives (`PreloadList`, sent when the loader unmaps it, after them)
//! and each becomes a finding naming the library, the process and the list as the loader read
//! it; a process that exits first gets them without the list's content. The file on disk is
//! never read for this: it may be gone, or hold another list, by the time the daemon looks,
//! and a list written after a process's exec does not concern that process.
//!
//! A sweep (processes that were running before the daemon, and the configuration) has no
//! kernel facts: it reports the file itself when it lists libraries, and a running process's
//! mapping of a library the file lists now.
use std::{collections::HashMap, path::Path};

use super::{Context, Finding, Observation, Rule};
use crate::{
    capture::{
        decode::{Mmap, PreloadList},
        names,
    },
    engine::library::Library,
    output::alert::{Detection, ListRead, Preload, PreloadSource, Process, Severity},
};

pub const PATH: &str = "/etc/ld.so.preload";
/// Processes whose held-back mappings are kept at most (their list or exit normally follows
/// within milliseconds); past it the oldest are reported without the list.
const PENDING_MAX: usize = 1024;

/// A mapping made while the loader held the list, waiting for the list.
struct Held {
    ktime_ns: u64,
    process: Process,
    library: Library,
}

#[derive(Default)]
pub struct PreloadFile {
    /// Per pid, in arrival order.
    pending: HashMap<u32, Vec<Held>>,
    /// Pids in the order their first mapping was held.
    order: Vec<u32>,
    /// For sweeps: the file's names as read at the sweep.
    sweep_names: Option<Vec<String>>,
}

impl PreloadFile {
    pub fn new() -> Self {
        Self::default()
    }

    fn hold(&mut self, process: &Process, m: &Mmap) -> Vec<Finding> {
        let pid = m.hdr.pid;
        let mut out = Vec::new();
        if !self.pending.contains_key(&pid) {
            if self.pending.len() >= PENDING_MAX && !self.order.is_empty() {
                let oldest = self.order.remove(0);
                out = self.release(oldest, None);
            }
            self.order.push(pid);
        }
        self.pending.entry(pid).or_default().push(Held {
            ktime_ns: m.hdr.ktime_ns,
            process: process.clone(),
            library: Library::from_kernel(&m.file, &m.hdr),
        });
        out
    }

    /// Findings for what `pid` mapped while its loader held the list, with the list as the
    /// loader read it when it was captured.
    fn release(&mut self, pid: u32, list: Option<&PreloadList>) -> Vec<Finding> {
        let Some(held) = self.pending.remove(&pid) else {
            return Vec::new();
        };
        self.order.retain(|p| *p != pid);
        held.into_iter()
            .map(|h| {
                let mut f = Finding::new(h.ktime_ns, h.process, Detection::PreloadFile);
                f.library = Some(h.library);
                f.preload = Some(preload(list));
                // What the package database says of it goes in the alert.
                f.verify = true;
                f
            })
            .collect()
    }
}

/// `preload` of a live finding: the names the loader's copy held, and the file's facts.
fn preload(list: Option<&PreloadList>) -> Preload {
    Preload {
        source: PreloadSource::File,
        variable: PATH,
        value: list.map(|l| l.names.join(" ")).unwrap_or_default(),
        occurrences: 1,
        truncated: list.is_some_and(|l| l.truncated),
        inherited_from: None,
        list: list.map(|l| ListRead {
            inode: l.file.ino,
            device: format!("{}:{}", l.file.dev >> 20, l.file.dev & 0xfffff),
            mtime_sec: l.file.mtime_sec,
            size: l.size,
            captured: !l.unread,
        }),
    }
}

impl Rule for PreloadFile {
    fn evaluate(&mut self, cx: &Context, observation: &Observation) -> Vec<Finding> {
        match observation {
            Observation::Mmap(m) if m.after_preload_list => self.hold(cx.process, m),
            Observation::PreloadList(l) => self.release(l.hdr.pid, Some(l)),
            Observation::Mapped(lib) => {
                let names = self
                    .sweep_names
                    .get_or_insert_with(|| read_names(Path::new(PATH)));
                if !names.contains(&lib.path) {
                    return Vec::new();
                }
                let mut f = Finding::new(cx.ktime_ns, cx.process.clone(), Detection::PreloadFile);
                f.library = Some((*lib).clone());
                f.preload = Some(Preload {
                    value: names.join(" "),
                    ..preload(None)
                });
                vec![f]
            }
            Observation::Configuration(etc) => {
                // The end of a sweep: the next one reads the file again.
                self.sweep_names = None;
                listed(&etc.join("ld.so.preload"))
            }
            _ => Vec::new(),
        }
    }

    fn exited(&mut self, pid: u32) -> Vec<Finding> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        self.release(pid, None)
    }
}

fn read_names(path: &Path) -> Vec<String> {
    read_text(path).map(|t| parse(&t)).unwrap_or_default()
}

/// The file's text, every byte kept (`names::lossless`): the loader reads bytes, and a byte that
/// is not UTF-8 anywhere in the file must not hide the names in it.
fn read_text(path: &Path) -> Option<String> {
    std::fs::read(path).ok().map(|b| names::lossless(&b))
}

/// The file itself, found listing libraries: every dynamically linked program loads them, the
/// credential ones included (high).
fn listed(file: &Path) -> Vec<Finding> {
    let Some(text) = read_text(file) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for lib in parse(line) {
            let mut f = Finding::config_line(Detection::PreloadFile, file, n, line);
            f.floor = Severity::High;
            f.library = Some(Library::inspect(&lib));
            f.preload = Some(Preload {
                value: text.trim().to_owned(),
                ..preload(None)
            });
            out.push(f);
        }
    }
    out
}

/// The names in the file as glibc reads them: separated by white space or colons.
pub fn parse(text: &str) -> Vec<String> {
    let mut libs: Vec<String> = Vec::new();
    for name in text.split(|c: char| c.is_whitespace() || c == ':') {
        if !name.is_empty() && !name.starts_with('#') && !libs.iter().any(|l| l == name) {
            libs.push(name.to_owned());
        }
    }
    libs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the sweep's reading of /etc/ld.so.preload: a byte that is not UTF-8 (here in a
    /// comment) once made the whole file unreadable as text, and the listed library unseen.
    #[test]
    fn a_list_with_a_byte_that_is_not_utf8_still_names_its_libraries() {
        let path = std::env::temp_dir().join(format!("detector-preload-{}", std::process::id()));
        std::fs::write(&path, b"/tmp/evil.so\n#caf\xe9\n").unwrap();
        let names = read_names(&path);
        let found = listed(&path);
        let _ = std::fs::remove_file(&path);
        assert_eq!(names, ["/tmp/evil.so"]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].library.as_ref().unwrap().path, "/tmp/evil.so");
    }

    #[test]
    fn parses_like_glibc() {
        assert_eq!(
            parse("/lib/a.so /lib/b.so:/lib/c.so\n\t/lib/a.so\n"),
            ["/lib/a.so", "/lib/b.so", "/lib/c.so"]
        );
        assert!(parse("  \n").is_empty());
    }
}
