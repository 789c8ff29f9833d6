//! Rule: a library mapped executable from where a non-root user could have put or changed it:
//! a file not owned by root or writable by others, a tmpfs, a memfd, a deleted file. Live (the
//! kernel's facts at the mapping) and in a sweep (what /proc/<pid>/maps shows). What the kernel
//! maps at exec (the program, its interpreter) is not a library: `unverified_loader` judges it.
use super::{Context, Finding, Observation, Rule};
use crate::{engine::library::Library, output::alert::Detection};

pub struct UnsafeLibrary;

impl Rule for UnsafeLibrary {
    fn evaluate(&mut self, cx: &Context, observation: &Observation) -> Vec<Finding> {
        let lib = match observation {
            // A mapping the loader made from /etc/ld.so.preload is the preload-file rule's; what
            // the kernel maps at exec is the unverified-loader rule's.
            Observation::Mmap(m) if !m.after_preload_list && !m.source.at_exec() => {
                Library::from_kernel(&m.file, &m.hdr)
            }
            Observation::Mapped(lib) => (*lib).clone(),
            _ => return Vec::new(),
        };
        if !lib.is_unsafe() {
            return Vec::new();
        }
        let mut f = Finding::new(cx.ktime_ns, cx.process.clone(), Detection::UnsafeLibrary);
        f.library = Some(lib);
        vec![f]
    }
}
