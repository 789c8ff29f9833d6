//! Rule (sweeps): a PAM configuration line names a module by a path outside the system module
//! directories — PAM will load it into su, sudo, sshd, login.
use std::path::PathBuf;

use super::{Context, Finding, Observation, Rule};
use crate::{engine::library::Library, output::alert::Detection};

/// Directories PAM loads relative module names from, and where distributions install modules.
const PAM_DIRS: &[&str] = &[
    "/lib/security/",
    "/lib64/security/",
    "/usr/lib/security/",
    "/usr/lib64/security/",
    "/lib/x86_64-linux-gnu/security/",
    "/usr/lib/x86_64-linux-gnu/security/",
    "/lib/aarch64-linux-gnu/security/",
    "/usr/lib/aarch64-linux-gnu/security/",
];

pub struct UnsafePamModule;

impl Rule for UnsafePamModule {
    fn evaluate(&mut self, _cx: &Context, observation: &Observation) -> Vec<Finding> {
        let Observation::Configuration(etc) = observation else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(etc.join("pam.d")) else {
            return out;
        };
        let mut pam: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        pam.sort();
        for conf in pam {
            let Ok(text) = crate::engine::config_text(&conf) else {
                continue;
            };
            for (n, line) in text.lines().enumerate() {
                let Some(module) = pam_module(line) else {
                    continue;
                };
                if module.starts_with('/') && !PAM_DIRS.iter().any(|d| module.starts_with(d)) {
                    let mut f = Finding::config_line(Detection::UnsafePamModule, &conf, n, line);
                    f.library = Some(Library::inspect(module));
                    out.push(f);
                }
            }
        }
        out
    }
}

/// The module a PAM configuration line names: `[-]type control module [args]`, where control
/// may be a bracketed `[value=action ...]` list.
pub fn pam_module(line: &str) -> Option<&str> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') || line.starts_with('@') {
        return None;
    }
    let rest = line.split_once(char::is_whitespace)?.1.trim_start();
    let rest = if rest.starts_with('[') {
        rest.split_once(']')?.1
    } else {
        rest.split_once(char::is_whitespace)?.1
    };
    rest.split_whitespace().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the sweep's reading of /etc/pam.d: a byte that is not UTF-8 in a file once made
    /// the whole file unreadable as text, and a module outside the system directories unseen.
    #[test]
    fn a_pam_file_with_a_byte_that_is_not_utf8_is_still_read() {
        use crate::output::alert::Process;
        let etc = std::env::temp_dir().join(format!("detector-pam-{}", std::process::id()));
        std::fs::create_dir_all(etc.join("pam.d")).unwrap();
        std::fs::write(
            etc.join("pam.d/su"),
            b"# caf\xe9\nauth sufficient /tmp/evil.so\n",
        )
        .unwrap();
        let process = Process::default();
        let cx = Context {
            ktime_ns: 0,
            ..Context::for_test(&process)
        };
        let found = UnsafePamModule.evaluate(&cx, &Observation::Configuration(&etc));
        let _ = std::fs::remove_dir_all(&etc);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].library.as_ref().unwrap().path, "/tmp/evil.so");
    }

    #[test]
    fn pam_lines() {
        assert_eq!(
            pam_module("auth required pam_unix.so nullok"),
            Some("pam_unix.so")
        );
        assert_eq!(
            pam_module("auth [success=1 default=ignore] /tmp/evil.so x"),
            Some("/tmp/evil.so")
        );
        assert_eq!(
            pam_module("-session optional pam_systemd.so"),
            Some("pam_systemd.so")
        );
        assert_eq!(pam_module("@include common-auth"), None);
        assert_eq!(pam_module("# auth optional /tmp/x.so"), None);
        assert_eq!(pam_module("auth"), None);
    }
}
