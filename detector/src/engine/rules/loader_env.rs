//! Rule: a loader variable (LD_PRELOAD, LD_AUDIT) in a new image's environment makes ld.so load
//! the libraries it names into that process. One alert per library.
use detector_common::LoaderVar;

use super::{Context, Finding, Observation, Rule};
use crate::{
    capture::decode::LoaderEnv,
    engine::library::Library,
    engine::loader_vars::{split_list, split_truncated},
    output::alert::{Detection, Preload, PreloadSource, Process},
};

pub struct LoaderVariables;

impl Rule for LoaderVariables {
    fn evaluate(&mut self, cx: &Context, observation: &Observation) -> Vec<Finding> {
        match observation {
            Observation::LoaderEnv(env) => evaluate(cx.process, env),
            _ => Vec::new(),
        }
    }
}

fn evaluate(process: &Process, env: &LoaderEnv) -> Vec<Finding> {
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
    libs.iter()
        .map(|path| {
            let mut f = Finding::new(env.hdr.ktime_ns, process.clone(), detection);
            f.library = Some(Library::inspect(path));
            f.preload = Some(Preload {
                source: PreloadSource::Env,
                variable: env.var.name(),
                value: value.clone(),
                occurrences: env.occurrences,
                truncated: env.truncated,
                inherited_from: None,
                list: None,
            });
            f
        })
        .collect()
}
