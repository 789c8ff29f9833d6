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
    SeenKey, PREVENT_COMM_CREDENTIAL, PREVENT_COMM_PACKAGE_MANAGER, PREVENT_FACTS,
    PREVENT_FILE_ALLOWED, PREVENT_FILE_UNVERIFIED, PREVENT_INTERPRETER, PREVENT_KILL, PREVENT_ON,
    PREVENT_UNVERIFIED,
};

use crate::{
    capture::load::{Prevention, SeenCache},
    config::{PreventCfg, PreventMode},
    engine::{package_manager, policy::Policy, provenance},
};

pub type Shared = Arc<Mutex<Prevention>>;

/// The `PREVENT_*` bits for a configuration (0 for `detect`).
pub fn bits(cfg: &PreventCfg) -> u32 {
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
    b
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

/// Tells the kernel what to prevent for `cfg` and `policy`. Turning prevention on has the
/// seen-cache emptied first, so that files reported before are judged at their next mapping;
/// turning it off takes effect before anything else.
pub fn apply(
    prevention: &Shared,
    seen: Option<&Arc<Mutex<SeenCache>>>,
    cfg: &PreventCfg,
    policy: &Policy,
) -> Result<()> {
    let mut p = prevention.lock().unwrap_or_else(|e| e.into_inner());
    let new = bits(cfg);
    let old = p.bits();
    if new == 0 {
        p.set_bits(0)?;
    }
    p.set_comms(&comms(policy))?;
    p.set_files(PREVENT_FILE_ALLOWED, &allowed(policy))?;
    if new != 0 && old == 0 {
        if let Some(seen) = seen {
            seen.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }
    p.set_bits(new)?;
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
    let how = if bits & PREVENT_KILL != 0 {
        "SIGKILL from the mapping tracepoint"
    } else {
        "nothing is stopped, alerts say what would be"
    };
    format!(" ({how}): {} in credential processes", what.join(", "))
}

/// A file version the package database did not vouch for, mapped by a credential process or
/// modified since its package installed it: listed for the kernel (its later mappings into a
/// credential process are stopped) and, while prevention is on, forgotten by the seen-cache.
pub fn list_unverified(prevention: &Shared, seen: Option<&Arc<Mutex<SeenCache>>>, key: SeenKey) {
    let mut p = prevention.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(e) = p.list_file(key, PREVENT_FILE_UNVERIFIED) {
        log::warn!("prevent: {e:#}");
    }
    let on = p.bits() != 0;
    drop(p);
    // While prevention is off the listing waits in the kernel's map; turning it on empties the
    // seen-cache.
    if let (true, Some(seen)) = (on, seen) {
        seen.lock().unwrap_or_else(|e| e.into_inner()).forget(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn bits_follow_the_mode_and_switches() {
        let mut c = PreventCfg::default();
        assert_eq!(bits(&c), 0);
        c.mode = PreventMode::Audit;
        assert_eq!(bits(&c) & (PREVENT_ON | PREVENT_KILL), PREVENT_ON);
        c.mode = PreventMode::Prevent;
        c.unverified_files = false;
        let b = bits(&c);
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
