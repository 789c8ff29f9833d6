//! Package managers: the programs that change the system's libraries, loader and PAM
//! configuration on the package database's behalf. A process is attributed to one when it is
//! one, or when one is among its ancestors (maintainer scripts, `pam-auth-update`, `ldconfig`
//! run by a trigger). Recognised by the exact path of the program exec'd (never by a name a
//! process can give itself), `/bin` and `/usr/bin` being one directory on merged-/usr systems.
//!
//! Image builders (`mmdebstrap`, `debootstrap`) are recognised the same way. They build a root
//! filesystem in a directory and run that tree's own programs and package manager chrooted into
//! it: what they and their descendants do under another root than the host's is the tree's, not
//! the host's (`engine::file_view`). They are no package managers of the host: their hooks and
//! anything else they run under the host's root are judged as any other process.

/// (program path under /usr, the name alerts give the package manager).
const PROGRAMS: &[(&str, &str)] = &[
    ("/usr/bin/dpkg", "dpkg"),
    ("/usr/bin/apt", "apt"),
    ("/usr/bin/apt-get", "apt"),
    ("/usr/bin/aptitude", "aptitude"),
    ("/usr/bin/unattended-upgrade", "unattended-upgrades"),
    ("/usr/lib/packagekit/packagekitd", "packagekit"),
    ("/usr/libexec/packagekitd", "packagekit"),
    ("/usr/bin/rpm", "rpm"),
    ("/usr/bin/dnf", "dnf"),
    ("/usr/bin/dnf-3", "dnf"),
    ("/usr/bin/dnf5", "dnf"),
    ("/usr/bin/yum", "yum"),
    ("/usr/bin/microdnf", "dnf"),
    ("/usr/bin/zypper", "zypper"),
];

/// (program path under /usr, the name alerts give the image builder). Both are scripts: the
/// path exec'd is the script's, a /proc sweep's is the interpreter's with the script as argv[1].
const IMAGE_BUILDERS: &[(&str, &str)] = &[
    ("/usr/bin/mmdebstrap", "mmdebstrap"),
    ("/usr/sbin/debootstrap", "debootstrap"),
];

/// The program at `program` in `table`, `/usr/x` and `/x` being one (merged /usr).
fn find(table: &[(&str, &'static str)], program: &str) -> Option<&'static str> {
    let under_usr = program.strip_prefix("/usr").unwrap_or(program);
    table
        .iter()
        .find(|(path, _)| path[4..] == *under_usr)
        .map(|(_, name)| *name)
}

/// The package manager `program` (the path exec'd, or a /proc sweep's executable) is, if any.
pub fn recognise(program: &str) -> Option<&'static str> {
    find(PROGRAMS, program)
}

/// The image builder `program` (the path exec'd, or a /proc sweep's script) is, if any.
pub fn recognise_image_builder(program: &str) -> Option<&'static str> {
    find(IMAGE_BUILDERS, program)
}

/// The package managers' program paths.
pub fn paths() -> impl Iterator<Item = &'static str> {
    PROGRAMS.iter().map(|(path, _)| *path)
}

/// Whether `program` is Debian's `pam-auth-update`, which writes /etc/pam.d/common-* from the
/// profiles packages install in /usr/share/pam-configs: its changes are trusted as far as
/// the package database vouches for those profiles.
pub fn is_pam_auth_update(program: &str) -> bool {
    matches!(
        program,
        "/usr/sbin/pam-auth-update" | "/sbin/pam-auth-update"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_exact_path_with_merged_usr_aliases() {
        assert_eq!(recognise("/usr/bin/dpkg"), Some("dpkg"));
        assert_eq!(recognise("/bin/dpkg"), Some("dpkg"));
        assert_eq!(recognise("/usr/bin/apt-get"), Some("apt"));
        assert_eq!(
            recognise("/usr/bin/unattended-upgrade"),
            Some("unattended-upgrades")
        );
        assert_eq!(recognise("/tmp/dpkg"), None);
        assert_eq!(recognise("/usr/local/bin/dpkg"), None);
        assert_eq!(recognise("dpkg"), None);
        assert_eq!(recognise("/usr/bin/dpkg-query"), None);
        assert_eq!(recognise("/usr/bin/mmdebstrap"), None);
    }

    #[test]
    fn image_builders_by_exact_path_with_merged_usr_aliases() {
        assert_eq!(
            recognise_image_builder("/usr/bin/mmdebstrap"),
            Some("mmdebstrap")
        );
        assert_eq!(
            recognise_image_builder("/bin/mmdebstrap"),
            Some("mmdebstrap")
        );
        assert_eq!(
            recognise_image_builder("/usr/sbin/debootstrap"),
            Some("debootstrap")
        );
        assert_eq!(
            recognise_image_builder("/sbin/debootstrap"),
            Some("debootstrap")
        );
        assert_eq!(recognise_image_builder("/tmp/mmdebstrap"), None);
        assert_eq!(recognise_image_builder("/usr/local/bin/mmdebstrap"), None);
        assert_eq!(recognise_image_builder("/usr/bin/debootstrap"), None);
        assert_eq!(recognise_image_builder("mmdebstrap"), None);
        assert_eq!(recognise_image_builder("/usr/bin/dpkg"), None);
    }
}
