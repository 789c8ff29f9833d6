//! The sensor itself as a target: its pid and threads, and the files that make it (its binary,
//! its configuration file, its systemd unit), which the watch reports changes of.
use std::path::Path;

/// systemd unit files the packaging installs the service as.
pub const UNIT_FILES: &[&str] = &[
    "/etc/systemd/system/detector.service",
    "/lib/systemd/system/detector.service",
    "/usr/lib/systemd/system/detector.service",
];

/// The daemon's pid (the process running the rules).
pub fn pid() -> u32 {
    std::process::id()
}

/// `id` is the daemon: its pid, or the id of one of its threads (a ptrace or a
/// `/proc/<tid>/mem` aimed at a thread).
pub fn is_sensor(id: u32) -> bool {
    id != 0 && (id == pid() || Path::new(&format!("/proc/self/task/{id}")).exists())
}

/// The files that make the sensor, each with what it is: the running binary (as
/// `/proc/self/exe` names it), the configuration file at `config` (as given, made absolute, and
/// its real path), the unit files.
pub fn files(config: &Path) -> Vec<(String, &'static str)> {
    let mut out: Vec<(String, &'static str)> = Vec::new();
    let mut add = |p: String, what: &'static str| {
        if p.starts_with('/') && !out.iter().any(|(q, _)| *q == p) {
            out.push((p, what));
        }
    };
    if let Ok(exe) = std::fs::read_link("/proc/self/exe") {
        let exe = exe.display().to_string();
        add(
            exe.strip_suffix(" (deleted)").unwrap_or(&exe).to_owned(),
            "binary",
        );
    }
    let absolute = std::path::absolute(config).unwrap_or_else(|_| config.to_owned());
    add(absolute.display().to_string(), "configuration file");
    if let Ok(real) = std::fs::canonicalize(config) {
        add(real.display().to_string(), "configuration file");
    }
    for u in UNIT_FILES {
        add((*u).to_owned(), "unit file");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemon_and_its_threads_are_the_sensor() {
        assert!(is_sensor(pid()));
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            tx.send(unsafe { libc::gettid() } as u32).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(200));
        });
        let tid = rx.recv().unwrap();
        assert!(is_sensor(tid));
        t.join().unwrap();
        assert!(!is_sensor(1));
        assert!(!is_sensor(0));
    }

    #[test]
    fn the_files_are_the_binary_the_configuration_and_the_units() {
        let f = files(Path::new("/etc/detector/detector.toml"));
        let exe = std::env::current_exe().unwrap().display().to_string();
        assert!(f.contains(&(exe, "binary")), "{f:?}");
        assert!(f.contains(&(
            "/etc/detector/detector.toml".to_owned(),
            "configuration file"
        )));
        assert!(f.contains(&(UNIT_FILES[0].to_owned(), "unit file")));
    }
}
