//! Linux signals by number (x86-64 and aarch64 share these numbers): their names and their
//! default actions (signal(7)).

/// The signal's name (`SIGSEGV`; `SIGRTMIN+3` for a real-time one, numbered as the C library
/// numbers them: its `SIGRTMIN` is above the two it keeps for itself, `SIG32` and `SIG33`).
pub fn name(sig: u32) -> String {
    const NAMES: [&str; 32] = [
        "0",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    match sig {
        0..=31 => NAMES[sig as usize].to_string(),
        32..=64 => {
            let min = libc::SIGRTMIN() as u32;
            match sig.checked_sub(min) {
                Some(0) => "SIGRTMIN".to_string(),
                Some(n) => format!("SIGRTMIN+{n}"),
                None => format!("SIG{sig}"),
            }
        }
        _ => format!("signal {sig}"),
    }
}

/// Whether the default action of `sig` dumps core.
pub fn dumps_core(sig: u32) -> bool {
    sig < 64 && detector_common::CORE_DUMP_SIGNALS & (1 << sig) != 0
}

/// Whether the default action of `sig` leaves the process running (ignore or continue).
pub fn harmless_by_default(sig: u32) -> bool {
    // SIGCHLD, SIGCONT, SIGURG, SIGWINCH.
    matches!(sig, 0 | 17 | 18 | 23 | 28)
}

/// Whether the default action of `sig` stops the process.
pub fn stops(sig: u32) -> bool {
    matches!(sig, 19..=22)
}

/// Catchable signals whose default action would end the daemon and that it has no use for:
/// SIGQUIT, SIGABRT, SIGUSR1, SIGUSR2, SIGALRM, SIGSTKFLT, SIGXCPU, SIGXFSZ, SIGVTALRM, SIGPROF,
/// SIGIO, SIGPWR, and the real-time signals. The faults (SIGSEGV, SIGBUS, SIGILL, SIGFPE,
/// SIGTRAP, SIGSYS) are left to their default action: a real one must still end the daemon.
fn outlived() -> Vec<i32> {
    let mut sigs = vec![3, 6, 10, 12, 14, 16, 24, 25, 26, 27, 29, 30];
    sigs.extend(libc::SIGRTMIN()..=libc::SIGRTMAX());
    sigs
}

extern "C" fn nothing(_: libc::c_int) {}

/// Gives each signal of [`outlived`] a handler that does nothing, so that sending one does not
/// end the daemon without a word: it goes on, and the signal channel's record of the sender is
/// judged (`sensor_tamper`). A handler, not SIG_IGN: a handler is reset at exec, so no program
/// the daemon might run inherits it. `abort()` still ends the process (it restores the default
/// action and raises again when a handler returns).
///
/// SIGHUP, SIGINT and SIGTERM (the daemon's reload and stop) and those signals are unblocked
/// first: a mask inherited from the launcher would otherwise hold them pending for ever.
pub fn outlive_fatal_signals() -> std::io::Result<()> {
    // SAFETY: a sigset built with the libc calls, applied to the calling thread before the
    // daemon starts any other (they inherit it).
    let rc = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGHUP, libc::SIGINT, libc::SIGTERM]
            .into_iter()
            .chain(outlived())
        {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    for sig in outlived() {
        // SAFETY: a zeroed sigaction with a handler that touches nothing; sa_mask empty.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = nothing as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_actions() {
        assert_eq!(name(11), "SIGSEGV");
        assert_eq!(name(31), "SIGSYS");
        let min = libc::SIGRTMIN() as u32;
        assert_eq!(name(min), "SIGRTMIN");
        assert_eq!(name(min + 2), "SIGRTMIN+2");
        assert_eq!(name(32), "SIG32");
        assert_eq!(name(99), "signal 99");
        assert!(dumps_core(6) && dumps_core(3) && !dumps_core(9) && !dumps_core(64));
        assert!(harmless_by_default(28) && !harmless_by_default(10));
        assert!(stops(20) && !stops(18));
    }
}
