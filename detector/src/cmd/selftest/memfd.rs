//! `detector selftest-memfd-load LIB` (hidden): the selftest's memfd load, run as a child of
//! the selftest. Copies LIB into a memfd and dlopens it through `/proc/self/fd/N`, as fileless
//! loaders do, then exits.
use std::{ffi::CString, path::Path, process::ExitCode};

use anyhow::{anyhow, bail, Context as _, Result};

/// The memfd's name when the library's directory has none.
const MEMFD_NAME: &str = "detector-selftest";

/// Loads `lib` from a memfd named after its directory (the selftest's, unique per run), which
/// the kernel shows as `/memfd:detector-selftest-XXXXXX (deleted)`: each run's alert is then a
/// new one, not a repeat the daemon aggregates.
pub fn load(lib: &Path) -> Result<ExitCode> {
    let bytes = std::fs::read(lib).with_context(|| format!("reading {}", lib.display()))?;
    let name = lib
        .parent()
        .and_then(Path::file_name)
        .map_or_else(|| MEMFD_NAME.into(), |n| n.to_string_lossy().into_owned());
    let name = CString::new(name).context("the memfd's name holds a NUL byte")?;
    // SAFETY: a valid NUL-terminated name.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), 0) };
    if fd < 0 {
        bail!("memfd_create: {}", std::io::Error::last_os_error());
    }
    let mut written = 0;
    while written < bytes.len() {
        // SAFETY: the pointer and length lie within `bytes`.
        let n = unsafe { libc::write(fd, bytes[written..].as_ptr().cast(), bytes.len() - written) };
        if n <= 0 {
            bail!("writing the memfd: {}", std::io::Error::last_os_error());
        }
        written += n as usize;
    }
    let path = CString::new(format!("/proc/self/fd/{fd}")).expect("no NUL in the path");
    // SAFETY: a valid NUL-terminated path; the handle is kept until exit.
    let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW) };
    if handle.is_null() {
        // SAFETY: dlerror returns a NUL-terminated string or null.
        let why = unsafe { libc::dlerror() };
        let why = if why.is_null() {
            "unknown error".to_owned()
        } else {
            unsafe { std::ffi::CStr::from_ptr(why) }
                .to_string_lossy()
                .into_owned()
        };
        return Err(anyhow!("dlopen {}: {why}", path.to_string_lossy()));
    }
    Ok(ExitCode::SUCCESS)
}
