//! Rule: the dynamic loader's configuration or binaries, or the PAM configuration, changed
//! (opened for write, renamed onto or away, unlinked, truncated).
use super::{Context, Finding, Observation, Rule};
use crate::{
    capture::decode,
    output::alert::{ChangedFile, Detection, Process, Severity},
};

/// The loader binaries, as real paths (symlinks resolved at start).
pub struct Watched {
    pub loaders: Vec<String>,
}

impl Watched {
    pub fn discover() -> Self {
        let mut loaders = Vec::new();
        for dir in [
            "/lib64",
            "/lib",
            "/usr/lib64",
            "/usr/lib",
            "/lib/x86_64-linux-gnu",
            "/usr/lib/x86_64-linux-gnu",
            "/lib/aarch64-linux-gnu",
            "/usr/lib/aarch64-linux-gnu",
        ] {
            let Ok(rd) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("ld-linux") {
                    for p in [
                        e.path(),
                        std::fs::canonicalize(e.path()).unwrap_or_default(),
                    ] {
                        let p = p.display().to_string();
                        if !p.is_empty() && !loaders.contains(&p) {
                            loaders.push(p);
                        }
                    }
                }
            }
        }
        Watched { loaders }
    }

    /// Directories whose entries the kernel reports: the parents of every watched file, and
    /// the watched directories themselves.
    pub fn directories(&self) -> Vec<String> {
        let mut dirs = vec![
            "/etc".to_owned(),
            "/etc/ld.so.conf.d".to_owned(),
            "/etc/pam.d".to_owned(),
        ];
        for l in &self.loaders {
            if let Some((d, _)) = l.rsplit_once('/') {
                if !dirs.iter().any(|x| x == d) {
                    dirs.push(d.to_owned());
                }
            }
        }
        dirs
    }

    /// (detection, severity) for a watched path.
    fn classify(&self, path: &str) -> Option<(Detection, Severity)> {
        if path == "/etc/ld.so.preload" || self.loaders.iter().any(|l| l == path) {
            Some((Detection::LoaderConfigChange, Severity::High))
        } else if path == "/etc/ld.so.conf" || path.starts_with("/etc/ld.so.conf.d/") {
            Some((Detection::LoaderConfigChange, Severity::Medium))
        } else if path.starts_with("/etc/pam.d/") {
            Some((Detection::PamConfigChange, Severity::High))
        } else {
            None
        }
    }
}

pub struct ConfigChange;

impl Rule for ConfigChange {
    fn evaluate(&mut self, cx: &Context, observation: &Observation) -> Vec<Finding> {
        match observation {
            Observation::FileChange(c) => evaluate(cx.watched, cx.process, c).into_iter().collect(),
            _ => Vec::new(),
        }
    }
}

fn evaluate(watched: &Watched, process: &Process, c: &decode::FileChange) -> Option<Finding> {
    let (path, (detection, severity)) = c
        .paths
        .iter()
        .find_map(|p| watched.classify(p).map(|k| (p.clone(), k)))?;
    let mut f = Finding::new(c.hdr.ktime_ns, process.clone(), detection);
    f.floor = severity;
    f.file = Some(ChangedFile {
        path,
        operation: c.op,
        paths: c.paths.clone(),
    });
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_paths() {
        let w = Watched {
            loaders: vec!["/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2".into()],
        };
        assert_eq!(
            w.classify("/etc/ld.so.preload"),
            Some((Detection::LoaderConfigChange, Severity::High))
        );
        assert_eq!(
            w.classify("/etc/ld.so.conf.d/x.conf"),
            Some((Detection::LoaderConfigChange, Severity::Medium))
        );
        assert_eq!(
            w.classify("/etc/pam.d/su"),
            Some((Detection::PamConfigChange, Severity::High))
        );
        assert!(w
            .classify("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
            .is_some());
        assert_eq!(w.classify("/etc/hostname"), None);
        assert!(w
            .directories()
            .contains(&"/usr/lib/x86_64-linux-gnu".to_owned()));
    }
}
