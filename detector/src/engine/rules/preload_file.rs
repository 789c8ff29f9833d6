//! Rule: /etc/ld.so.preload names libraries that ld.so loads into every dynamically linked
//! program it starts. Each exec of such a program (and each mapping of a listed library) is a
//! preload through the file, one alert per process and library. A sweep that finds the file
//! listing libraries reports the file itself.
use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use super::{Context, Finding, Observation, Rule};
use crate::{
    capture::decode::{Exec, Mmap},
    engine::enrich::elf,
    engine::library::Library,
    output::alert::{Detection, Preload, PreloadSource, Process, Severity},
};

pub const PATH: &str = "/etc/ld.so.preload";
/// Executables whose "is it dynamic" answer is remembered.
const PROGRAMS_KEPT: usize = 4096;

/// The file's current list (re-read whenever its inode, size or mtime changes).
pub struct PreloadFile {
    path: PathBuf,
    /// When (CLOCK_BOOTTIME, the kernel events' clock) the file was last looked at. An event
    /// older than that is judged by what was seen then, which is newer than the event: at a
    /// high exec rate the daemon reads events in batches, and one stat serves a whole batch.
    checked_at: Option<u64>,
    version: Option<(u64, u64, u64, i64, i64)>,
    libs: Vec<String>,
    value: String,
    /// Executable path → (mtime, has a program interpreter).
    dynamic: HashMap<String, (i64, bool)>,
}

impl PreloadFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        PreloadFile {
            path: path.into(),
            checked_at: None,
            version: None,
            libs: Vec::new(),
            value: String::new(),
            dynamic: HashMap::new(),
        }
    }

    /// Brings the list up to date for an event at `ktime_ns` (0: now).
    fn refresh(&mut self, ktime_ns: u64) {
        if self
            .checked_at
            .is_some_and(|t| t > ktime_ns && ktime_ns != 0)
        {
            return;
        }
        self.checked_at = Some(boottime_ns());
        let meta = std::fs::metadata(&self.path).ok();
        let version = meta
            .as_ref()
            .map(|m| (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()));
        if version == self.version {
            return;
        }
        self.version = version;
        self.value = std::fs::read(&self.path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        self.libs = parse(&self.value);
    }

    /// Whether the file lists libraries, as of an event at `ktime_ns`.
    fn lists_libraries(&mut self, ktime_ns: u64) -> bool {
        self.refresh(ktime_ns);
        !self.libs.is_empty()
    }

    /// The libraries a new image of `exec` gets from the file (none for static programs).
    fn on_exec(&mut self, process: &Process, exec: &Exec) -> Vec<Finding> {
        self.refresh(exec.hdr.ktime_ns);
        if self.libs.is_empty() || !self.is_dynamic(&exec.filename) {
            return Vec::new();
        }
        let libs = self.libs.clone();
        libs.iter()
            .map(|lib| self.finding(exec.hdr.ktime_ns, process, Library::inspect(lib)))
            .collect()
    }

    /// A mapped library the file lists (for processes whose exec was not seen). The file is
    /// looked at on disk only when it is listed.
    fn on_mmap(&mut self, process: &Process, m: &Mmap) -> Option<Finding> {
        if m.source.at_exec() {
            return None;
        }
        self.refresh(m.hdr.ktime_ns);
        if !self.libs.contains(&m.file.path) {
            return None;
        }
        Some(self.finding(
            m.hdr.ktime_ns,
            process,
            Library::from_kernel(&m.file, &m.hdr),
        ))
    }

    /// `lib`, mapped in `process`, if the file lists it.
    fn on_mapped(&mut self, ktime_ns: u64, process: &Process, lib: Library) -> Option<Finding> {
        self.refresh(ktime_ns);
        if !self.libs.contains(&lib.path) {
            return None;
        }
        Some(self.finding(ktime_ns, process, lib))
    }

    fn finding(&self, ktime_ns: u64, process: &Process, lib: Library) -> Finding {
        let mut f = Finding::new(ktime_ns, process.clone(), Detection::PreloadFile);
        f.library = Some(lib);
        f.preload = Some(Preload {
            source: PreloadSource::File,
            variable: PATH,
            value: self.value.trim().to_owned(),
            occurrences: 1,
            truncated: false,
            inherited_from: None,
        });
        f
    }

    fn is_dynamic(&mut self, exe: &str) -> bool {
        let mtime = std::fs::metadata(exe).map(|m| m.mtime()).unwrap_or(0);
        if let Some(&(t, dynamic)) = self.dynamic.get(exe) {
            if t == mtime {
                return dynamic;
            }
        }
        if self.dynamic.len() >= PROGRAMS_KEPT {
            self.dynamic.clear();
        }
        let dynamic = elf::has_interpreter(Path::new(exe));
        self.dynamic.insert(exe.to_owned(), (mtime, dynamic));
        dynamic
    }
}

impl Rule for PreloadFile {
    fn wants_exec(&mut self, exec: &Exec) -> bool {
        self.lists_libraries(exec.hdr.ktime_ns)
    }

    fn evaluate(&mut self, cx: &Context, observation: &Observation) -> Vec<Finding> {
        match observation {
            Observation::Exec(exec) => self.on_exec(cx.process, exec),
            Observation::Mmap(m) => self.on_mmap(cx.process, m).into_iter().collect(),
            Observation::Mapped(lib) => self
                .on_mapped(cx.ktime_ns, cx.process, (*lib).clone())
                .into_iter()
                .collect(),
            Observation::Configuration(etc) => listed(&etc.join("ld.so.preload")),
            _ => Vec::new(),
        }
    }
}

/// The file itself, found listing libraries: every dynamically linked program loads them, the
/// credential ones included (high).
fn listed(preload: &Path) -> Vec<Finding> {
    let Ok(text) = std::fs::read_to_string(preload) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for lib in parse(line) {
            let mut f = Finding::config_line(Detection::PreloadFile, preload, n, line);
            f.floor = Severity::High;
            f.library = Some(Library::inspect(&lib));
            f.preload = Some(Preload {
                source: PreloadSource::File,
                variable: PATH,
                value: text.trim().to_owned(),
                occurrences: 1,
                truncated: false,
                inherited_from: None,
            });
            out.push(f);
        }
    }
    out
}

fn boottime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
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

    #[test]
    fn parses_like_glibc() {
        assert_eq!(
            parse("/lib/a.so /lib/b.so:/lib/c.so\n\t/lib/a.so\n"),
            ["/lib/a.so", "/lib/b.so", "/lib/c.so"]
        );
        assert!(parse("  \n").is_empty());
    }
}
