//! Rule: a library mapped executable from where a non-root user could have put or changed it:
//! a file not owned by root or writable by others, a tmpfs, a memfd, a deleted file.
use super::Finding;
use crate::{
    capture::decode::Mmap,
    engine::library::Library,
    output::alert::{Detection, Process},
};

pub fn evaluate(process: &Process, m: &Mmap) -> Option<Finding> {
    let lib = Library::from_kernel(&m.file);
    if !lib.is_unsafe() {
        return None;
    }
    let mut f = Finding::new(m.hdr.ktime_ns, process.clone(), Detection::UnsafeLibrary);
    f.library = Some(lib);
    Some(f)
}
