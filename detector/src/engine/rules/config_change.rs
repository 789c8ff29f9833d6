//! Rule: a watched place changed — the dynamic loader's configuration or binaries, a library
//! or PAM module directory, the PAM or NSS configuration, the package database — (opened for
//! write, created, renamed onto or away, linked, unlinked, truncated). The findings go to
//! `engine::watch`, which waits for the change to settle and says what changed.
use super::{Context, Finding, Observation, Rule};
pub use crate::engine::watch::places::{Place, Watched};
use crate::{
    capture::decode::{self, FileOp},
    engine::package_manager,
    output::alert::{ChangedFile, Severity},
};

pub struct ConfigChange;

impl Rule for ConfigChange {
    fn evaluate(&mut self, cx: &Context, observation: &Observation) -> Vec<Finding> {
        match observation {
            Observation::FileChange(c) => evaluate(cx, c).into_iter().collect(),
            _ => Vec::new(),
        }
    }
}

/// The path a change is about: a rename's or a hard link's destination when it is watched,
/// else the first watched path (a rename's source: the watched file went away).
fn target(watched: &Watched, c: &decode::FileChange) -> Option<(String, Place)> {
    let dest = match c.op {
        FileOp::Rename | FileOp::Link if c.paths.len() == 2 => c.paths.get(1),
        _ => None,
    };
    if let Some(place) = dest.and_then(|d| watched.classify(d)) {
        return dest.map(|d| (d.clone(), place));
    }
    if c.op == FileOp::Link {
        // Linking a watched file elsewhere changes nothing watched.
        return None;
    }
    c.paths
        .iter()
        .find_map(|p| watched.classify(p).map(|k| (p.clone(), k)))
}

/// A change by a package manager (the writer is one or descends from one) or by pam-auth-update
/// is information; any other writer's is high. What changed is filled in once the change settled
/// (`engine::watch`).
fn evaluate(cx: &Context, c: &decode::FileChange) -> Option<Finding> {
    let (path, place) = target(cx.watched, c)?;
    let mut f = Finding::new(c.hdr.ktime_ns, cx.process.clone(), place.detection());
    let by_pam_auth_update = package_manager::is_pam_auth_update(&cx.process.exe);
    // pam-auth-update is trusted as far as its profiles are (checked once settled).
    let manager = cx
        .package_manager
        .or(by_pam_auth_update.then_some("pam-auth-update"));
    if manager.is_some() {
        f.ceiling = Severity::Info;
    } else {
        f.floor = Severity::High;
    }
    let mut file = ChangedFile::new(path, c.op, c.paths.clone(), place);
    file.package_manager = manager;
    file.by_pam_auth_update = by_pam_auth_update;
    f.file = Some(file);
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rename_is_about_its_destination() {
        let w = Watched::default();
        let c = |op, paths: &[&str]| decode::FileChange {
            hdr: Default::default(),
            op,
            paths: paths.iter().map(|p| p.to_string()).collect(),
        };
        assert_eq!(
            target(
                &w,
                &c(FileOp::Rename, &["/etc/pam.d/sedAbc123", "/etc/pam.d/su-l"])
            ),
            Some(("/etc/pam.d/su-l".into(), Place::PamConfig))
        );
        assert_eq!(
            target(&w, &c(FileOp::Rename, &["/etc/pam.d/su", "/tmp/su"])),
            Some(("/etc/pam.d/su".into(), Place::PamConfig))
        );
        assert_eq!(
            target(&w, &c(FileOp::Link, &["/etc/pam.d/su", "/tmp/su"])),
            None
        );
    }
}
