//! Rule (sweeps): /etc/ld.so.conf or a file in /etc/ld.so.conf.d names a directory a non-root
//! user can write: a library dropped there is found by every program that looks for that name.
use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use super::{Context, Finding, Observation, Rule};
use crate::{engine::library::Library, output::alert::Detection};

pub struct UnsafeLoaderPath;

impl Rule for UnsafeLoaderPath {
    fn evaluate(&mut self, _cx: &Context, observation: &Observation) -> Vec<Finding> {
        let Observation::Configuration(etc) = observation else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut confs = vec![etc.join("ld.so.conf")];
        if let Ok(rd) = std::fs::read_dir(etc.join("ld.so.conf.d")) {
            let mut more: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
            more.sort();
            confs.extend(more);
        }
        for conf in confs {
            let Ok(text) = crate::engine::config_text(&conf) else {
                continue;
            };
            for (n, line) in text.lines().enumerate() {
                let dir = line.split('#').next().unwrap_or("").trim();
                if !dir.starts_with('/') {
                    continue; // include lines, comments, hwcap lines
                }
                let reasons = directory_unsafe(Path::new(dir));
                if !reasons.is_empty() {
                    let mut f = Finding::config_line(Detection::UnsafeLoaderPath, &conf, n, line);
                    f.library = Some(Library {
                        path: dir.to_owned(),
                        exists: Path::new(dir).exists(),
                        unsafe_reasons: reasons,
                        ..Library::default()
                    });
                    out.push(f);
                }
            }
        }
        out
    }
}

/// Why a non-root user could put a library in `dir` (empty when they cannot).
fn directory_unsafe(dir: &Path) -> Vec<&'static str> {
    let mut reasons = Vec::new();
    let Ok(meta) = std::fs::metadata(dir) else {
        return reasons; // a missing directory is ld.so's problem, not a way in
    };
    if meta.uid() != 0 {
        reasons.push("owned_by_non_root");
    }
    if meta.mode() & 0o022 != 0 {
        reasons.push("group_or_world_writable");
    }
    reasons
}
