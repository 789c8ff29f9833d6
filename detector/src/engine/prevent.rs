//! Prevention's user-space half: what the kernel's mapping programs are told to stop
//! (`capture::load::Prevention`, judged in `detector-ebpf/src/prevent.rs`), from the
//! configuration: the `[prevent]` switches, the executables of allowed processes and of the
//! package managers (by device and inode: a process running one, and a package manager's
//! descendants, are never stopped; listed again whenever the package managers are done, which
//! may have replaced them) and the allowlist's libraries (by file version, and only while their
//! hash matches). Which processes are credential processes the kernel already knows: the
//! catalogue's basenames in `CREDENTIAL_NAMES`. The file
//! versions the package database did not vouch for are listed as the policy stage finds them
//! ([`list_unverified`]).
use std::{
    os::unix::fs::MetadataExt as _,
    path::Path,
    sync::{Arc, Mutex},
};

use anyhow::Result;
use detector_common::{
    ExeKey, SeenKey, PREVENT_DENY, PREVENT_EXE_ALLOWED, PREVENT_EXE_PACKAGE_MANAGER, PREVENT_FACTS,
    PREVENT_FILE_ALLOWED, PREVENT_FILE_UNVERIFIED, PREVENT_INTERPRETER, PREVENT_KILL, PREVENT_ON,
    PREVENT_UNVERIFIED,
};

use crate::{
    capture::{
        load::{Capture, Prevention},
        preflight,
    },
    config::{PreventCfg, PreventMode, StopPath},
    engine::{package_manager, policy::Policy, provenance},
};

pub type Shared = Arc<Mutex<Prevention>>;

/// The `PREVENT_*` bits for a configuration (0 for `detect`); `deny` when the deny path (BPF
/// LSM) is attached and the configuration lets it stop.
pub fn bits(cfg: &PreventCfg, deny: bool) -> u32 {
    let mut b = match cfg.mode {
        PreventMode::Detect => return 0,
        PreventMode::Audit => PREVENT_ON,
        PreventMode::Prevent => PREVENT_ON | PREVENT_KILL,
    };
    if cfg.unsafe_files {
        b |= PREVENT_FACTS;
    }
    if cfg.unverified_files {
        b |= PREVENT_UNVERIFIED;
    }
    if cfg.interpreter {
        b |= PREVENT_INTERPRETER;
    }
    if deny && cfg.stop == StopPath::Auto {
        b |= PREVENT_DENY;
    }
    b
}

/// Whether prevention, as configured, stops by denying: it is on, its `stop` is `auto`, and
/// BPF LSM runs here and its programs attach (which they then are).
pub fn attach_deny_path(capture: &mut Capture, cfg: &PreventCfg) -> bool {
    if cfg.mode == PreventMode::Detect || cfg.stop == StopPath::Kill {
        return false;
    }
    if let Err(why) = preflight::bpf_lsm() {
        log::info!("prevent: no deny path here ({why}): the kill path stops");
        return false;
    }
    match capture.attach_deny_path() {
        Ok(()) => true,
        Err(e) => {
            log::warn!(
                "prevent: the BPF LSM deny path did not attach ({e:#}): the kill path stops"
            );
            false
        }
    }
}

/// The executable at `path` as the kernel identifies it (symbolic links followed: the
/// merged-/usr aliases are one file).
pub fn exe_key(path: &Path) -> std::io::Result<ExeKey> {
    let m = std::fs::metadata(path)?;
    let dev = m.dev();
    Ok(ExeKey {
        ino: m.ino(),
        dev: (libc::major(dev) << 20) | libc::minor(dev),
        _pad: 0,
    })
}

/// The executables the kernel exempts: the package managers' that exist here, and the allowed
/// processes' (an allowed process is never stopped, a package manager's descendants neither).
pub fn exes(policy: &Policy) -> Vec<(ExeKey, u32)> {
    let mut out: Vec<(ExeKey, u32)> = Vec::new();
    let managers = package_manager::paths().map(|p| (p, PREVENT_EXE_PACKAGE_MANAGER));
    let allowed = policy
        .allow_processes
        .iter()
        .map(|p| (p.as_str(), PREVENT_EXE_ALLOWED));
    for (path, role) in managers.chain(allowed) {
        let Ok(key) = exe_key(Path::new(path)) else {
            continue;
        };
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = role,
            None => out.push((key, role)),
        }
    }
    out
}

/// Lists the package managers' and allowed processes' executables again (a package manager
/// may have replaced one).
pub fn refresh_exes(prevention: &Shared, policy: &Policy) {
    let mut p = prevention.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(e) = p.set_exes(&exes(policy)) {
        log::warn!("prevent: {e:#}");
    }
}

/// The file version at `path` as the kernel identifies it.
pub fn file_key(path: &Path) -> std::io::Result<SeenKey> {
    let m = std::fs::metadata(path)?;
    let dev = m.dev();
    Ok(SeenKey {
        ino: m.ino(),
        mtime_sec: m.mtime(),
        dev: (libc::major(dev) << 20) | libc::minor(dev),
        _pad: 0,
    })
}

/// The allowlist's libraries as file versions: each one that exists and, when the entry has
/// a hash, whose content has it.
pub fn allowed(policy: &Policy) -> Vec<SeenKey> {
    let mut out = Vec::new();
    for (path, sha) in &policy.allow_libraries {
        let path = Path::new(path);
        let Ok(key) = file_key(path) else { continue };
        if let Some(want) = sha {
            let have = provenance::digest_file::<sha2::Sha256>(path, u64::MAX)
                .ok()
                .flatten();
            if have.as_deref() != Some(want.as_str()) {
                log::warn!(
                    "prevent: {} is allowed only with sha256 {want}; it has another content and is not exempt",
                    path.display()
                );
                continue;
            }
        }
        out.push(key);
    }
    out
}

/// Tells the kernel what to prevent for `cfg` and `policy`, and attaches or detaches
/// prevention's programs. Turning it off takes effect before anything else.
pub fn apply(
    capture: &mut Capture,
    prevention: &Shared,
    cfg: &PreventCfg,
    policy: &Policy,
    deny: bool,
) -> Result<()> {
    let mut p = prevention.lock().unwrap_or_else(|e| e.into_inner());
    let new = bits(cfg, deny);
    if new == 0 {
        p.set_bits(0)?;
        drop(p);
        capture.prevention_programs(false);
        log::info!("prevent: mode {}", cfg.mode.name());
        return Ok(());
    }
    p.set_exes(&exes(policy))?;
    p.set_files(PREVENT_FILE_ALLOWED, &allowed(policy))?;
    p.set_bits(new)?;
    drop(p);
    for failed in capture.prevention_programs(true) {
        log::error!("prevent: not attached, what it judges is not stopped: {failed}");
    }
    log::info!("prevent: mode {}{}", cfg.mode.name(), describe(new));
    Ok(())
}

fn describe(bits: u32) -> String {
    if bits == 0 {
        return String::new();
    }
    let mut what = Vec::new();
    if bits & PREVENT_FACTS != 0 {
        what.push("unsafe files");
    }
    if bits & PREVENT_UNVERIFIED != 0 {
        what.push("unverified files");
    }
    if bits & PREVENT_INTERPRETER != 0 {
        what.push("unverified interpreters");
    }
    let how = match (bits & PREVENT_KILL != 0, bits & PREVENT_DENY != 0) {
        (true, true) => {
            "mappings refused with EPERM by the BPF LSM programs, an ELF interpreter killed for"
        }
        (true, false) => "SIGKILL from the mapping tracepoint",
        _ => "nothing is stopped, alerts say what would be",
    };
    format!(" ({how}): {} in credential processes", what.join(", "))
}

/// A file version the package database did not vouch for, mapped by a credential process or
/// modified since its package installed it: listed for the kernel, whose prevention programs
/// stop its later mappings into a credential process (while prevention is off the listing
/// waits in the map).
pub fn list_unverified(prevention: &Shared, key: SeenKey) {
    let mut p = prevention.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(e) = p.list_file(key, PREVENT_FILE_UNVERIFIED) {
        log::warn!("prevent: {e:#}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn bits_follow_the_mode_and_switches() {
        let mut c = PreventCfg::default();
        assert_eq!(bits(&c, true), 0);
        c.mode = PreventMode::Audit;
        assert_eq!(bits(&c, false) & (PREVENT_ON | PREVENT_KILL), PREVENT_ON);
        c.mode = PreventMode::Prevent;
        c.unverified_files = false;
        assert_ne!(bits(&c, true) & PREVENT_DENY, 0);
        c.stop = StopPath::Kill;
        assert_eq!(bits(&c, true) & PREVENT_DENY, 0);
        let b = bits(&c, false);
        assert_eq!(b & PREVENT_KILL, PREVENT_KILL);
        assert_eq!(b & PREVENT_UNVERIFIED, 0);
        assert_ne!(b & PREVENT_FACTS, 0);
    }

    #[test]
    fn package_managers_and_allowed_processes_by_their_files() {
        let mut cfg = Config::default();
        cfg.allow.process.push(crate::config::AllowProcess {
            exe: "/usr/bin/sudo".into(),
            reason: "test".into(),
        });
        cfg.allow.process.push(crate::config::AllowProcess {
            exe: "/nonexistent/prog".into(),
            reason: "test".into(),
        });
        let e = exes(&Policy::from_config(&cfg));
        let role = |p: &str| {
            let k = exe_key(Path::new(p)).ok()?;
            e.iter().find(|(x, _)| *x == k).map(|(_, r)| *r)
        };
        assert_eq!(role("/usr/bin/dpkg"), Some(PREVENT_EXE_PACKAGE_MANAGER));
        assert_eq!(role("/bin/dpkg"), Some(PREVENT_EXE_PACKAGE_MANAGER));
        if Path::new("/usr/bin/sudo").exists() {
            assert_eq!(role("/usr/bin/sudo"), Some(PREVENT_EXE_ALLOWED));
        }
        assert_eq!(role("/usr/bin/cat"), None);
        assert!(e.iter().all(|(_, r)| *r != 0));
    }
}
