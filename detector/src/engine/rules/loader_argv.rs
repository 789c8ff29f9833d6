//! Rule: the dynamic loader run directly (`ld.so --preload LIB PROG`, `--audit LIB`): the
//! libraries are on its command line, not in the environment.
use super::{Context, Finding, Observation, Rule};
use crate::{
    capture::decode::Exec,
    engine::credential::Catalogue,
    engine::library::Library,
    engine::loader_vars::split_list,
    output::alert::{Detection, Preload, PreloadSource, Process},
};
use detector_common::LoaderVar;

/// ld-linux-x86-64.so.2, ld-linux-aarch64.so.1, ld-linux.so.2, ld64.so.2, ld.so...
pub fn is_loader(path: &str) -> bool {
    let base = path.rsplit('/').next().unwrap_or(path);
    base.starts_with("ld-linux")
        || base.starts_with("ld64.so")
        || base == "ld.so"
        || (base.starts_with("ld-") && base.contains(".so"))
}

/// (option, libraries, program) found on a loader's command line.
pub fn parse(argv: &[String]) -> (Vec<(&'static str, Vec<String>)>, Option<String>) {
    let mut found = Vec::new();
    let mut it = argv.iter().skip(1);
    while let Some(a) = it.next() {
        let (opt, inline) = match a.split_once('=') {
            Some((o, v)) if o.starts_with("--") => (o, Some(v.to_owned())),
            _ => (a.as_str(), None),
        };
        match opt {
            "--preload" | "--audit" => {
                let Some(v) = inline.or_else(|| it.next().cloned()) else {
                    break;
                };
                let (name, var) = if opt == "--preload" {
                    ("--preload", LoaderVar::LdPreload)
                } else {
                    ("--audit", LoaderVar::LdAudit)
                };
                found.push((name, split_list(var, &v)));
            }
            "--library-path" | "--argv0" | "--glibc-hwcaps-prepend" | "--glibc-hwcaps-mask" => {
                if inline.is_none() {
                    it.next();
                }
            }
            o if o.starts_with("--") => {}
            _ => return (found, Some(a.clone())),
        }
    }
    (found, None)
}

pub struct LoaderArgv;

impl Rule for LoaderArgv {
    fn wants_exec(&mut self, exec: &Exec) -> bool {
        is_loader(&exec.filename)
    }

    fn evaluate(&mut self, cx: &Context, observation: &Observation) -> Vec<Finding> {
        match observation {
            Observation::Exec(exec) => evaluate(cx.catalogue, cx.process, exec),
            _ => Vec::new(),
        }
    }
}

fn evaluate(catalogue: &Catalogue, process: &Process, exec: &Exec) -> Vec<Finding> {
    if !is_loader(&exec.filename) {
        return Vec::new();
    }
    let (found, program) = parse(&exec.argv);
    let credential = program.as_deref().is_some_and(|p| catalogue.matches(p, ""));
    let mut out = Vec::new();
    for (opt, libs) in found {
        let detection = if opt == "--preload" {
            Detection::PreloadArgv
        } else {
            Detection::AuditLibrary
        };
        for lib in libs {
            let mut f = Finding::new(exec.hdr.ktime_ns, process.clone(), detection);
            if credential {
                f.detections.insert(Detection::CredentialProcess);
            }
            f.library = Some(Library::inspect(&lib));
            f.preload = Some(Preload {
                source: PreloadSource::Argv,
                variable: opt,
                value: lib.clone(),
                occurrences: 1,
                truncated: exec.args_truncated,
                inherited_from: None,
                list: None,
            });
            out.push(f);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn loader_names() {
        assert!(is_loader("/lib64/ld-linux-x86-64.so.2"));
        assert!(is_loader("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"));
        assert!(!is_loader("/usr/bin/ld"));
        assert!(!is_loader("/usr/bin/ldd"));
    }

    #[test]
    fn parses_loader_options() {
        let (found, prog) = parse(&v(&[
            "ld.so",
            "--preload",
            "/tmp/a.so:/tmp/b.so",
            "--audit=/tmp/c.so",
            "--library-path",
            "/x",
            "/usr/bin/ssh",
            "--preload",
            "no",
        ]));
        assert_eq!(found.len(), 2);
        assert_eq!(found[0], ("--preload", v(&["/tmp/a.so", "/tmp/b.so"])));
        assert_eq!(found[1], ("--audit", v(&["/tmp/c.so"])));
        assert_eq!(prog.as_deref(), Some("/usr/bin/ssh"));
    }
}
