//! Correlation, the reader's work: keeps the process table in event order and runs each event
//! through the rules. What they find goes on to enrichment and policy; nothing here reads a
//! library file.
use std::{
    collections::{BTreeSet, HashMap},
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use detector_common::{LoaderVar, PTRACE_ATTACH, PTRACE_SEIZE};

use crate::{
    capture::decode::{Event, TamperOp},
    engine::credential::Catalogue,
    engine::library::Library,
    engine::process::ProcessTable,
    engine::rules::{self, config_change::Watched, Context, Finding, Observation, Rule},
    engine::sweep,
    output::alert::{Detection, Operation, Process, Severity},
};

pub struct Correlator {
    procs: ProcessTable,
    watched: Watched,
    catalogue: Catalogue,
    rules: Vec<Box<dyn Rule>>,
    /// What each live process was found doing, for a credential memory read by it.
    detected: HashMap<u32, BTreeSet<Detection>>,
    /// Whether a package manager runs, for the stages after the reader.
    package_manager_running: Arc<AtomicBool>,
    /// Whether an image builder runs, for the stages after the reader.
    image_builder_running: Arc<AtomicBool>,
}

impl Correlator {
    pub fn new(watched: Watched, catalogue: Catalogue) -> Self {
        Correlator {
            procs: ProcessTable::default(),
            watched,
            catalogue,
            rules: rules::registry(),
            detected: HashMap::new(),
            package_manager_running: Arc::new(AtomicBool::new(false)),
            image_builder_running: Arc::new(AtomicBool::new(false)),
        }
    }

    /// True while a package manager runs, as the process table knows it; kept up to date as
    /// events come, for the policy stage.
    pub fn package_manager_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.package_manager_running)
    }

    /// True while an image builder runs, as the process table knows it.
    pub fn image_builder_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.image_builder_running)
    }

    fn note_package_managers(&self) {
        self.package_manager_running
            .store(self.procs.package_manager_running(), Ordering::Relaxed);
        self.image_builder_running
            .store(self.procs.image_builder_running(), Ordering::Relaxed);
    }

    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    pub fn set_catalogue(&mut self, catalogue: Catalogue) {
        self.catalogue = catalogue;
    }

    /// Sweeps /proc and the loader and PAM configuration under `etc`: learns the processes
    /// already running (what they run, an LD_PRELOAD in their environment) and returns the
    /// findings for what they already have loaded and what the configuration makes them load,
    /// with the number of processes seen and of those that could not be read.
    pub fn sweep(
        &mut self,
        only: sweep::Only,
        etc: &Path,
    ) -> (Vec<Finding>, usize, sweep::Skipped) {
        let sweep = sweep::processes(only);
        let mut found = Vec::new();
        for seen in &sweep.processes {
            self.procs.seed(seen);
            for env in &seen.loader_vars {
                found.extend(self.evaluate(&seen.process, 0, &Observation::LoaderEnv(env)));
            }
            for lib in &seen.mapped {
                found.extend(self.evaluate(&seen.process, 0, &Observation::Mapped(lib)));
            }
        }
        self.note_package_managers();
        found.extend(self.evaluate(&Process::default(), 0, &Observation::Configuration(etc)));
        let findings = self.first_alerts(found);
        (findings, sweep.processes.len(), sweep.skipped)
    }

    pub fn handle(&mut self, mut event: Event) -> Vec<Finding> {
        if let Event::FileChange(c) = &mut event {
            // A change fanotify reported after its writer exited: the table knows who it was.
            self.procs.fill(&mut c.hdr);
        }
        let findings: Vec<Finding> = match &event {
            Event::Exec(exec) => {
                self.procs.on_exec(exec);
                self.note_package_managers();
                // Most execs concern no rule: the process is only copied out for one that does.
                let mut wanted = false;
                for rule in &mut self.rules {
                    wanted |= rule.wants_exec(exec);
                }
                if !wanted {
                    return Vec::new();
                }
                let p = self.procs.process(&exec.hdr);
                self.evaluate(&p, exec.hdr.ktime_ns, &Observation::Exec(exec))
            }
            Event::LoaderEnv(env) => {
                let p = self.procs.process(&env.hdr);
                let mut found = self.evaluate(&p, env.hdr.ktime_ns, &Observation::LoaderEnv(env));
                if env.var == LoaderVar::LdPreload && !env.truncated {
                    let from = self.procs.preload_inherited(env.hdr.pid, &env.head);
                    for f in &mut found {
                        if let Some(pre) = &mut f.preload {
                            pre.inherited_from = from.clone();
                        }
                    }
                }
                found
            }
            Event::Mmap(m) => {
                let p = self.procs.process(&m.hdr);
                let observation = match m.prevented {
                    Some(_) => Observation::Prevented(m),
                    None => Observation::Mmap(m),
                };
                self.evaluate(&p, m.hdr.ktime_ns, &observation)
            }
            Event::FileChange(c) => {
                let p = self.procs.process(&c.hdr);
                self.evaluate(&p, c.hdr.ktime_ns, &Observation::FileChange(c))
            }
            Event::MemTamper(t) => {
                let p = self.procs.process(&t.hdr);
                let target = self.procs.lookup(t.target_pid);
                self.evaluate(
                    &p,
                    t.hdr.ktime_ns,
                    &Observation::MemTamper(t, target.as_ref()),
                )
            }
            Event::PreloadList(l) => {
                let p = self.procs.process(&l.hdr);
                self.evaluate(&p, l.hdr.ktime_ns, &Observation::PreloadList(l))
            }
            Event::MemRead(r) => {
                let p = self.procs.process(&r.hdr);
                let target = self.procs.lookup(r.target_pid);
                let mut found = self.evaluate(
                    &p,
                    r.hdr.ktime_ns,
                    &Observation::MemRead(r, target.as_ref()),
                );
                self.combine(&mut found);
                found
            }
            Event::Signal(sig) => {
                let p = self.procs.process(&sig.hdr);
                self.evaluate(&p, sig.hdr.ktime_ns, &Observation::Signal(sig))
            }
            Event::Exit(x) => {
                self.detected.remove(&x.hdr.pid);
                let mut found = Vec::new();
                for rule in &mut self.rules {
                    found.extend(rule.exited(x.hdr.pid));
                }
                self.procs.on_exit(x);
                self.note_package_managers();
                found
            }
        };
        self.note_detections(&findings);
        self.first_alerts(findings)
    }

    /// Records what each process was found doing. A finding still to be verified may yet be
    /// dropped, a ptrace attach is how any debugger starts, and a finding capped at medium
    /// is a debugger at work on its own user's process (or the package manager): none counts.
    fn note_detections(&mut self, findings: &[Finding]) {
        for f in findings {
            if f.process.is_none() || f.verify || f.ceiling <= Severity::Medium {
                continue;
            }
            let attach = f.target.as_ref().is_some_and(|t| {
                t.operation == Operation::Write(TamperOp::Ptrace)
                    && matches!(t.request, Some(PTRACE_ATTACH | PTRACE_SEIZE))
            });
            if attach {
                continue;
            }
            self.detected
                .entry(f.process.pid)
                .or_default()
                .extend(f.detections.iter().copied());
        }
    }

    /// A credential memory read by a process already found doing something else: the
    /// finding carries those detections too (its risk score counts them) and is critical.
    fn combine(&self, found: &mut [Finding]) {
        for f in found {
            if !f.detections.contains(&Detection::CredentialMemoryRead) {
                continue;
            }
            let Some(before) = self.detected.get(&f.process.pid) else {
                continue;
            };
            let others: Vec<Detection> = before
                .iter()
                .copied()
                .filter(|d| *d != Detection::CredentialMemoryRead)
                .collect();
            if !others.is_empty() {
                f.detections.extend(others);
                f.floor = Severity::Critical;
                f.ceiling = Severity::Critical;
            }
        }
    }

    /// Whether a package manager is running now.
    pub fn package_manager_running(&self) -> bool {
        self.procs.package_manager_running()
    }

    /// Whether an image builder is running now.
    pub fn image_builder_running(&self) -> bool {
        self.procs.image_builder_running()
    }

    /// Every rule's findings for one observation, in registry order.
    fn evaluate(
        &mut self,
        process: &Process,
        ktime_ns: u64,
        observation: &Observation,
    ) -> Vec<Finding> {
        // Only what a mapping or a change can be about is attributed to an image builder.
        let image_builder = match observation {
            Observation::Mmap(_) | Observation::FileChange(_) => {
                self.procs.image_builder(process.pid)
            }
            _ => None,
        };
        let cx = Context {
            process,
            ktime_ns,
            catalogue: &self.catalogue,
            watched: &self.watched,
            package_manager: self.procs.package_manager(process.pid),
            image_builder,
        };
        let mut found = Vec::new();
        for rule in &mut self.rules {
            found.extend(rule.evaluate(&cx, observation));
        }
        if image_builder.is_some() {
            for f in &mut found {
                self.in_builders_tree(f, observation, image_builder);
            }
        }
        found
    }

    /// A file to verify that an image builder's descendant mapped in the tree the builder
    /// builds (under another root than the host's) is verified again once the builder is done
    /// (`Finding::image_builder`). A chrooted process gone before its root could be read is
    /// seen as its parent sees (the host's root, for `chroot DIR command`): a mapping of the
    /// kernel's path under a tree the builder's processes were seen chrooted into, or else
    /// under a directory shaped as a root filesystem (`ProcessTable::builder_tree_of`), is
    /// looked at under that tree.
    fn in_builders_tree(
        &mut self,
        f: &mut Finding,
        observation: &Observation,
        image_builder: Option<&'static str>,
    ) {
        if !f.verify {
            return;
        }
        let Some(lib) = &f.library else {
            return;
        };
        if lib.root.is_some() {
            // Seen through its own root, or its parent's: the tree, for the builder's commands
            // chrooted into it later.
            self.procs.note_builder_root(f.process.pid);
            self.procs.note_builder_root(f.process.ppid);
        } else {
            let Observation::Mmap(m) = observation else {
                return;
            };
            if lib.path != m.file.path {
                return;
            }
            let Some(root) = self.procs.builder_tree_of(&m.file.path) else {
                return;
            };
            let under = Library::from_kernel_under(&m.file, &m.hdr, &root);
            if under.root.is_none() {
                return;
            }
            f.library = Some(under);
        }
        f.image_builder = image_builder;
    }

    /// One alert per process and library: the first finding of a library in a process is kept
    /// (and every finding of prevention).
    fn first_alerts(&mut self, findings: Vec<Finding>) -> Vec<Finding> {
        let mut kept: Vec<Finding> = Vec::with_capacity(findings.len());
        for f in findings {
            let fresh = match (&f.library, f.process.is_none()) {
                // What prevention did is reported each time.
                _ if f.prevention.is_some() => true,
                (Some(lib), false) => self.procs.first_alert(f.process.pid, &lib.path),
                _ => true,
            };
            if fresh {
                kept.push(f);
            }
        }
        kept
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use detector_common::MMAP_AFTER_PRELOAD_LIST;

    use super::*;
    use crate::{
        capture::decode::{decode, tests::*},
        engine::{enrich::Enricher, policy::Policy},
        output::alert::{Alert, Clock, Detection, Severity},
    };

    fn run(events: Vec<Vec<u8>>) -> Vec<Alert> {
        run_with(Policy::default(), events)
    }

    /// Events → findings (the reader) → enrichment inline → policy: the daemon's stages in one
    /// thread.
    fn run_with(policy: Policy, events: Vec<Vec<u8>>) -> Vec<Alert> {
        let clock = Clock::fixed(Duration::ZERO);
        let mut c = Correlator::new(Watched::default(), policy.catalogue.clone());
        let mut enricher = Enricher::new(u64::MAX);
        events
            .into_iter()
            .flat_map(|b| c.handle(decode(&b).unwrap()))
            .filter_map(|mut f| {
                enricher.enrich(&mut f);
                policy.judge(f, &clock)
            })
            .collect()
    }

    #[test]
    fn preload_into_cat_names_process_and_library() {
        let alerts = run(vec![
            bytes_of(&exec_event(
                4_100_010,
                "cat",
                "/usr/bin/cat",
                &["cat", "/etc/hostname"],
            )),
            bytes_of(&loader_event(
                4_100_010,
                "cat",
                LoaderVar::LdPreload,
                "/tmp/x/hook.so",
            )),
        ]);
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        assert_eq!(a.process.comm, "cat");
        assert_eq!(a.process.exe, "/usr/bin/cat");
        assert_eq!(a.process.cmdline, "cat /etc/hostname");
        assert_eq!(a.library.as_ref().unwrap().path, "/tmp/x/hook.so");
        assert!(a.detections.contains(&Detection::PreloadEnv));
        assert!(a.detections.contains(&Detection::UnsafeLibrary));
        assert_eq!(a.risk_score, a.detections.len() as u32);
        assert_eq!(a.severity, Severity::Medium);
        assert_eq!(a.mitre, ["T1574.006"]);
    }

    #[test]
    fn a_prevented_mapping_is_an_alert_of_its_own_that_no_allowlist_drops() {
        use detector_common::{MMAP_PREVENT_AUDIT, MMAP_PREVENT_DIR, MMAP_PREVENT_KILLED};
        let pid = 4_100_070;
        let mut policy = Policy::default();
        policy.allow_processes.push("/usr/bin/ssh".into());
        let events = |flags: u32| {
            vec![
                bytes_of(&exec_event(pid, "ssh", "/usr/bin/ssh", &["ssh", "-V"])),
                bytes_of(&loader_event(pid, "ssh", LoaderVar::LdPreload, "/tmp/p.so")),
                bytes_of(&mmap_event(pid, "ssh", "/tmp/p.so", flags)),
            ]
        };
        let alerts = run_with(
            policy.clone(),
            events(MMAP_PREVENT_KILLED | MMAP_PREVENT_DIR),
        );
        assert_eq!(
            alerts.len(),
            1,
            "the preload alert is allowlisted: {alerts:#?}"
        );
        let a = &alerts[0];
        assert!(a.detections.contains(&Detection::Prevented));
        let p = a.prevention.as_ref().unwrap();
        assert_eq!((p.action, p.outcome), ("kill", "prevented"));
        assert_eq!(p.reasons, ["directory_writable_by_non_root"]);
        assert!(p.what.contains("/tmp/p.so") && p.what.contains("ssh"));
        let json = serde_json::to_value(a).unwrap();
        assert_eq!(json["event"]["type"], serde_json::json!(["denied"]));
        assert_eq!(json["event"]["action"], "kill");
        let alerts = run_with(policy, events(MMAP_PREVENT_AUDIT | MMAP_PREVENT_DIR));
        let p = alerts[0].prevention.as_ref().unwrap();
        assert_eq!((p.action, p.outcome), ("would_kill", "would_prevent"));
        let json = serde_json::to_value(&alerts[0]).unwrap();
        assert_eq!(json["event"]["type"], serde_json::json!(["info"]));
        // A mapping the kernel did not judge is no prevention.
        assert!(run(events(MMAP_PREVENT_DIR))
            .iter()
            .all(|a| a.prevention.is_none()));
    }

    #[test]
    fn one_alert_per_library_and_credential_processes_are_critical() {
        let alerts = run(vec![
            bytes_of(&exec_event(
                4_100_011,
                "ssh",
                "/usr/bin/ssh",
                &["ssh", "-V"],
            )),
            bytes_of(&loader_event(
                4_100_011,
                "ssh",
                LoaderVar::LdPreload,
                "/tmp/a.so /tmp/b.so",
            )),
            bytes_of(&loader_event(
                4_100_011,
                "ssh",
                LoaderVar::LdPreload,
                "/tmp/a.so",
            )),
        ]);
        assert_eq!(alerts.len(), 2);
        assert!(alerts.iter().all(|a| a.severity == Severity::Critical));
        assert!(alerts.iter().all(|a| a.mitre.contains(&"T1056.004")));
        assert_eq!(alerts[0].rule, "credential_api_hooking");
    }

    #[test]
    fn audit_and_library_path() {
        let alerts = run(vec![
            bytes_of(&exec_event(4_100_012, "ls", "/usr/bin/ls", &["ls"])),
            bytes_of(&loader_event(
                4_100_012,
                "ls",
                LoaderVar::LdAudit,
                "/tmp/audit.so",
            )),
            bytes_of(&loader_event(
                4_100_012,
                "ls",
                LoaderVar::LdLibraryPath,
                "/tmp",
            )),
        ]);
        assert_eq!(alerts.len(), 1);
        assert!(alerts[0].detections.contains(&Detection::AuditLibrary));
    }

    #[test]
    fn loader_run_directly() {
        let alerts = run(vec![bytes_of(&exec_event(
            4_100_014,
            "ld-linux-x86-64",
            "/lib64/ld-linux-x86-64.so.2",
            &[
                "/lib64/ld-linux-x86-64.so.2",
                "--preload",
                "/tmp/h.so",
                "/usr/bin/su",
            ],
        ))]);
        assert_eq!(alerts.len(), 1);
        assert!(alerts[0].detections.contains(&Detection::PreloadArgv));
        assert!(alerts[0].detections.contains(&Detection::CredentialProcess));
    }

    fn preload_in_sh_then_ssh() -> Vec<Vec<u8>> {
        vec![
            bytes_of(&exec_event(4_100_020, "sh", "/bin/sh", &["sh"])),
            bytes_of(&loader_event(
                4_100_020,
                "sh",
                LoaderVar::LdPreload,
                "/tmp/h.so",
            )),
            // sh forks (not captured) and the child execs ssh: its events name sh as parent.
            bytes_of(&child_of(
                4_100_020,
                exec_event(4_100_021, "ssh", "/usr/bin/ssh", &["ssh", "host"]),
            )),
            bytes_of(&loader_event(
                4_100_021,
                "ssh",
                LoaderVar::LdPreload,
                "/tmp/h.so",
            )),
        ]
    }

    #[test]
    fn inherited_preload_names_the_ancestor() {
        let alerts = run(preload_in_sh_then_ssh());
        assert_eq!(alerts.len(), 2);
        assert!(alerts[0].preload.as_ref().unwrap().inherited_from.is_none());
        let ssh = &alerts[1];
        assert_eq!(ssh.process.comm, "ssh");
        let from = ssh
            .preload
            .as_ref()
            .unwrap()
            .inherited_from
            .as_ref()
            .unwrap();
        assert_eq!((from.pid, from.exe.as_str()), (4_100_020, "/bin/sh"));
        assert_eq!(ssh.severity, Severity::Critical);
    }

    #[test]
    fn a_changed_preload_value_starts_a_new_origin() {
        let mut events = preload_in_sh_then_ssh();
        events.pop();
        events.push(bytes_of(&loader_event(
            4_100_021,
            "ssh",
            LoaderVar::LdPreload,
            "/tmp/other.so",
        )));
        let alerts = run(events);
        assert!(alerts[1].preload.as_ref().unwrap().inherited_from.is_none());
    }

    #[test]
    fn allowlists_and_min_severity() {
        let by_library = Policy {
            allow_libraries: vec![("/tmp/h.so".into(), None)],
            ..Policy::default()
        };
        assert!(run_with(by_library, preload_in_sh_then_ssh()).is_empty());
        let wrong_hash = Policy {
            allow_libraries: vec![("/tmp/h.so".into(), Some("00".repeat(32)))],
            ..Policy::default()
        };
        assert_eq!(run_with(wrong_hash, preload_in_sh_then_ssh()).len(), 2);
        let by_process = Policy {
            allow_processes: vec!["/usr/bin/ssh".into()],
            ..Policy::default()
        };
        let left = run_with(by_process, preload_in_sh_then_ssh());
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].process.comm, "sh");
        let high_only = Policy {
            min_severity: Severity::High,
            ..Policy::default()
        };
        let left = run_with(high_only, preload_in_sh_then_ssh());
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].process.comm, "ssh");
    }

    fn exit_event(pid: u32) -> Vec<u8> {
        bytes_of(&detector_common::ExitEvent {
            hdr: hdr(detector_common::EventKind::Exit, pid, ""),
            exit_code: 0,
            _pad: 0,
        })
    }

    const LIB: &str = "/usr/local/lib/libdetector-unit-x.so";

    #[test]
    fn a_mapping_made_while_the_loader_held_the_list_is_blamed_on_the_list_it_read() {
        let pid = 4_100_040;
        let alerts = run(vec![
            bytes_of(&exec_event(pid, "ssh", "/usr/bin/ssh", &["ssh", "-V"])),
            bytes_of(&mmap_event(pid, "ssh", LIB, MMAP_AFTER_PRELOAD_LIST)),
            bytes_of(&preload_list_event(
                pid,
                "ssh",
                format!("{LIB}\0 \0/tmp/never-mapped.so\0").as_bytes(),
            )),
            exit_event(pid),
        ]);
        assert_eq!(alerts.len(), 1, "{alerts:#?}");
        let a = &alerts[0];
        assert_eq!((a.process.pid, a.process.comm.as_str()), (pid, "ssh"));
        assert_eq!(a.library.as_ref().unwrap().path, LIB);
        assert!(a.detections.contains(&Detection::PreloadFile));
        assert!(a.detections.contains(&Detection::CredentialProcess));
        assert!(a.severity >= Severity::High);
        let p = a.preload.as_ref().unwrap();
        assert_eq!(p.variable, "/etc/ld.so.preload");
        assert_eq!(p.value, format!("{LIB} /tmp/never-mapped.so"));
        let list = p.list.as_ref().unwrap();
        assert_eq!((list.inode, list.size, list.captured), (4242, 60, true));
    }

    #[test]
    fn a_mapping_held_for_a_list_that_never_came_is_reported_at_exit() {
        let pid = 4_100_041;
        let alerts = run(vec![
            bytes_of(&exec_event(pid, "ssh", "/usr/bin/ssh", &["ssh", "-V"])),
            bytes_of(&mmap_event(pid, "ssh", LIB, MMAP_AFTER_PRELOAD_LIST)),
            exit_event(pid),
        ]);
        assert_eq!(alerts.len(), 1, "{alerts:#?}");
        assert!(alerts[0].detections.contains(&Detection::PreloadFile));
        assert!(alerts[0].preload.as_ref().unwrap().list.is_none());
    }

    #[test]
    fn without_a_mapping_made_under_the_list_there_is_no_preload_file_finding() {
        let pid = 4_100_042;
        // A root-owned library mapped outside the loader's read of a list, and a list read
        // whose objects were not mapped: neither is a preload through the file.
        let alerts = run(vec![
            bytes_of(&exec_event(pid, "ssh", "/usr/bin/ssh", &["ssh", "-V"])),
            bytes_of(&mmap_event(pid, "ssh", LIB, 0)),
            bytes_of(&preload_list_event(pid, "ssh", b"/tmp/missing.so\0")),
            exit_event(pid),
        ]);
        assert!(alerts.is_empty(), "{alerts:#?}");
    }

    #[test]
    fn a_change_by_a_package_managers_descendant_is_information_naming_it() {
        let mut c = Correlator::new(Watched::default(), Catalogue::default());
        let mut found = Vec::new();
        for b in [
            bytes_of(&exec_event(
                4_100_040,
                "apt-get",
                "/usr/bin/apt-get",
                &["apt-get"],
            )),
            bytes_of(&child_of(
                4_100_040,
                exec_event(4_100_041, "dpkg", "/usr/bin/dpkg", &["dpkg"]),
            )),
            bytes_of(&child_of(
                4_100_041,
                exec_event(4_100_042, "sh", "/bin/sh", &["sh", "postinst"]),
            )),
            bytes_of(&rename_event(
                4_100_042,
                "sh",
                "/etc/pam.d/common-auth.pam-new",
                "/etc/pam.d/common-auth",
            )),
            bytes_of(&exec_event(
                4_100_050,
                "sed",
                "/usr/bin/sed",
                &["sed", "-i"],
            )),
            bytes_of(&rename_event(
                4_100_050,
                "sed",
                "/etc/pam.d/sedAbc123",
                "/etc/pam.d/su-l",
            )),
        ] {
            found.extend(c.handle(decode(&b).unwrap()));
        }
        assert!(c.package_manager_running());
        // Each rename is about both its ends (both are in /etc/pam.d): the destinations here.
        assert_eq!(found.len(), 4);
        let (by_dpkg, by_sed) = (&found[1], &found[3]);
        let file = by_dpkg.file.as_ref().unwrap();
        assert_eq!(
            (file.path.as_str(), file.package_manager),
            ("/etc/pam.d/common-auth", Some("dpkg"))
        );
        assert_eq!(by_dpkg.ceiling, Severity::Info);
        let file = by_sed.file.as_ref().unwrap();
        assert_eq!(
            (file.path.as_str(), file.package_manager),
            ("/etc/pam.d/su-l", None)
        );
        assert_eq!(by_sed.floor, Severity::High);
    }

    #[test]
    fn catalogue_additions_make_a_credential_process() {
        let events = vec![
            bytes_of(&exec_event(4_100_030, "vault", "/opt/vault", &["vault"])),
            bytes_of(&loader_event(
                4_100_030,
                "vault",
                LoaderVar::LdPreload,
                "/tmp/v.so",
            )),
        ];
        assert_eq!(run(events.clone())[0].severity, Severity::Medium);
        let policy = Policy {
            catalogue: Catalogue::new(&["vault".into()]),
            ..Policy::default()
        };
        let a = &run_with(policy, events)[0];
        assert!(a.detections.contains(&Detection::CredentialProcess));
        assert_eq!(a.severity, Severity::Critical);
    }

    #[test]
    fn credential_memory_reads_are_high_and_critical_by_a_reader_found_doing_more() {
        let agent = bytes_of(&exec_event(
            4_100_040,
            "ssh-agent",
            "/usr/bin/ssh-agent",
            &["ssh-agent"],
        ));
        let read = |reader: u32| {
            bytes_of(&mem_read_event(
                reader,
                "reader",
                detector_common::READ_PROCESS_VM_READV,
                4_100_040,
            ))
        };
        let reader = |pid: u32| bytes_of(&exec_event(pid, "reader", "/tmp/reader", &["reader"]));
        let alerts = run(vec![agent.clone(), reader(4_100_041), read(4_100_041)]);
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        assert_eq!(a.severity, Severity::High);
        assert_eq!(a.rule, "credential_dumping");
        assert_eq!(a.target.as_ref().unwrap().exe, "/usr/bin/ssh-agent");
        assert_eq!(a.mitre, ["T1056.004", "T1003.007"]);
        // The same reader started with LD_PRELOAD: both patterns, critical.
        let alerts = run(vec![
            agent,
            reader(4_100_042),
            bytes_of(&loader_event(
                4_100_042,
                "reader",
                LoaderVar::LdPreload,
                "/tmp/h.so",
            )),
            read(4_100_042),
        ]);
        let a = alerts
            .iter()
            .find(|a| a.detections.contains(&Detection::CredentialMemoryRead))
            .unwrap();
        assert_eq!(a.severity, Severity::Critical);
        assert!(a.detections.contains(&Detection::PreloadEnv));
        assert_eq!(a.risk_score as usize, a.detections.len());
        assert!(a.risk_score >= 3);
    }
}
