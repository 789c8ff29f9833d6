//! Rule: every object mapped executable is checked against the package database — live (the
//! kernel reports a file only root controls once per file version, whichever process maps it
//! first), in a sweep (what /proc/<pid>/maps shows), and, from the configuration, the objects
//! every credential process loads: the loader, the PAM modules `/etc/pam.d` names and the NSS
//! modules `/etc/nsswitch.conf` names. Files a non-root user could have changed are the
//! `unsafe_library` rule's.
//!
//! The finding asks enrichment to verify the file (`Finding::verify`); what follows from the
//! answer is [`outcome`]: a file the database vouches for raises nothing; an unpackaged or
//! modified file in a credential process (or one the configuration makes them all load) is high
//! or critical (`Finding::finish`); in any other process a packaged file that was modified is
//! medium, and one no package lists is an application's own library: no alert, and the kernel
//! is told to report that file version again, so that a credential process mapping it later is
//! seen.
use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use super::{unsafe_pam_module::pam_module, Context, Finding, Observation, Rule};
use crate::{
    engine::{
        library::Library,
        provenance::{MODIFIED_SINCE_PACKAGE, NO_PACKAGE_DATABASE},
    },
    output::alert::{Detection, Severity},
};

/// Where PAM finds a module named without a directory, in the order tried.
const PAM_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/security",
    "/lib/x86_64-linux-gnu/security",
    "/usr/lib/aarch64-linux-gnu/security",
    "/lib/aarch64-linux-gnu/security",
    "/usr/lib64/security",
    "/lib64/security",
    "/usr/lib/security",
    "/lib/security",
];
/// Where glibc's NSS modules (`libnss_<service>.so.2`) are found.
const NSS_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu",
    "/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/lib64",
    "/usr/lib",
    "/lib",
];

#[derive(Default)]
pub struct UnverifiedObject {
    /// Files (device, inode) a sweep already asked about for a process outside the catalogue:
    /// one question per file is enough there.
    swept: HashSet<(String, u64)>,
}

impl Rule for UnverifiedObject {
    fn evaluate(&mut self, cx: &Context, observation: &Observation) -> Vec<Finding> {
        let lib = match observation {
            // What the kernel reports every time (not a file only root controls) is the
            // unsafe_library rule's; the rest it reports once per file version. What it maps
            // at exec is the unverified_loader rule's, and what the loader maps from
            // /etc/ld.so.preload the preload_file rule's (which has it verified).
            Observation::Mmap(m)
                if !m.file.path_truncated
                    && m.file.info.unsafe_facts() == 0
                    && !m.source.at_exec()
                    && !m.after_preload_list =>
            {
                Library::from_kernel(&m.file, &m.hdr)
            }
            Observation::Mapped(lib) => {
                let credential = cx.catalogue.matches(&cx.process.exe, &cx.process.comm);
                let id = (
                    lib.device.clone().unwrap_or_default(),
                    lib.inode.unwrap_or(0),
                );
                if !credential && !self.swept.insert(id) {
                    return Vec::new();
                }
                (*lib).clone()
            }
            Observation::Configuration(etc) => return configured(cx, etc),
            _ => return Vec::new(),
        };
        if lib.is_unsafe() || !lib.exists || !lib.path.starts_with('/') {
            return Vec::new();
        }
        let mut f = Finding::new(cx.ktime_ns, cx.process.clone(), Detection::UnverifiedObject);
        f.library = Some(lib);
        f.verify = true;
        vec![f]
    }
}

/// The objects the configuration makes credential processes load: the loader, PAM modules, NSS
/// modules; each once, at the first line naming it.
fn configured(cx: &Context, etc: &Path) -> Vec<Finding> {
    let mut seen: HashSet<PathBuf> = HashSet::new();
    let mut out = Vec::new();
    let mut add = |path: PathBuf, f: Finding| {
        if seen.insert(path.clone()) {
            let mut f = f;
            f.library = Some(Library::inspect(&path.display().to_string()));
            f.verify = true;
            f.floor = Severity::High;
            out.push(f);
        }
    };
    for loader in &cx.watched.loaders {
        if let Ok(real) = std::fs::canonicalize(loader) {
            let f = Finding::new(0, Default::default(), Detection::UnverifiedObject);
            add(real, f);
        }
    }
    let mut pam: Vec<PathBuf> = std::fs::read_dir(etc.join("pam.d"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    pam.sort();
    for conf in pam {
        let Ok(text) = crate::engine::config_text(&conf) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            let Some(module) = pam_module(line).and_then(pam_module_file) else {
                continue;
            };
            add(
                module,
                Finding::config_line(Detection::UnverifiedObject, &conf, n, line),
            );
        }
    }
    let nsswitch = etc.join("nsswitch.conf");
    if let Ok(text) = crate::engine::config_text(&nsswitch) {
        for (n, line) in text.lines().enumerate() {
            for module in nss_services(line).filter_map(nss_module_file) {
                add(
                    module,
                    Finding::config_line(Detection::UnverifiedObject, &nsswitch, n, line),
                );
            }
        }
    }
    out
}

/// The file PAM loads for a module named in its configuration, when it is in a system module
/// directory (a module elsewhere is the `unsafe_pam_module` rule's).
fn pam_module_file(module: &str) -> Option<PathBuf> {
    let path = if module.starts_with('/') {
        PathBuf::from(module)
    } else {
        PAM_DIRS
            .iter()
            .map(|d| Path::new(d).join(module))
            .find(|p| p.exists())?
    };
    let real = std::fs::canonicalize(&path).ok()?;
    PAM_DIRS.iter().any(|d| real.starts_with(d)).then_some(real)
}

/// The services of an nsswitch.conf line (`database: service [STATUS=action] service ...`).
pub fn nss_services(line: &str) -> impl Iterator<Item = &str> {
    let line = line.split('#').next().unwrap_or("");
    let services = line.split_once(':').map_or("", |(_, s)| s);
    let mut in_action = false;
    services.split_whitespace().filter(move |w| {
        // Actions are bracketed and may span words: "[NOTFOUND=return]", "[!UNAVAIL = return]".
        let word_starts_action = w.starts_with('[');
        let keep = !in_action && !word_starts_action;
        if word_starts_action {
            in_action = true;
        }
        if in_action && w.ends_with(']') {
            in_action = false;
        }
        keep
    })
}

/// The module glibc loads for an NSS service, when it is installed.
fn nss_module_file(service: &str) -> Option<PathBuf> {
    if service.contains('/') {
        return None;
    }
    let name = format!("libnss_{service}.so.2");
    let path = NSS_DIRS
        .iter()
        .map(|d| Path::new(d).join(&name))
        .find(|p| p.exists())?;
    std::fs::canonicalize(path).ok()
}

/// What becomes of a verified finding.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Score it and alert (the policy may still drop it).
    Alert,
    /// No alert. With `forget`, tell the kernel to report the file version again.
    Drop { forget: bool },
}

/// What becomes of a finding once its file was verified. `credential`: the finding is about a
/// credential process. Findings this rule did not make, or that carry other detections, are
/// scored as they are.
pub fn outcome(f: &Finding, credential: bool) -> Outcome {
    if f.detections.is_empty() {
        return Outcome::Drop { forget: false };
    }
    let only_provenance = f
        .detections
        .iter()
        .all(|d| matches!(d, Detection::UnverifiedObject | Detection::UnverifiedLoader));
    let Some(lib) = f.library.as_ref().filter(|_| only_provenance) else {
        return Outcome::Alert;
    };
    let loader = f.detections.contains(&Detection::UnverifiedLoader);
    // The database could not answer (none under that root, no checksum to compare, the file
    // over the hashing budget): nothing to say about it. Where there is no database at all the
    // answer cannot change: the kernel is not asked to report the file again (on such a host
    // every mapping would come back), nor ever for a loader (every exec would).
    if lib.verified != Some(false) {
        let no_database = lib
            .enrichment_skipped
            .iter()
            .any(|s| s.what == "provenance" && s.why.contains(NO_PACKAGE_DATABASE));
        return Outcome::Drop {
            forget: !loader && !no_database,
        };
    }
    if loader
        || credential
        || f.process.is_none()
        || lib.unsafe_reasons.contains(&MODIFIED_SINCE_PACKAGE)
    {
        Outcome::Alert
    } else {
        Outcome::Drop { forget: true }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nsswitch_services() {
        let s: Vec<&str> = nss_services("hosts:  files [NOTFOUND=return] dns # x").collect();
        assert_eq!(s, ["files", "dns"]);
        let s: Vec<&str> = nss_services("passwd: files [ !UNAVAIL = return ] systemd").collect();
        assert_eq!(s, ["files", "systemd"]);
        assert_eq!(nss_services("# passwd: evil").count(), 0);
    }

    #[test]
    fn what_a_verified_finding_becomes() {
        use crate::{
            engine::{enrich::Skipped, provenance::NOT_FROM_PACKAGE},
            output::alert::Process,
        };
        let f = |exe: &str, verified: Option<bool>, reason: Option<&'static str>| {
            let mut f = Finding::new(
                1,
                Process {
                    pid: 7,
                    exe: exe.into(),
                    ..Process::default()
                },
                Detection::UnverifiedObject,
            );
            f.library = Some(Library {
                path: "/usr/local/lib/x.so".into(),
                verified,
                unsafe_reasons: reason.into_iter().collect(),
                ..Library::default()
            });
            f
        };
        let app = f("/usr/bin/app", Some(false), Some(NOT_FROM_PACKAGE));
        assert_eq!(outcome(&app, false), Outcome::Drop { forget: true });
        assert_eq!(outcome(&app, true), Outcome::Alert);
        let modified = f("/usr/bin/app", Some(false), Some(MODIFIED_SINCE_PACKAGE));
        assert_eq!(outcome(&modified, false), Outcome::Alert);
        let unknown = f("/usr/bin/ssh", None, None);
        assert_eq!(outcome(&unknown, true), Outcome::Drop { forget: true });
        let mut vouched = f("/usr/bin/ssh", Some(true), None);
        vouched.detections.clear();
        assert_eq!(outcome(&vouched, true), Outcome::Drop { forget: false });
        // No package database on the host: nothing to say, and the kernel keeps its cache.
        let mut no_db = f("/usr/bin/app", None, None);
        no_db
            .library
            .as_mut()
            .unwrap()
            .enrichment_skipped
            .push(Skipped {
                what: "provenance",
                why: NO_PACKAGE_DATABASE.into(),
            });
        assert_eq!(outcome(&no_db, false), Outcome::Drop { forget: false });
        // A loader the database does not vouch for alerts in any process; one it cannot
        // decide on does not, and is never reported again.
        let as_loader = |mut f: Finding| {
            f.detections = [Detection::UnverifiedLoader].into();
            f
        };
        assert_eq!(outcome(&as_loader(app), false), Outcome::Alert);
        assert_eq!(
            outcome(&as_loader(unknown), false),
            Outcome::Drop { forget: false }
        );
    }
}
