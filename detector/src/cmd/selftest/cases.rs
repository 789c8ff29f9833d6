//! The atomic tests: each runs a real trigger with a harmless library from the workspace and
//! names the alert it must raise.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Result;

use super::{
    expect::Expect,
    interp,
    payload::{self, Workspace},
};
use crate::output::alert::{Severity, T1056_004, T1574_006};

/// How long a trigger may run before it is killed.
const TRIGGER_DEADLINE: Duration = Duration::from_secs(10);

/// A test that has run: its trigger's pid, or why it could not run.
pub struct Case {
    pub name: &'static str,
    pub expect: Expect,
    pub ran: Result<u32, String>,
}

/// The libraries the cases use, written to the workspace.
pub struct Libs {
    read_hook: PathBuf,
    audit: PathBuf,
    pam_module: PathBuf,
}

impl Libs {
    pub fn write(ws: &Workspace) -> Result<Libs> {
        Ok(Libs {
            read_hook: ws.write_lib("libselftest-read.so", payload::READ_HOOK)?,
            audit: ws.write_lib("libselftest-audit.so", payload::AUDIT)?,
            pam_module: ws.write_lib("pam_selftest.so", payload::PAM_MODULE)?,
        })
    }
}

fn expect(
    rules: &'static [&'static str],
    technique: &'static str,
    detection: &'static str,
    process: &str,
    severity: Severity,
) -> Expect {
    Expect {
        rules,
        technique,
        detection,
        process: process.to_owned(),
        severity,
    }
}

const HOOKING: &[&str] = &["credential_api_hooking"];
const HIJACKING: &[&str] = &["dynamic_linker_hijacking"];
/// A memfd library is read through its process's `/proc/<pid>/map_files`: when the process
/// exited first, its alert names no hook and is the hijacking rule's.
const HIJACKING_OR_HOOKING: &[&str] = &["dynamic_linker_hijacking", "credential_api_hooking"];

/// Runs every test, one after the other, and returns them with their triggers' pids.
/// `detector` is this program (the memfd load's helper).
pub fn run_all(ws: &Workspace, libs: &Libs, detector: &Path) -> Result<Vec<Case>> {
    let mut cases = Vec::new();
    let mut add = |name, expect, ran| {
        cases.push(Case { name, expect, ran });
        super::interrupt::check()
    };

    // Test 3 of the T1056.004 guide: a libc read() hook preloaded into cat.
    let input = ws.path("input.txt");
    let mark = ws.path("mark-cat");
    let ran = std::fs::write(&input, "detector selftest\n")
        .map_err(|e| format!("writing {}: {e}", input.display()))
        .and_then(|()| {
            trigger(
                Command::new("cat")
                    .arg(&input)
                    .env("LD_PRELOAD", &libs.read_hook)
                    .env("DETECTOR_SELFTEST_MARK", &mark),
            )
        })
        .and_then(|pid| marked(&mark, "the read() hook", pid));
    add(
        "test3_read_hook_cat",
        expect(HOOKING, T1056_004, "preload_env", "cat", Severity::Medium),
        ran,
    )?;

    // Atomic Red Team T1574.006 #2: `LD_PRELOAD=<lib> ls`.
    let ran = trigger(
        Command::new("ls")
            .arg(ws.dir())
            .env("LD_PRELOAD", &libs.read_hook),
    );
    add(
        "atomic_t1574.006_2_ls",
        expect(HOOKING, T1574_006, "preload_env", "ls", Severity::Medium),
        ran,
    )?;

    // The read() hook preloaded into a credential program.
    let ran = trigger(
        Command::new("ssh")
            .arg("-V")
            .env("LD_PRELOAD", &libs.read_hook),
    );
    add(
        "preload_ssh_v",
        expect(HOOKING, T1056_004, "preload_env", "ssh", Severity::Critical),
        ran,
    )?;

    // The loader run directly: `ld.so --preload <lib> /bin/true`.
    let (ran, loader) = match interp::of(Path::new("/bin/true")) {
        Ok(loader) => (
            trigger(
                Command::new(&loader)
                    .arg("--preload")
                    .arg(&libs.read_hook)
                    .arg("/bin/true"),
            ),
            loader.to_string_lossy().into_owned(),
        ),
        Err(e) => (Err(format!("{e:#}")), "ld.so".to_owned()),
    };
    add(
        "ldso_preload",
        expect(
            HOOKING,
            T1574_006,
            "preload_argv",
            &loader,
            Severity::Medium,
        ),
        ran,
    )?;

    // LD_AUDIT: ld.so loads an rtld-audit module.
    let mark = ws.path("mark-audit");
    let ran = trigger(
        Command::new("/bin/true")
            .env("LD_AUDIT", &libs.audit)
            .env("DETECTOR_SELFTEST_MARK", &mark),
    )
    .and_then(|pid| marked(&mark, "the LD_AUDIT module", pid));
    add(
        "ld_audit_true",
        expect(
            HIJACKING,
            T1574_006,
            "audit_library",
            "true",
            Severity::Medium,
        ),
        ran,
    )?;

    // A PAM module's credential entry points preloaded into su (it authenticates nothing).
    let ran = trigger(
        Command::new("su")
            .arg("--version")
            .env("LD_PRELOAD", &libs.pam_module),
    );
    add(
        "pam_module_su",
        expect(
            HOOKING,
            T1056_004,
            "credential_hooks",
            "su",
            Severity::Critical,
        ),
        ran,
    )?;

    // A fileless load: the library copied into a memfd and dlopened through /proc/self/fd.
    let ran = trigger(
        Command::new(detector)
            .arg("selftest-memfd-load")
            .arg(&libs.read_hook),
    );
    let name = detector
        .file_name()
        .map_or_else(|| "detector".into(), |n| n.to_string_lossy().into_owned());
    add(
        "memfd_dlopen",
        expect(
            HIJACKING_OR_HOOKING,
            T1574_006,
            "unsafe_library",
            &comm(&name),
            Severity::Medium,
        ),
        ran,
    )?;
    Ok(cases)
}

/// The kernel's comm for a program: its file name's first 15 bytes.
fn comm(name: &str) -> String {
    let mut end = name.len().min(15);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_owned()
}

/// Runs `cmd` to its end (killed after `TRIGGER_DEADLINE`) with no loader variables of ours,
/// and returns its pid; an error says why it did not run or did not succeed.
fn trigger(cmd: &mut Command) -> Result<u32, String> {
    let what = format!("{}", cmd.get_program().to_string_lossy());
    for var in ["LD_PRELOAD", "LD_AUDIT", "LD_LIBRARY_PATH"] {
        if !cmd.get_envs().any(|(k, _)| k == var) {
            cmd.env_remove(var);
        }
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{what}: {e}"))?;
    let pid = child.id();
    let deadline = Instant::now() + TRIGGER_DEADLINE;
    let st = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{what} still running after {} s",
                    TRIGGER_DEADLINE.as_secs()
                ));
            }
            Err(e) => return Err(format!("{what}: {e}")),
        }
    };
    if !st.success() {
        return Err(format!("{what} (pid {pid}) failed: {st}"));
    }
    Ok(pid)
}

/// The library wrote its mark: it ran in the trigger.
fn marked(mark: &Path, what: &str, pid: u32) -> Result<u32, String> {
    if mark.exists() {
        Ok(pid)
    } else {
        Err(format!(
            "{what} did not run (pid {pid}); is {} on a noexec mount?",
            mark.parent()
                .map_or_else(String::new, |p| p.display().to_string())
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn comm_is_cut_at_15_bytes() {
        assert_eq!(super::comm("detector"), "detector");
        assert_eq!(super::comm("ld-linux-x86-64.so.2"), "ld-linux-x86-64");
    }
}
