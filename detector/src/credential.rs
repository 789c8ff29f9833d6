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
];

/// True when `exe` (a path) or `comm` names a credential-handling program.
pub fn is_credential_process(exe: &str, comm: &str) -> bool {
    let base = exe.rsplit('/').next().unwrap_or(exe);
    CATALOGUE.contains(&base) || (base.is_empty() && CATALOGUE.contains(&comm))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_by_path() {
        assert!(is_credential_process("/usr/bin/ssh", "ssh"));
        assert!(is_credential_process("/usr/bin/ssh", "renamed"));
        assert!(!is_credential_process("/usr/bin/cat", "ssh"));
        assert!(is_credential_process("", "sudo"));
    }
}
