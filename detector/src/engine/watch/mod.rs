//! Changes to the watched places, from the config_change rule's findings to alerts that say
//! what changed. A change is reported once it settled (`SETTLE` after its event, a second for
//! the creation of a name that did not exist: the kernel reports a rename before it happens and
//! an open before anything is written):
//!
//! - an edit the usual way — a temporary file written, then renamed over the target (`sed -i`,
//!   editors, `ln -sf`) — is one change of the target: the temporary file's own events are
//!   folded into the rename; a name one process removes and makes again (`install`) is one
//!   change too;
//! - a name that did not exist, was created and is gone again once settled left nothing: a
//!   package manager's is dropped, another writer's is low;
//! - what changed: for text configuration the lines added and removed (against the snapshot,
//!   `snapshot`), for a symbolic link its previous and new target, for code its new hash and,
//!   when the writer is not a package manager, what the package database says of it;
//! - a package manager's changes are information (so are an image builder's in another mount
//!   namespace, `rules::config_change`); once no package manager or image builder runs any
//!   more, the code it changed is verified against the package database, and a file it does not
//!   vouch for is high. `pam-auth-update`'s changes are trusted only when the package database vouches for
//!   every profile it composes them from;
//! - a change in another mount namespace (a container: the kernel says the writer's root is
//!   not in the daemon's mount tree) is about that namespace's file, not the host's: its root is
//!   held open by the rule that found it (the writer's, or its parent's), the file is read
//!   through it and verified against that root's package database. The host's snapshot knows
//!   nothing of it: its text is listed whole, as added.
pub mod diff;
pub mod places;
pub mod snapshot;

use crate::capture::names;
use std::{
    collections::BTreeMap,
    fs,
    io::Read as _,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use sha2::{Digest as _, Sha256};

use crate::{
    capture::decode::FileOp,
    engine::{
        provenance::{
            self, verifier::Verifier, PackageDb, CHECKSUM_SKIPPED, SYMLINK_NOT_FROM_PACKAGE,
        },
        rules::Finding,
        watch::places::Place,
    },
    output::alert::{ChangedFile, Detection, FileHash, Process, Severity},
};
use snapshot::{Snapshot, Text};

/// How long after its event a change is looked at.
pub const SETTLE: Duration = Duration::from_millis(250);
/// How long the creation of a name that did not exist waits (for a rename that makes it a
/// temporary file).
pub const NEW_NAME_SETTLE: Duration = Duration::from_secs(1);
/// Lines listed at most, added and removed each.
const DIFF_LINES_MAX: usize = 64;
/// Where pam-auth-update takes its profiles and templates from.
const PAM_PROFILE_DIRS: &[&str] = &["/usr/share/pam-configs", "/usr/share/pam"];
/// Files kept for verification at most while package managers run.
const TO_VERIFY_MAX: usize = 20_000;
/// `file.provenance_reasons` when a pam-auth-update profile is not vouched for.
pub const PAM_PROFILE_UNVERIFIED: &str = "pam_profile_unverified";

struct Pending {
    finding: Finding,
    due: Instant,
}

/// Code a package manager changed, to verify once it is done.
struct ToVerify {
    ktime_ns: u64,
    process: Process,
    file: ChangedFile,
}

pub struct Changes {
    snapshot: Snapshot,
    pending: Vec<Pending>,
    hash_budget: u64,
    /// The package databases, shared with the enrichment pool.
    verifier: Arc<Verifier>,
    to_verify: BTreeMap<String, ToVerify>,
    verify_at: Option<Instant>,
}

impl Changes {
    pub fn new(snapshot: Snapshot, hash_budget: u64, verifier: Arc<Verifier>) -> Self {
        Changes {
            snapshot,
            pending: Vec::new(),
            hash_budget,
            verifier,
            to_verify: BTreeMap::new(),
            verify_at: None,
        }
    }

    /// Takes a finding about a watched file (one with `file`).
    pub fn admit(&mut self, f: Finding, now: Instant) {
        let Some(file) = &f.file else {
            return;
        };
        let op = file.operation;
        if op == FileOp::OpenWrite && self.renamed_away(&file.path) {
            // fanotify's report of a creation or write comes on another channel than the
            // kernel's report of the rename that took the file away, and may come after it: a
            // temporary file already renamed over its target is part of that rename's change.
            let temp = file.path.clone();
            self.pending.retain(|p| {
                !(about(&p.finding) == temp.as_str()
                    && p.finding
                        .file
                        .as_ref()
                        .is_some_and(|x| x.operation == FileOp::Rename))
            });
            return;
        }
        if op == FileOp::Rename && file.paths.len() == 2 && file.path == file.paths[0] {
            // The source's end of a rename: a temporary file (still pending its creation) went
            // away into the destination, whose change is the one to report.
            let source = &file.paths[0];
            if self
                .pending
                .iter()
                .any(|p| about(&p.finding) == source.as_str() && creates(&p.finding))
            {
                return;
            }
        }
        if op == FileOp::Rename && file.paths.len() == 2 && file.path == file.paths[1] {
            // The temporary file's own events are the rename's; so is the same process's
            // attempt to link the target in place (`ln -sf` tries that before it renames).
            let (source, dest) = (&file.paths[0], &file.paths[1]);
            let pid = f.process.pid;
            self.pending.retain(|p| {
                let (on, f2) = (about(&p.finding), &p.finding);
                !((on == source.as_str() && creates(f2))
                    || (on == dest.as_str() && f2.process.pid == pid && links(f2)))
            });
        }
        if creates(&f) {
            // A name removed and made again by one process (`install`) is one change.
            let pid = f.process.pid;
            self.pending.retain(|p| {
                !(about(&p.finding) == file.path.as_str()
                    && p.finding.process.pid == pid
                    && p.finding
                        .file
                        .as_ref()
                        .is_some_and(|x| x.operation == FileOp::Unlink))
            });
        }
        if op == FileOp::Unlink
            && file.package_manager.is_some()
            && !self.snapshot.known(&file.path)
        {
            // A package manager's transient name (`*.dpkg-tmp`, `*.dpkg-new`) left nothing.
            let before = self.pending.len();
            let path = file.path.clone();
            self.pending.retain(|p| {
                !(about(&p.finding) == path
                    && creates(&p.finding)
                    && p.finding
                        .file
                        .as_ref()
                        .is_some_and(|x| x.package_manager.is_some()))
            });
            if self.pending.len() < before {
                return;
            }
        }
        // A name that did not exist may be a temporary file: it waits longer for its rename.
        let wait = if creates(&f) && !self.snapshot.known(&file.path) {
            NEW_NAME_SETTLE
        } else {
            SETTLE
        };
        self.pending.push(Pending {
            finding: f,
            due: now + wait,
        });
    }

    /// Whether a pending rename took `path` away to another name, and nothing is at `path` now.
    fn renamed_away(&self, path: &str) -> bool {
        self.pending.iter().any(|p| {
            p.finding.file.as_ref().is_some_and(|x| {
                x.operation == FileOp::Rename
                    && x.paths.len() == 2
                    && x.paths[0] == path
                    && x.paths[1] != path
            })
        }) && fs::symlink_metadata(path).is_err()
    }

    /// No package manager runs any more: what they changed is verified once settled.
    pub fn package_managers_done(&mut self, now: Instant) {
        self.verify_at = Some(now + SETTLE);
    }

    /// The changes settled by `now` (everything with `None`), described, in event order.
    pub fn settled(&mut self, now: Option<Instant>) -> Vec<Finding> {
        let due = |t: Instant| now.is_none_or(|n| t <= n);
        let mut out = Vec::new();
        let pending = std::mem::take(&mut self.pending);
        for p in pending {
            if due(p.due) {
                let mut f = p.finding;
                if self.describe(&mut f) {
                    out.push(f);
                }
            } else {
                self.pending.push(p);
            }
        }
        // Verified once what the package managers changed has settled.
        let managers_pending = self.pending.iter().any(|p| {
            p.finding
                .file
                .as_ref()
                .is_some_and(|x| x.package_manager.is_some())
        });
        if self.verify_at.is_some_and(due) && !managers_pending {
            self.verify_at = None;
            out.extend(self.verify());
        }
        out
    }

    /// The host's package database, as its package manager last left it.
    fn db(&self) -> Option<Arc<dyn PackageDb>> {
        self.verifier.host()
    }

    /// Fills in what changed; false when the change is to be dropped.
    fn describe(&mut self, f: &mut Finding) -> bool {
        let Some(mut file) = f.file.take() else {
            return false;
        };
        let path = file.path.clone();
        let foreign = file.mount_namespace.is_some();
        if foreign && file.root.is_none() {
            file.content_skipped = Some(
                "the file is in another mount namespace, and no process of it was left to look \
                 through"
                    .into(),
            );
            f.file = Some(file);
            return true;
        }
        // Where the daemon reaches the file; the host's snapshot is only the host's files'.
        let access = access(&file);
        let meta = fs::symlink_metadata(&access).ok();
        let exists = meta.is_some();
        file.exists = Some(exists);
        let by_manager = file.package_manager.is_some();
        if !exists && (foreign || !self.snapshot.known(&path)) {
            // Created and gone again: nothing is left.
            if by_manager {
                return false;
            }
            f.ceiling = f.ceiling.min(Severity::Low);
        }
        let is_link = meta.as_ref().is_some_and(|m| m.file_type().is_symlink());
        let target = if is_link {
            fs::read_link(&access).ok().map(|t| t.display().to_string())
        } else {
            None
        };
        let previous = if foreign {
            None
        } else {
            self.snapshot.link(&path).cloned()
        };
        if target.is_some() || previous.is_some() {
            file.target_path = target.clone();
            file.previous_target_path = previous;
        }
        if !foreign {
            if file.place.is_code() || is_link {
                self.snapshot.set_link(&path, target);
            }
            self.snapshot.set_known(&path, exists);
        }
        if file.place.is_text() && foreign {
            foreign_text(&mut file, &access);
        } else if file.place.is_text() {
            self.text_diff(&mut file);
        }
        if file.place.is_code() && !is_link {
            if let Some(m) = meta.as_ref().filter(|m| m.file_type().is_file()) {
                self.hash(&mut file, m.len());
            }
        }
        if file.place.is_code() && exists {
            if by_manager && self.to_verify.len() >= TO_VERIFY_MAX {
                file.content_skipped = Some(format!(
                    "over {TO_VERIFY_MAX} files wait for verification: this one is not verified"
                ));
            } else if by_manager {
                self.to_verify.insert(
                    access.clone(),
                    ToVerify {
                        ktime_ns: f.ktime_ns,
                        process: f.process.clone(),
                        file: file.clone(),
                    },
                );
            } else {
                self.provenance(&mut file);
            }
        }
        if file.place == Place::PackageDatabase && !foreign {
            // Answers from the record as it was are stale.
            self.verifier.reread_host();
        }
        // pam-auth-update in another mount namespace composes from that namespace's profiles:
        // its change is judged as the package manager's.
        if file.by_pam_auth_update && file.place == Place::PamConfig && !foreign {
            if let Some(untrusted) = self.unverified_pam_profile() {
                file.provenance_reasons.push(PAM_PROFILE_UNVERIFIED);
                f.ceiling = Severity::Critical;
                f.floor = Severity::High;
                log::warn!("pam-auth-update composed {path} from {untrusted}, which the package database does not vouch for");
            }
        }
        f.file = Some(file);
        true
    }

    fn text_diff(&mut self, file: &mut ChangedFile) {
        let path = file.path.clone();
        let old = match self.snapshot.text(&path) {
            Some(Text::Lines(l)) => Some(l.clone()),
            Some(Text::Unkept(why)) => {
                file.content_skipped = Some(format!("the previous content is unknown: {why}"));
                None
            }
            None => Some(Vec::new()),
        };
        match snapshot::read_text(&path) {
            Ok(new) => {
                if let Some(old) = old {
                    file.diff = Some(diff::lines(
                        &old,
                        new.as_deref().unwrap_or(&[]),
                        DIFF_LINES_MAX,
                    ));
                }
                self.snapshot.set_text(&path, new.map(Text::Lines));
            }
            Err(why) => {
                file.content_skipped = Some(why.clone());
                self.snapshot.set_text(&path, Some(Text::Unkept(why)));
            }
        }
    }

    fn hash(&self, file: &mut ChangedFile, size: u64) {
        if size > self.hash_budget {
            file.content_skipped = Some(format!(
                "the file is {size} bytes, over the {}-byte hashing budget",
                self.hash_budget
            ));
            return;
        }
        match sha256(&names::path(&access(file))) {
            Ok(h) => file.hash = Some(FileHash { sha256: h }),
            Err(e) => file.content_skipped = Some(format!("cannot hash the file: {e}")),
        }
    }

    fn provenance(&mut self, file: &mut ChangedFile) {
        let path = file.path.clone();
        if let Some(root) = &file.root {
            let p =
                self.verifier
                    .verify(Some(root.through()), &path, &names::path(&root.path(&path)));
            file.package = p.package;
            file.verified = Some(p.verified);
            file.provenance_reasons = p.reasons;
            return;
        }
        let Some(db) = self.db() else {
            file.provenance_reasons
                .push(provenance::NO_PACKAGE_DATABASE);
            return;
        };
        match db.provenance(&names::path(&path)) {
            Ok(p) => {
                file.package = p.package;
                file.verified = Some(p.verified);
                file.provenance_reasons = p.reasons;
            }
            Err(_) => file.provenance_reasons.push(provenance::PROVENANCE_UNKNOWN),
        }
    }

    /// The first pam-auth-update profile or template the package database does not vouch
    /// for, if any.
    fn unverified_pam_profile(&mut self) -> Option<String> {
        let mut files: Vec<_> = PAM_PROFILE_DIRS
            .iter()
            .filter_map(|d| fs::read_dir(d).ok())
            .flat_map(|rd| rd.flatten().map(|e| e.path()))
            .collect();
        files.sort();
        let Some(db) = self.db() else {
            return Some("a system without a package database".into());
        };
        files
            .into_iter()
            .find(|p| {
                !db.provenance(p)
                    .is_ok_and(|x| x.verified || x.reasons.iter().all(|r| *r == CHECKSUM_SKIPPED))
            })
            .map(|p| p.display().to_string())
    }

    /// The code package managers changed, verified now that they are done: a finding for
    /// each file the package database does not vouch for.
    fn verify(&mut self) -> Vec<Finding> {
        let mut out = Vec::new();
        for (access, v) in std::mem::take(&mut self.to_verify) {
            let p = if let Some(root) = &v.file.root {
                if fs::symlink_metadata(&access).is_err() {
                    continue; // gone since: nothing to verify
                }
                self.verifier
                    .verify(Some(root.through()), &v.file.path, &names::path(&access))
            } else {
                let Some(db) = self.db() else {
                    break;
                };
                let Ok(p) = db.provenance(&names::path(&access)) else {
                    // Gone since: nothing to verify.
                    continue;
                };
                p
            };
            let vouched = p.verified
                || p.reasons
                    .iter()
                    .all(|r| *r == CHECKSUM_SKIPPED || *r == SYMLINK_NOT_FROM_PACKAGE);
            if vouched {
                continue;
            }
            let mut f = Finding::new(v.ktime_ns, v.process, v.file.place.detection());
            f.detections.insert(Detection::UnverifiedObject);
            f.floor = Severity::High;
            let mut file = v.file;
            file.package = p.package;
            file.verified = Some(false);
            file.provenance_reasons = p.reasons;
            f.file = Some(file);
            out.push(f);
        }
        out
    }
}

/// Where the daemon reaches the changed file: its path, or through the root of the other mount
/// namespace it is in.
fn access(file: &ChangedFile) -> String {
    match &file.root {
        Some(root) => root.path(&file.path),
        None => file.path.clone(),
    }
}

/// A text file in another mount namespace: its previous content is unknown, so all its lines
/// are listed as added.
fn foreign_text(file: &mut ChangedFile, access: &str) {
    match snapshot::read_text(access) {
        Ok(lines) => {
            file.diff = Some(diff::lines(
                &[],
                lines.as_deref().unwrap_or(&[]),
                DIFF_LINES_MAX,
            ));
            file.content_skipped = Some(
                "the previous content of a file in another mount namespace is unknown: every line \
                 is listed as added"
                    .into(),
            );
        }
        Err(why) => file.content_skipped = Some(why),
    }
}

/// The watched path a finding is about.
fn about(f: &Finding) -> &str {
    f.file.as_ref().map_or("", |x| x.path.as_str())
}

/// Whether the finding's event created or wrote the name it is about.
fn creates(f: &Finding) -> bool {
    f.file.as_ref().is_some_and(|x| {
        matches!(
            x.operation,
            FileOp::OpenWrite | FileOp::Symlink | FileOp::Link | FileOp::Truncate
        )
    })
}

/// Whether the finding's event made a link.
fn links(f: &Finding) -> bool {
    f.file
        .as_ref()
        .is_some_and(|x| matches!(x.operation, FileOp::Symlink | FileOp::Link))
}

fn sha256(path: &Path) -> std::io::Result<String> {
    let mut f = snapshot::open_regular(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::alert::Clock;

    fn changes(snapshot: Snapshot) -> Changes {
        Changes::new(snapshot, 1 << 20, Arc::new(Verifier::new(1 << 20)))
    }

    fn change(
        pid: u32,
        op: FileOp,
        paths: &[&str],
        place: Place,
        manager: Option<&'static str>,
    ) -> Finding {
        let process = Process {
            pid,
            comm: "sed".into(),
            exe: "/usr/bin/sed".into(),
            ..Process::default()
        };
        let mut f = Finding::new(1, process, place.detection());
        if manager.is_some() {
            f.ceiling = Severity::Info;
        } else {
            f.floor = Severity::High;
        }
        let target = match op {
            FileOp::Rename | FileOp::Link => paths[1],
            _ => paths[0],
        };
        let mut file = ChangedFile::new(
            target.into(),
            op,
            paths.iter().map(|p| p.to_string()).collect(),
            place,
        );
        file.package_manager = manager;
        f.file = Some(file);
        f
    }

    /// The finding about a rename's source.
    fn source_end(mut f: Finding) -> Finding {
        let file = f.file.as_mut().unwrap();
        file.path = file.paths[0].clone();
        f
    }

    #[test]
    fn a_watched_file_renamed_away_is_reported_at_both_ends() {
        let d = dir("mv");
        let (from, to) = (d.join("su"), d.join("su.disabled"));
        let (from, to) = (from.to_str().unwrap(), to.to_str().unwrap());
        fs::write(from, "auth include common-auth\n").unwrap();
        let mut snapshot = Snapshot::default();
        snapshot.set_text(
            from,
            Some(Text::Lines(vec!["auth include common-auth".into()])),
        );
        snapshot.set_known(from, true);
        let mut c = changes(snapshot);
        let t0 = Instant::now();
        fs::rename(from, to).unwrap();
        let rename = || change(3, FileOp::Rename, &[from, to], Place::PamConfig, None);
        c.admit(source_end(rename()), t0);
        c.admit(rename(), t0);
        let found = c.settled(None);
        assert_eq!(found.len(), 2);
        let gone = found[0].file.as_ref().unwrap();
        assert_eq!((gone.path.as_str(), gone.exists), (from, Some(false)));
        assert_eq!(
            gone.diff.as_ref().unwrap().removed,
            ["auth include common-auth"]
        );
        let made = found[1].file.as_ref().unwrap();
        assert_eq!(
            made.diff.as_ref().unwrap().added,
            ["auth include common-auth"]
        );
        assert!(found.iter().all(|f| f.floor == Severity::High));
        let _ = fs::remove_dir_all(&d);
    }

    fn dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("detector-watch-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn an_edit_through_a_temporary_file_is_one_change_of_the_target_with_its_lines() {
        let d = dir("sed");
        let (target, temp) = (d.join("su-l"), d.join("sedXyZ"));
        let (target, temp) = (target.to_str().unwrap(), temp.to_str().unwrap());
        fs::write(target, "auth include common-auth\n").unwrap();
        let mut snapshot = Snapshot::default();
        snapshot.set_text(
            target,
            Some(Text::Lines(vec!["auth include common-auth".into()])),
        );
        snapshot.set_known(target, true);
        let mut c = changes(snapshot);
        let t0 = Instant::now();
        c.admit(
            change(7, FileOp::OpenWrite, &[temp], Place::PamConfig, None),
            t0,
        );
        fs::write(
            temp,
            "auth include common-auth\nauth sufficient pam_succeed_if.so uid >= 0\n",
        )
        .unwrap();
        fs::rename(temp, target).unwrap();
        let rename = || change(7, FileOp::Rename, &[temp, target], Place::PamConfig, None);
        c.admit(source_end(rename()), t0);
        c.admit(rename(), t0);
        assert!(c.settled(Some(t0)).is_empty(), "not settled yet");
        let found = c.settled(Some(t0 + SETTLE));
        assert_eq!(found.len(), 1);
        let file = found[0].file.as_ref().unwrap();
        assert_eq!(file.path, target);
        let diff = file.diff.as_ref().unwrap();
        assert_eq!(diff.added, ["auth sufficient pam_succeed_if.so uid >= 0"]);
        assert!(diff.removed.is_empty());
        let alert = found.into_iter().next().unwrap().finish(
            &Clock::fixed(Duration::ZERO),
            &crate::engine::credential::Catalogue::default(),
        );
        assert_eq!(alert.severity, Severity::High);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_temporary_files_creation_reported_after_its_rename_is_part_of_the_rename() {
        let d = dir("late");
        let (target, temp) = (d.join("su-l"), d.join("sedLaTe"));
        let (target, temp) = (target.to_str().unwrap(), temp.to_str().unwrap());
        fs::write(target, "auth include common-auth\n").unwrap();
        let mut snapshot = Snapshot::default();
        snapshot.set_text(
            target,
            Some(Text::Lines(vec!["auth include common-auth".into()])),
        );
        snapshot.set_known(target, true);
        let mut c = changes(snapshot);
        let t0 = Instant::now();
        fs::write(temp, "auth include common-auth\nauth optional pam_x.so\n").unwrap();
        fs::rename(temp, target).unwrap();
        // The rename (kernel tracepoints) first, then the temporary file's creation (fanotify).
        let rename = || change(7, FileOp::Rename, &[temp, target], Place::PamConfig, None);
        c.admit(source_end(rename()), t0);
        c.admit(rename(), t0);
        c.admit(
            change(7, FileOp::OpenWrite, &[temp], Place::PamConfig, None),
            t0,
        );
        let found = c.settled(None);
        assert_eq!(found.len(), 1);
        let file = found[0].file.as_ref().unwrap();
        assert_eq!(file.path, target);
        assert_eq!(
            file.diff.as_ref().unwrap().added,
            ["auth optional pam_x.so"]
        );
        // A name made again after the rename is a change of its own.
        fs::write(temp, "x\n").unwrap();
        c.admit(source_end(rename()), t0);
        c.admit(
            change(7, FileOp::OpenWrite, &[temp], Place::PamConfig, None),
            t0,
        );
        assert!(c
            .settled(None)
            .iter()
            .any(|f| f.file.as_ref().unwrap().operation == FileOp::OpenWrite));
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_package_managers_changes_are_information_and_its_transient_names_leave_nothing() {
        let d = dir("dpkg");
        let (target, temp) = (d.join("pam_x.so"), d.join("pam_x.so.dpkg-new"));
        let (target, temp) = (target.to_str().unwrap(), temp.to_str().unwrap());
        let mut c = changes(Snapshot::default());
        let t0 = Instant::now();
        let dpkg = Some("dpkg");
        c.admit(
            change(8, FileOp::OpenWrite, &[temp], Place::PamModule, dpkg),
            t0,
        );
        fs::write(target, "new module").unwrap();
        c.admit(
            change(8, FileOp::Rename, &[temp, target], Place::PamModule, dpkg),
            t0,
        );
        // A backup name made and removed again.
        let tmp = format!("{target}.dpkg-tmp");
        c.admit(
            change(8, FileOp::Link, &[target, &tmp], Place::PamModule, dpkg),
            t0,
        );
        c.admit(
            change(8, FileOp::Unlink, &[&tmp], Place::PamModule, dpkg),
            t0,
        );
        let found = c.settled(None);
        assert_eq!(
            found.len(),
            1,
            "{:?}",
            found.iter().map(|f| &f.file).collect::<Vec<_>>()
        );
        let f = &found[0];
        let file = f.file.as_ref().unwrap();
        assert_eq!((file.path.as_str(), file.package_manager), (target, dpkg));
        assert!(file.hash.is_some());
        assert_eq!(f.ceiling, Severity::Info);
        // Verified once the package manager is done (no package lists this file).
        c.package_managers_done(t0);
        let later = c.settled(None);
        if provenance::system(1 << 20).is_some() {
            assert_eq!(later.len(), 1);
            assert!(later[0].detections.contains(&Detection::UnverifiedObject));
            assert_eq!(later[0].floor, Severity::High);
        }
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn verification_waits_for_the_package_managers_changes_to_settle() {
        if provenance::system(1 << 20).is_none() {
            eprintln!("no package database on this machine: skipped");
            return;
        }
        let d = dir("late");
        let lib = d.join("libx.so");
        let lib = lib.to_str().unwrap();
        fs::write(lib, "a library no package lists").unwrap();
        let mut c = changes(Snapshot::default());
        let t0 = Instant::now();
        c.admit(
            change(10, FileOp::OpenWrite, &[lib], Place::Library, Some("dpkg")),
            t0,
        );
        c.package_managers_done(t0);
        // The copy, a name that did not exist, settles after the package manager is done.
        assert!(c.settled(Some(t0 + SETTLE)).is_empty());
        let found = c.settled(Some(t0 + NEW_NAME_SETTLE));
        assert_eq!(found.len(), 2, "the change, then its verification");
        assert_eq!(found[0].ceiling, Severity::Info);
        assert!(found[1].detections.contains(&Detection::UnverifiedObject));
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_name_created_and_removed_by_another_writer_is_low() {
        let d = dir("gone");
        let p = d.join("4913");
        let p = p.to_str().unwrap();
        let mut c = changes(Snapshot::default());
        let t0 = Instant::now();
        c.admit(
            change(9, FileOp::OpenWrite, &[p], Place::PamConfig, None),
            t0,
        );
        c.admit(change(9, FileOp::Unlink, &[p], Place::PamConfig, None), t0);
        let found = c.settled(None);
        assert_eq!(found.len(), 2);
        assert!(found.iter().all(|f| f.ceiling == Severity::Low));
        let _ = fs::remove_dir_all(&d);
    }
}
