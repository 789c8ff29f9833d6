//! Rule: a library mapped executable from where a non-root user could have put or changed it:
//! a file not owned by root or writable by others, a tmpfs, a memfd, a deleted file. Live (the
//! kernel's facts at the mapping) and in a sweep (what /proc/<pid>/maps shows). What the kernel
//! maps at exec (the program, its interpreter) is not a library: `unverified_loader` judges it.
//!
//! A file whose path leads to another file by the time it is looked at, and that is unsafe for
//! nothing else (`replaced_since_mapped`), mapped by a process that is not a credential program
//! and is or descends from a package manager or an image builder, is low at most: the package
//! manager replaced it (`dpkg-deb` maps the `libmd` that dpkg then unpacks anew).
use super::{Context, Finding, Observation, Rule};
use crate::{
    engine::library::Library,
    output::alert::{Detection, Severity},
};

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
        if replaced_under_package_manager(cx, &lib) {
            f.ceiling = Severity::Low;
        }
        f.library = Some(lib);
        vec![f]
    }
}

fn replaced_under_package_manager(cx: &Context, lib: &Library) -> bool {
    lib.unsafe_reasons == ["replaced_since_mapped"]
        && (cx.package_manager.is_some() || cx.image_builder.is_some())
        && !cx.catalogue.matches(&cx.process.exe, &cx.process.comm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::alert::Process;

    fn ceiling(
        exe: &str,
        package_manager: Option<&'static str>,
        reasons: &[&'static str],
    ) -> Severity {
        let process = Process {
            pid: 4_000_301,
            exe: exe.into(),
            comm: exe.rsplit('/').next().unwrap().into(),
            ..Process::default()
        };
        let cx = Context {
            package_manager,
            ..Context::for_test(&process)
        };
        let lib = Library {
            path: "/usr/lib/x86_64-linux-gnu/libmd.so.0.0.5".into(),
            unsafe_reasons: reasons.to_vec(),
            ..Default::default()
        };
        let mut found = UnsafeLibrary.evaluate(&cx, &Observation::Mapped(&lib));
        found.pop().expect("a finding").ceiling
    }

    #[test]
    fn a_file_the_package_manager_replaced_since_it_was_mapped_is_low_at_most() {
        let replaced = &["replaced_since_mapped"][..];
        assert_eq!(
            ceiling("/usr/bin/dpkg-deb", Some("dpkg"), replaced),
            Severity::Low
        );
        // Not under a package manager, a credential program, or unsafe for more.
        assert_eq!(
            ceiling("/usr/bin/dpkg-deb", None, replaced),
            Severity::Critical
        );
        assert_eq!(
            ceiling("/usr/sbin/sshd", Some("dpkg"), replaced),
            Severity::Critical
        );
        assert_eq!(
            ceiling(
                "/usr/bin/dpkg-deb",
                Some("dpkg"),
                &["replaced_since_mapped", "tmpfs"]
            ),
            Severity::Critical
        );
    }
}
