//! Rule: what the kernel mapped at exec, which the package database must vouch for. The ELF
//! interpreter of any program: a rootkit's copy of the loader, its built-in
//! "/etc/ld.so.preload" rewritten to another path of the same length, preloads from a file no
//! one watches, and no mmap call shows it (`unverified_loader`). The program itself of a
//! credential process (`unverified_object`). Both findings ask enrichment to verify the file
//! (`Finding::verify`), which drops them when the database vouches for it.
use super::{Context, Finding, Observation, Rule};
use crate::{capture::decode::MmapSource, engine::library::Library, output::alert::Detection};

pub struct UnverifiedLoader;

impl Rule for UnverifiedLoader {
    fn evaluate(&mut self, cx: &Context, observation: &Observation) -> Vec<Finding> {
        let Observation::Mmap(m) = observation else {
            return Vec::new();
        };
        let detection = match m.source {
            MmapSource::ExecInterpreter => Detection::UnverifiedLoader,
            MmapSource::ExecProgram
                if cx.catalogue.matches(&cx.process.exe, &cx.process.comm)
                    || cx.catalogue.matches(&m.file.path, "") =>
            {
                Detection::UnverifiedObject
            }
            _ => return Vec::new(),
        };
        let mut f = Finding::new(cx.ktime_ns, cx.process.clone(), detection);
        f.library = Some(Library::from_kernel(&m.file, &m.hdr));
        f.verify = true;
        vec![f]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        capture::decode::{File, Header, Mmap},
        output::alert::Process,
    };

    fn mmap(source: MmapSource, path: &str) -> Mmap {
        Mmap {
            hdr: Header {
                ktime_ns: 1,
                pid: 4_194_305,
                tid: 4_194_305,
                ppid: 4_194_306,
                uid: 0,
                gid: 0,
                comm: "x".into(),
            },
            file: File {
                path: path.into(),
                path_truncated: false,
                info: Default::default(),
            },
            source,
            mprotect: false,
            after_preload_list: false,
            prevented: None,
            prot: 5,
        }
    }

    fn findings(exe: &str, m: &Mmap) -> Vec<(Detection, String, bool)> {
        let process = Process {
            pid: m.hdr.pid,
            exe: exe.into(),
            comm: exe.rsplit('/').next().unwrap().into(),
            ..Process::default()
        };
        let cx = Context::for_test(&process);
        UnverifiedLoader
            .evaluate(&cx, &Observation::Mmap(m))
            .into_iter()
            .map(|f| {
                (
                    *f.detections.first().unwrap(),
                    f.library.unwrap().path,
                    f.verify,
                )
            })
            .collect()
    }

    #[test]
    fn the_interpreter_of_any_program_and_the_program_of_a_credential_process() {
        let ld = "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2";
        assert_eq!(
            findings("/usr/bin/cat", &mmap(MmapSource::ExecInterpreter, ld)),
            [(Detection::UnverifiedLoader, ld.to_owned(), true)]
        );
        assert_eq!(
            findings(
                "/usr/bin/ssh",
                &mmap(MmapSource::ExecProgram, "/usr/bin/ssh")
            ),
            [(Detection::UnverifiedObject, "/usr/bin/ssh".to_owned(), true)]
        );
        assert!(findings(
            "/usr/bin/cat",
            &mmap(MmapSource::ExecProgram, "/usr/bin/cat")
        )
        .is_empty());
        assert!(findings("/usr/bin/ssh", &mmap(MmapSource::Mmap, ld)).is_empty());
    }
}
