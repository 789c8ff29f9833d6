//! Linux signals by number (x86-64 and aarch64 share these numbers): their names and their
//! default actions (signal(7)).

/// The signal's name (`SIGSEGV`; `SIGRTMIN+3` for a real-time one).
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
        32..=64 => format!("SIGRTMIN+{}", sig - 32),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_actions() {
        assert_eq!(name(11), "SIGSEGV");
        assert_eq!(name(31), "SIGSYS");
        assert_eq!(name(34), "SIGRTMIN+2");
        assert_eq!(name(99), "signal 99");
        assert!(dumps_core(6) && dumps_core(3) && !dumps_core(9) && !dumps_core(64));
        assert!(harmless_by_default(28) && !harmless_by_default(10));
        assert!(stops(20) && !stops(18));
    }
}
