//! Prevention's user-space half: what the kernel's mapping programs are told to stop
//! (`capture::load::Prevention`, judged in `detector-ebpf/src/prevent.rs`), from the
//! configuration: the `[prevent]` switches, the catalogue's program names (less those of
//! allowed processes), the package managers' names (whose descendants are never stopped) and
//! the allowlist's libraries (by file version, and only while their hash matches). The file
//! versions the package database did not vouch for are listed as the policy stage finds them
//! ([`list_unverified`]).
use std::{
    os::unix::fs::MetadataExt as _,
    path::Path,
    sync::{Arc, Mutex},
};

use anyhow::Result;
use detector_common::{
    SeenKey, PREVENT_COMM_CREDENTIAL, PREVENT_COMM_PACKAGE_MANAGER, PREVENT_DENY, PREVENT_FACTS,
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

/// A process name as the kernel keeps it (`comm`): its first 15 bytes, NUL-padded.
pub fn comm_key(name: &str) -> [u8; 16] {
    let mut k = [0u8; 16];
    let n = name.len().min(15);
    k[..n].copy_from_slice(&name.as_bytes()[..n]);
    k
}

/// The names the kernel tells credential processes and package managers by. A catalogue name
/// that an allowed process's executable has is left out: that program is never stopped.
pub fn comms(policy: &Policy) -> Vec<([u8; 16], u32)> {
    let allowed = |name: &str| {
        policy
            .allow_processes
            .iter()
            .any(|exe| exe.rsplit('/').next() == Some(name))
    };
    let mut out: Vec<([u8; 16], u32)> = package_manager::basenames()
        .map(|n| (comm_key(n), PREVENT_COMM_PACKAGE_MANAGER))
        .collect();
    for name in policy.catalogue.basenames().filter(|n| !allowed(n)) {
        let k = comm_key(name);
        if !out.iter().any(|(e, _)| *e == k) {
            out.push((k, PREVENT_COMM_CREDENTIAL));
        }
    }
    out
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
    p.set_comms(&comms(policy))?;
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
    fn names_are_cut_as_comm_and_allowed_programs_left_out() {
        assert_eq!(&comm_key("polkit-agent-helper-1"), b"polkit-agent-he\0");
        let mut cfg = Config::default();
        cfg.allow.process.push(crate::config::AllowProcess {
            exe: "/usr/bin/sudo".into(),
            reason: "test".into(),
        });
        let c = comms(&Policy::from_config(&cfg));
        let role = |n: &str| c.iter().find(|(k, _)| *k == comm_key(n)).map(|(_, r)| *r);
        assert_eq!(role("ssh"), Some(PREVENT_COMM_CREDENTIAL));
        assert_eq!(role("dpkg"), Some(PREVENT_COMM_PACKAGE_MANAGER));
        assert_eq!(role("sudo"), None);
        assert_eq!(role("cat"), None);
    }
}
