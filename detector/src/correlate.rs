//! Correlation: joins each loader-variable event to the exec it belongs to and runs the rules.
use std::collections::{HashMap, VecDeque};

use crate::{
    alert::{Alert, Clock},
    event::{Event, Exec},
    rules,
};

/// Execs that announced loader variables, waiting for them; bounded.
const PENDING_MAX: usize = 4096;

pub struct Correlator {
    clock: Clock,
    pending: HashMap<u32, Exec>,
    order: VecDeque<u32>,
}

impl Correlator {
    pub fn new(clock: Clock) -> Self {
        Correlator {
            clock,
            pending: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn handle(&mut self, event: Event) -> Vec<Alert> {
        match event {
            Event::Exec(exec) => {
                let pid = exec.hdr.pid;
                if exec.loader_vars == 0 {
                    self.pending.remove(&pid);
                    return Vec::new();
                }
                if self.pending.insert(pid, exec).is_none() {
                    self.order.push_back(pid);
                }
                while self.pending.len() > PENDING_MAX {
                    match self.order.pop_front() {
                        Some(old) => {
                            self.pending.remove(&old);
                        }
                        None => break,
                    }
                }
                self.order.retain(|p| self.pending.contains_key(p));
                Vec::new()
            }
            Event::Mmap(m) => {
                log::debug!("mmap {m:?}");
                Vec::new()
            }
            Event::LoaderEnv(env) => {
                let exec = self.pending.get(&env.hdr.pid);
                rules::loader_env::evaluate(&self.clock, exec, &env)
            }
        }
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
        let mut c = Correlator::new(Clock::fixed(Duration::ZERO));
        events
            .into_iter()
            .flat_map(|b| c.handle(decode(&b).unwrap()))
            .collect()
    }

    #[test]
    fn preload_into_cat_names_process_and_library() {
        let alerts = run(vec![
            bytes_of(&exec_event(
                10,
                "cat",
                "/usr/bin/cat",
                &["cat", "/etc/hostname"],
            )),
            bytes_of(&loader_event(
                10,
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
            bytes_of(&exec_event(11, "ssh", "/usr/bin/ssh", &["ssh", "-V"])),
            bytes_of(&loader_event(
                11,
                "ssh",
                LoaderVar::LdPreload,
                "/tmp/a.so /tmp/b.so",
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
            bytes_of(&exec_event(12, "ls", "/usr/bin/ls", &["ls"])),
            bytes_of(&loader_event(12, "ls", LoaderVar::LdAudit, "/tmp/audit.so")),
            bytes_of(&loader_event(12, "ls", LoaderVar::LdLibraryPath, "/tmp")),
        ]);
        assert_eq!(alerts.len(), 1);
        assert!(alerts[0].detections.contains(&Detection::AuditLibrary));
    }

    #[test]
    fn loader_event_without_exec_still_alerts() {
        let alerts = run(vec![bytes_of(&loader_event(
            13,
            "x",
            LoaderVar::LdPreload,
            "/tmp/x.so",
        ))]);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].process.exe, "");
    }
}
