//! The harmless libraries the selftest carries (compiled from `detector/selftest/*.c` by
//! build.rs) and the private directory they are written to for a run.
use std::{
    ffi::CString,
    os::unix::{ffi::OsStrExt as _, fs::PermissionsExt as _},
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _, Result};

/// A libc `read()` hook that passes every read through (Test 3's shape).
pub const READ_HOOK: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/selftest/read_hook.so"));
/// An rtld-audit module: `la_version` only.
pub const AUDIT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/selftest/audit.so"));
/// A PAM module whose every entry point answers PAM_IGNORE.
pub const PAM_MODULE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/selftest/pam_module.so"));

/// A directory only root can enter (mode 0700, made by mkdtemp(3)), removed with everything in
/// it when dropped.
pub struct Workspace {
    dir: PathBuf,
}

impl Workspace {
    /// Creates `detector-selftest-XXXXXX` under `parent`.
    pub fn create(parent: &Path) -> Result<Workspace> {
        let template = parent.join("detector-selftest-XXXXXX");
        let mut bytes = CString::new(template.as_os_str().as_bytes())
            .context("the temporary directory's path holds a NUL byte")?
            .into_bytes_with_nul();
        // SAFETY: `bytes` is a NUL-terminated template mkdtemp may rewrite in place.
        let made = unsafe { libc::mkdtemp(bytes.as_mut_ptr().cast()) };
        if made.is_null() {
            bail!(
                "cannot create a temporary directory under {}: {}",
                parent.display(),
                std::io::Error::last_os_error()
            );
        }
        bytes.pop();
        let dir = PathBuf::from(std::ffi::OsStr::from_bytes(&bytes));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("chmod 0700 {}", dir.display()))?;
        Ok(Workspace { dir })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `bytes` as `name` (mode 0644) and returns its path.
    pub fn write_lib(&self, name: &str, bytes: &[u8]) -> Result<PathBuf> {
        let p = self.path(name);
        std::fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644))
            .with_context(|| format!("chmod 0644 {}", p.display()))?;
        Ok(p)
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!(
                "detector selftest: could not remove {}: {e}",
                self.dir.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_libraries_are_shared_objects() {
        for lib in [READ_HOOK, AUDIT, PAM_MODULE] {
            assert_eq!(&lib[..4], b"\x7fELF");
            // e_type ET_DYN
            assert_eq!(u16::from_le_bytes([lib[16], lib[17]]), 3);
        }
    }

    #[test]
    fn the_workspace_is_private_and_removed() {
        use std::os::unix::fs::MetadataExt as _;
        let ws = Workspace::create(&std::env::temp_dir()).unwrap();
        let dir = ws.dir().to_owned();
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o7777, 0o700);
        ws.write_lib("x.so", READ_HOOK).unwrap();
        drop(ws);
        assert!(!dir.exists());
    }
}
