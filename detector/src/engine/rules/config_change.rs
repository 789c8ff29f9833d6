//! Rule: a watched place changed — the dynamic loader's configuration or binaries, a library
//! or PAM module directory, the PAM or NSS configuration, the package database — (opened for
//! write, created, renamed onto or away, linked, unlinked, truncated). The findings go to
//! `engine::watch`, which waits for the change to settle and says what changed.
use std::sync::Arc;

use super::{sensor_tamper, Context, Finding, Observation, Rule};
pub use crate::engine::watch::places::{Place, Watched};
use crate::{
    capture::decode::{self, FileOp},
    engine::{file_view::HeldRoot, package_manager},
    output::alert::{ChangedFile, Severity},
};

pub struct ConfigChange;

impl Rule for ConfigChange {
    fn evaluate(&mut self, cx: &Context, observation: &Observation) -> Vec<Finding> {
        match observation {
            Observation::FileChange(c) => evaluate(cx, c),
            _ => Vec::new(),
        }
    }
}

/// The paths a change is about, each with what it is: a rename's source and destination when
/// both are watched (the source went away, the destination was replaced), else the watched
/// one; for a hard link, its new name.
fn targets(watched: &Watched, c: &decode::FileChange) -> Vec<(String, Place)> {
    let classified = |p: &String| watched.classify(p).map(|k| (p.clone(), k));
    match (c.op, c.paths.as_slice()) {
        (FileOp::Rename, [from, to]) if from != to => {
            classified(from).into_iter().chain(classified(to)).collect()
        }
        // Linking a watched file elsewhere changes nothing watched.
        (FileOp::Link, [_, to]) => classified(to).into_iter().collect(),
        _ => c.paths.iter().find_map(classified).into_iter().collect(),
    }
}

/// A change by a package manager (the writer is one or descends from one) or by pam-auth-update
/// is information; so is an image builder's (or its descendant's) change of a file in another
/// mount namespace than the host's (the tree it builds, not the host's file). Any other
/// writer's is high: an image builder's hook writing the host's files included. What changed
/// is filled in once the change settled (`engine::watch`).
fn evaluate(cx: &Context, c: &decode::FileChange) -> Vec<Finding> {
    let by_pam_auth_update = package_manager::is_pam_auth_update(&cx.process.exe);
    // pam-auth-update is trusted as far as its profiles are (checked once settled).
    let manager = cx
        .package_manager
        .or(by_pam_auth_update.then_some("pam-auth-update"))
        .or(cx.image_builder.filter(|_| c.other_mount_ns));
    targets(cx.watched, c)
        .into_iter()
        .map(|(path, place)| {
            let mut f = Finding::new(c.hdr.ktime_ns, cx.process.clone(), place.detection());
            if manager.is_some() {
                f.ceiling = Severity::Info;
            } else {
                f.floor = Severity::High;
            }
            if let Some(what) = cx.watched.sensor_file(&path) {
                sensor_tamper::mark(&mut f, format!("the detector's {what} {}", changed(c.op)));
            }
            let mut file = ChangedFile::new(path, c.op, c.paths.clone(), place);
            file.package_manager = manager;
            file.by_pam_auth_update = by_pam_auth_update;
            if c.other_mount_ns {
                // Held now, on the reader's path: a writer in a container is often gone, with
                // its namespace, by the time the change settles. Two /proc reads and an open,
                // for changes of the watched places in another mount namespace only.
                let root = HeldRoot::of(cx.process.pid, cx.process.ppid).map(Arc::new);
                file.mount_namespace = Some(
                    root.as_ref()
                        .map_or_else(|| "unknown".to_string(), |r| r.mnt_ns.clone()),
                );
                file.root = root;
            }
            f.file = Some(file);
            f
        })
        .collect()
}

/// How a change is said of the sensor's file.
fn changed(op: FileOp) -> &'static str {
    match op {
        FileOp::OpenWrite => "written",
        FileOp::Rename => "renamed over or away",
        FileOp::Unlink => "removed",
        FileOp::Truncate => "truncated",
        FileOp::Symlink => "replaced by a symbolic link",
        FileOp::Link => "replaced by a hard link",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::alert::Process;

    fn judged(image_builder: Option<&'static str>, other_mount_ns: bool) -> Finding {
        let process = Process {
            pid: 4_000_201,
            ppid: 4_000_200,
            exe: "/usr/bin/mv".into(),
            ..Process::default()
        };
        let cx = Context {
            image_builder,
            ..Context::for_test(&process)
        };
        let c = decode::FileChange {
            hdr: Default::default(),
            op: FileOp::Rename,
            paths: vec!["/etc/pam.d/su.new".into(), "/etc/pam.d/su".into()],
            other_mount_ns,
        };
        evaluate(&cx, &c).pop().unwrap()
    }

    #[test]
    fn an_image_builders_change_is_information_only_in_another_mount_namespace() {
        let f = judged(Some("mmdebstrap"), true);
        assert_eq!(f.ceiling, Severity::Info);
        let file = f.file.unwrap();
        assert_eq!(file.package_manager, Some("mmdebstrap"));
        assert!(file.mount_namespace.is_some());
        // A hook of the builder changing the host's file.
        let f = judged(Some("mmdebstrap"), false);
        assert_eq!((f.floor, f.ceiling), (Severity::High, Severity::Critical));
        assert_eq!(f.file.unwrap().package_manager, None);
        // Another writer in another mount namespace.
        let f = judged(None, true);
        assert_eq!(f.floor, Severity::High);
    }

    #[test]
    fn a_rename_is_about_both_its_ends() {
        let w = Watched::default();
        let c = |op, paths: &[&str]| decode::FileChange {
            hdr: Default::default(),
            op,
            paths: paths.iter().map(|p| p.to_string()).collect(),
            other_mount_ns: false,
        };
        let pam = |p: &str| (p.to_owned(), Place::PamConfig);
        assert_eq!(
            targets(
                &w,
                &c(FileOp::Rename, &["/etc/pam.d/sedAbc123", "/etc/pam.d/su-l"])
            ),
            [pam("/etc/pam.d/sedAbc123"), pam("/etc/pam.d/su-l")]
        );
        assert_eq!(
            targets(&w, &c(FileOp::Rename, &["/etc/pam.d/su", "/tmp/su"])),
            [pam("/etc/pam.d/su")]
        );
        assert_eq!(
            targets(&w, &c(FileOp::Rename, &["/tmp/su", "/etc/pam.d/su"])),
            [pam("/etc/pam.d/su")]
        );
        assert!(targets(&w, &c(FileOp::Link, &["/etc/pam.d/su", "/tmp/su"])).is_empty());
        assert_eq!(
            targets(&w, &c(FileOp::Unlink, &["/etc/pam.d/su"])),
            [pam("/etc/pam.d/su")]
        );
    }
}
