//! Package managers: the programs that change the system's libraries, loader and PAM
//! configuration on the package database's behalf. A process is attributed to one when it is
//! one, or when one is among its ancestors (maintainer scripts, `pam-auth-update`, `ldconfig`
//! run by a trigger). Recognised by the exact path of the program exec'd (never by a name a
//! process can give itself), `/bin` and `/usr/bin` being one directory on merged-/usr systems.

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

/// The package manager `program` (the path exec'd, or a /proc sweep's executable) is, if any.
pub fn recognise(program: &str) -> Option<&'static str> {
    let under_usr = match program.strip_prefix("/usr") {
        Some(rest) => rest.to_owned(),
        None => program.to_owned(),
    };
    PROGRAMS
        .iter()
        .find(|(path, _)| path[4..] == under_usr)
        .map(|(_, name)| *name)
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
    }
}
