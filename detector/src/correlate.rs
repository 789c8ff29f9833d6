//! Correlation: keeps the process table, runs each event through the rules, and keeps one
//! alert per (process, library).
use crate::{
    alert::{Alert, Clock},
    event::Event,
    process::ProcessTable,
    rules::{self, config_change::Watched, Finding},
};

pub struct Correlator {
    clock: Clock,
    procs: ProcessTable,
    watched: Watched,
}

impl Correlator {
    pub fn new(clock: Clock, watched: Watched) -> Self {
        Correlator {
            clock,
            procs: ProcessTable::default(),
            watched,
        }
    }

    pub fn handle(&mut self, event: Event) -> Vec<Alert> {
        let findings: Vec<Finding> = match &event {
            Event::Exec(exec) => {
                self.procs.on_exec(exec);
                let p = self.procs.process(&exec.hdr);
                rules::loader_argv::evaluate(&p, exec)
            }
            Event::LoaderEnv(env) => {
                let p = self.procs.process(&env.hdr);
                rules::loader_env::evaluate(&p, env)
            }
            Event::Mmap(m) => {
                let p = self.procs.process(&m.hdr);
                rules::unsafe_library::evaluate(&p, m).into_iter().collect()
            }
            Event::FileChange(c) => {
                let p = self.procs.process(&c.hdr);
                rules::config_change::evaluate(&self.watched, &p, c)
                    .into_iter()
                    .collect()
            }
            Event::MemTamper(t) => {
                let p = self.procs.process(&t.hdr);
                let target = self.procs.lookup(t.target_pid);
                rules::memory_tamper::evaluate(&p, target, t)
                    .into_iter()
                    .collect()
            }
            Event::Fork(f) => {
                self.procs.on_fork(f);
                Vec::new()
            }
            Event::Exit(x) => {
                self.procs.on_exit(x);
                Vec::new()
            }
        };
        findings
            .into_iter()
            .filter(|f| match &f.library {
                Some(lib) => self.procs.first_alert(f.process.pid, &lib.path),
                None => true,
            })
            .map(|f| f.finish(&self.clock))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use detector_common::LoaderVar;

    use super::*;
    use crate::{
        alert::{Detection, Severity},
        event::{decode, tests::*},
    };

    fn run(events: Vec<Vec<u8>>) -> Vec<Alert> {
        let mut c = Correlator::new(Clock::fixed(Duration::ZERO), Watched { loaders: vec![] });
        events
            .into_iter()
            .flat_map(|b| c.handle(decode(&b).unwrap()))
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
}
