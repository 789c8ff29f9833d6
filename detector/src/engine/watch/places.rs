//! The watched places: which paths the kernel reports changes of (directories, found on this
//! machine at start) and what each watched path is.
use crate::output::alert::Detection;

/// What a watched path is, which decides what an alert about its change says and whether the
/// package database can vouch for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// `/etc/ld.so.preload`.
    PreloadFile,
    /// `/etc/ld.so.conf`, `/etc/ld.so.conf.d/*`.
    LoaderConfig,
    /// `/etc/nsswitch.conf` (it names the NSS modules every process may load).
    Nsswitch,
    /// `/etc/pam.d/*`.
    PamConfig,
    /// A loader binary (`ld-linux*`).
    Loader,
    /// A file in a library directory.
    Library,
    /// A file in a PAM module directory (`security/`).
    PamModule,
    /// dpkg's record of installed files: `info/*.md5sums`, `*.list`, `*.conffiles`,
    /// `diversions`, `statoverride`, `status`; rpm's sqlite database file `rpmdb.sqlite`.
    PackageDatabase,
    /// One of the sensor's own files: its binary, its configuration file, its unit file.
    Sensor,
}

impl Place {
    /// Text configuration: its lines are kept and compared.
    pub fn is_text(self) -> bool {
        matches!(
            self,
            Place::PreloadFile | Place::LoaderConfig | Place::Nsswitch | Place::PamConfig
        )
    }

    /// Code the package database records: hashed, and verified against the package.
    pub fn is_code(self) -> bool {
        matches!(self, Place::Loader | Place::Library | Place::PamModule)
    }

    pub fn detection(self) -> Detection {
        match self {
            Place::PreloadFile | Place::LoaderConfig | Place::Nsswitch | Place::Loader => {
                Detection::LoaderConfigChange
            }
            Place::PamConfig => Detection::PamConfigChange,
            Place::Library => Detection::LibraryChange,
            Place::PamModule => Detection::PamModuleChange,
            Place::PackageDatabase => Detection::PackageDatabaseChange,
            Place::Sensor => Detection::SensorTamper,
        }
    }
}

/// The package database's directory and the files of it that are watched.
pub const DPKG_DIR: &str = "/var/lib/dpkg";
const DPKG_INFO: &str = "/var/lib/dpkg/info";
const DPKG_FILES: &[&str] = &["status", "diversions", "statoverride"];
const DPKG_INFO_SUFFIXES: &[&str] = &[".md5sums", ".list", ".conffiles"];
/// rpm's database directories and the file of it that is watched. Its write-ahead log is not:
/// every reader opens it for writing.
const RPM_DIRS: &[&str] = &["/var/lib/rpm", "/usr/lib/sysimage/rpm"];
const RPM_DB_FILE: &str = "rpmdb.sqlite";

/// Text configuration files and directories watched in /etc.
pub const TEXT_FILES: &[&str] = &[
    "/etc/ld.so.preload",
    "/etc/ld.so.conf",
    "/etc/nsswitch.conf",
];
pub const TEXT_DIRS: &[&str] = &["/etc/ld.so.conf.d", "/etc/pam.d"];

/// The watched places of this machine: the loader binaries (as real paths, symlinks resolved
/// at start), the library directories and the PAM module directories, each under every name
/// it has (`/lib/x86_64-linux-gnu` and `/usr/lib/x86_64-linux-gnu` on merged-/usr systems).
#[derive(Debug, Clone, Default)]
pub struct Watched {
    pub loaders: Vec<String>,
    pub library_dirs: Vec<String>,
    pub pam_module_dirs: Vec<String>,
    /// The sensor's own files, each with what it is (`engine::sensor::files`); the daemon
    /// sets them, a sweep has none.
    pub sensor_files: Vec<(String, &'static str)>,
}

/// Library directories looked for: the standard ones, /usr/local/lib, and the multiarch
/// directories found under /lib and /usr/lib (`*-linux-gnu*`).
const LIBRARY_DIRS: &[&str] = &[
    "/lib",
    "/lib64",
    "/lib32",
    "/libx32",
    "/usr/lib",
    "/usr/lib64",
    "/usr/lib32",
    "/usr/libx32",
    "/usr/local/lib",
    "/usr/local/lib64",
];
/// At most this many library directories (the kernel's WATCH holds 256 directories).
const LIBRARY_DIRS_MAX: usize = 96;

fn push_unique(v: &mut Vec<String>, s: String) {
    if !s.is_empty() && !v.contains(&s) {
        v.push(s);
    }
}

/// `dir` and, when it differs, its real path (directories that exist only).
fn names_of(dir: &str) -> Vec<String> {
    if !std::path::Path::new(dir).is_dir() {
        return Vec::new();
    }
    let mut v = vec![dir.to_owned()];
    if let Ok(real) = std::fs::canonicalize(dir) {
        push_unique(&mut v, real.display().to_string());
    }
    v
}

impl Watched {
    pub fn discover() -> Self {
        let mut candidates: Vec<String> = Vec::new();
        for base in LIBRARY_DIRS {
            candidates.push((*base).to_owned());
            if let Ok(rd) = std::fs::read_dir(base) {
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if name.contains("-linux-gnu") && e.path().is_dir() {
                        candidates.push(format!("{base}/{name}"));
                    }
                }
            }
        }
        // The directories the loader's configuration adds to its search path.
        candidates.extend(loader_conf_dirs());
        let mut w = Watched::default();
        for c in &candidates {
            for d in names_of(c) {
                if w.library_dirs.len() < LIBRARY_DIRS_MAX {
                    push_unique(&mut w.library_dirs, d);
                }
            }
        }
        let libs = w.library_dirs.clone();
        for d in &libs {
            for m in names_of(&format!("{d}/security")) {
                push_unique(&mut w.pam_module_dirs, m);
            }
        }
        for dir in &libs {
            let Ok(rd) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with("ld-linux") {
                    push_unique(&mut w.loaders, e.path().display().to_string());
                    if let Ok(real) = std::fs::canonicalize(e.path()) {
                        push_unique(&mut w.loaders, real.display().to_string());
                    }
                }
            }
        }
        w
    }

    /// Directories whose entries the kernel reports: the parents of every watched file, and
    /// the watched directories themselves.
    pub fn directories(&self) -> Vec<String> {
        let mut dirs: Vec<String> = ["/etc", DPKG_DIR, DPKG_INFO]
            .iter()
            .chain(TEXT_DIRS)
            .map(|d| (*d).to_owned())
            .collect();
        // rpm's only where it has a database directory (one is a link to the other on Fedora).
        for d in RPM_DIRS {
            if let Ok(real) = std::fs::canonicalize(d) {
                if real.is_dir() {
                    push_unique(&mut dirs, (*d).to_owned());
                    push_unique(&mut dirs, real.display().to_string());
                }
            }
        }
        for d in self.library_dirs.iter().chain(&self.pam_module_dirs) {
            push_unique(&mut dirs, d.clone());
        }
        for l in &self.loaders {
            if let Some((d, _)) = l.rsplit_once('/') {
                push_unique(&mut dirs, d.to_owned());
            }
        }
        for (f, _) in &self.sensor_files {
            if let Some((d, _)) = f.rsplit_once('/') {
                for d in names_of(if d.is_empty() { "/" } else { d }) {
                    push_unique(&mut dirs, d);
                }
            }
        }
        dirs
    }

    /// What the sensor's file at `path` is (`binary`, `configuration file`, `unit file`).
    pub fn sensor_file(&self, path: &str) -> Option<&'static str> {
        self.sensor_files
            .iter()
            .find_map(|(f, what)| (f == path).then_some(*what))
    }

    /// What the watched `path` is; `None` when it is not watched.
    pub fn classify(&self, path: &str) -> Option<Place> {
        let (dir, name) = path.rsplit_once('/')?;
        if name.is_empty() {
            return None;
        }
        if self.sensor_files.iter().any(|(f, _)| f == path) {
            Some(Place::Sensor)
        } else if path == "/etc/ld.so.preload" {
            Some(Place::PreloadFile)
        } else if self.loaders.iter().any(|l| l == path) {
            Some(Place::Loader)
        } else if path == "/etc/ld.so.conf" || dir == "/etc/ld.so.conf.d" {
            Some(Place::LoaderConfig)
        } else if path == "/etc/nsswitch.conf" {
            Some(Place::Nsswitch)
        } else if dir == "/etc/pam.d" {
            Some(Place::PamConfig)
        } else if self.pam_module_dirs.iter().any(|d| d == dir) {
            Some(Place::PamModule)
        } else if self.library_dirs.iter().any(|d| d == dir) {
            Some(Place::Library)
        } else if (dir == DPKG_DIR && DPKG_FILES.contains(&name))
            || (dir == DPKG_INFO && DPKG_INFO_SUFFIXES.iter().any(|s| name.ends_with(s)))
            || (RPM_DIRS.contains(&dir) && name == RPM_DB_FILE)
        {
            Some(Place::PackageDatabase)
        } else {
            None
        }
    }
}

/// Absolute directories named in /etc/ld.so.conf and the files it includes (one level of
/// `include` globs, as Debian uses it).
fn loader_conf_dirs() -> Vec<String> {
    let mut files = vec![std::path::PathBuf::from("/etc/ld.so.conf")];
    if let Ok(rd) = std::fs::read_dir("/etc/ld.so.conf.d") {
        let mut more: Vec<_> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "conf"))
            .collect();
        more.sort();
        files.extend(more);
    }
    let mut dirs = Vec::new();
    for f in files {
        let Ok(text) = crate::engine::config_text(&f) else {
            continue;
        };
        dirs.extend(conf_dirs(&text));
    }
    dirs
}

/// The directories an `ld.so.conf` text names: absolute paths, comments (`#` to the end of the
/// line) and surrounding blanks removed; `include` lines and anything else are not directories.
pub fn conf_dirs(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|line| line.starts_with('/'))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_paths() {
        let w = Watched {
            loaders: vec!["/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2".into()],
            library_dirs: vec![
                "/usr/lib/x86_64-linux-gnu".into(),
                "/lib/x86_64-linux-gnu".into(),
            ],
            pam_module_dirs: vec!["/usr/lib/x86_64-linux-gnu/security".into()],
            sensor_files: vec![
                ("/usr/local/bin/detector".into(), "binary"),
                ("/etc/detector/detector.toml".into(), "configuration file"),
            ],
        };
        assert_eq!(w.classify("/usr/local/bin/detector"), Some(Place::Sensor));
        assert_eq!(w.classify("/usr/local/bin/other"), None);
        assert_eq!(
            w.sensor_file("/etc/detector/detector.toml"),
            Some("configuration file")
        );
        // The directory of each sensor file is watched (where it exists).
        let tmp = std::env::temp_dir().display().to_string();
        let mut w2 = w.clone();
        w2.sensor_files.push((format!("{tmp}/detector"), "binary"));
        assert!(w2.directories().contains(&tmp), "{:?}", w2.directories());
        assert!(!w.directories().contains(&tmp));
        assert_eq!(w.classify("/etc/ld.so.preload"), Some(Place::PreloadFile));
        assert_eq!(
            w.classify("/etc/ld.so.conf.d/x.conf"),
            Some(Place::LoaderConfig)
        );
        assert_eq!(w.classify("/etc/pam.d/su"), Some(Place::PamConfig));
        assert_eq!(w.classify("/etc/nsswitch.conf"), Some(Place::Nsswitch));
        assert_eq!(
            w.classify("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
            Some(Place::Loader)
        );
        assert_eq!(
            w.classify("/lib/x86_64-linux-gnu/libkeyutils.so.1"),
            Some(Place::Library)
        );
        assert_eq!(
            w.classify("/usr/lib/x86_64-linux-gnu/security/pam_unix.so"),
            Some(Place::PamModule)
        );
        assert_eq!(
            w.classify("/var/lib/dpkg/info/libc6:amd64.md5sums"),
            Some(Place::PackageDatabase)
        );
        assert_eq!(
            w.classify("/var/lib/dpkg/diversions"),
            Some(Place::PackageDatabase)
        );
        assert_eq!(w.classify("/var/lib/dpkg/lock"), None);
        assert_eq!(
            w.classify("/usr/lib/sysimage/rpm/rpmdb.sqlite"),
            Some(Place::PackageDatabase)
        );
        assert_eq!(
            w.classify("/var/lib/rpm/rpmdb.sqlite"),
            Some(Place::PackageDatabase)
        );
        assert_eq!(w.classify("/var/lib/rpm/rpmdb.sqlite-wal"), None);
        assert_eq!(w.classify("/usr/lib/x86_64-linux-gnu/perl/x.pm"), None);
        assert_eq!(w.classify("/etc/hostname"), None);
        for d in [
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib/x86_64-linux-gnu/security",
            "/var/lib/dpkg/info",
            "/etc/pam.d",
        ] {
            assert!(w.directories().contains(&d.to_owned()), "{d}");
        }
    }
}
