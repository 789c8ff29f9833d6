//! Rule: a loader variable (LD_PRELOAD, LD_AUDIT) in a new image's environment makes ld.so load
//! the libraries it names into that process. One alert per library.
use std::collections::BTreeSet;

use detector_common::LoaderVar;

use crate::{
    alert::{Alert, Clock, Detection, Preload, PreloadSource},
    event::{Exec, LoaderEnv},
    library::Library,
    loader_env::{split_list, split_truncated},
};

pub fn evaluate(clock: &Clock, exec: Option<&Exec>, env: &LoaderEnv) -> Vec<Alert> {
    let detection = match env.var {
        LoaderVar::LdPreload => Detection::PreloadEnv,
        LoaderVar::LdAudit => Detection::AuditLibrary,
        LoaderVar::LdLibraryPath => return Vec::new(),
    };
    let (libs, value) = if env.truncated {
        (
            split_truncated(env.var, &env.head, &env.tail),
            format!("{}…{}", env.head, env.tail),
        )
    } else {
        (split_list(env.var, &env.head), env.head.clone())
    };
    let process = super::process_of(exec, &env.hdr);
    libs.iter()
        .map(|path| {
            super::build_alert(
                clock,
                env.hdr.ktime_ns,
                process.clone(),
                Some(Library::inspect(path)),
                Some(Preload {
                    source: PreloadSource::Env,
                    variable: env.var.name(),
                    value: value.clone(),
                    occurrences: env.occurrences,
                    truncated: env.truncated,
                }),
                BTreeSet::from([detection]),
            )
        })
        .collect()
}
