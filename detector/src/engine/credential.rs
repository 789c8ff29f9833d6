//! The catalogue of credential-handling programs, matched on the executable's basename
//! (from the exec path, not only comm, which a process can set to anything).
const CATALOGUE: &[&str] = &[
    "ssh",
    "scp",
    "sftp",
    "sshd",
    "sshd-session",
    "sshd-auth",
    "ssh-agent",
    "ssh-add",
    "sudo",
    "su",
    "doas",
    "pkexec",
    "passwd",
    "chpasswd",
    "login",
    "gpg",
    "gpg-agent",
    "pinentry",
    "pinentry-curses",
    "pinentry-gtk-2",
    "pinentry-gnome3",
    "pinentry-tty",
    "kinit",
    "unix_chkpwd",
    "polkit-agent-helper-1",
    // Keyrings and password managers: the secrets they hold are in their memory.
    "gnome-keyring-daemon",
    "kwalletd5",
    "kwalletd6",
    "keepassxc",
    "keepassxc-proxy",
    "bitwarden",
    "1password",
];

/// The built-in catalogue plus the configuration's additions (basenames or absolute paths).
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    extra: Vec<String>,
}

impl Catalogue {
    pub fn new(extra: &[String]) -> Self {
        Catalogue {
            extra: extra.to_vec(),
        }
    }

    /// The program basenames of the catalogue: the built-in ones and the configuration's
    /// additions given as basenames (an addition given as an absolute path is not a name).
    pub fn basenames(&self) -> impl Iterator<Item = &str> {
        CATALOGUE
            .iter()
            .copied()
            .chain(self.extra.iter().map(String::as_str))
            .filter(|n| !n.contains('/'))
    }

    /// True when `exe` (a path) or, when the path is unknown, `comm` names a credential program.
    pub fn matches(&self, exe: &str, comm: &str) -> bool {
        let base = exe.rsplit('/').next().unwrap_or(exe);
        let known = |name: &str| CATALOGUE.contains(&name) || self.extra.iter().any(|e| e == name);
        known(base)
            || (exe.starts_with('/') && self.extra.iter().any(|e| e == exe))
            || (base.is_empty() && known(comm))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_by_path() {
        let c = Catalogue::default();
        assert!(c.matches("/usr/bin/ssh", "ssh"));
        assert!(c.matches("/usr/bin/ssh", "renamed"));
        assert!(!c.matches("/usr/bin/cat", "ssh"));
        assert!(c.matches("", "sudo"));
    }

    #[test]
    fn configured_additions() {
        let c = Catalogue::new(&["vault".into(), "/opt/corp/bin/authd".into()]);
        assert!(c.matches("/usr/local/bin/vault", "vault"));
        assert!(c.matches("/opt/corp/bin/authd", "authd"));
        assert!(!c.matches("/tmp/authd", "authd"));
    }
}
