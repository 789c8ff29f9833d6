//! Root end-to-end, channel by channel: `detector events` (the kernel programs and the decoder,
//! no rules, enrichment or process table), one real trigger, the decoded event's fields. A
//! failure here is the kernel program's or the decoder's; a failure only in the alert tests
//! (e2e_capture, e2e_preload, e2e_engine) is the engine's.
use std::{
    io::Read as _,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
};

use detector_tests::{
    gcc, rewrite_string, system_loader, write_program, Events, Restore, TempDir, INTERP,
};
use serde_json::{json, Value};

/// Runs a trigger to completion; returns its pid (the `pid` of its events) and its status.
fn run(cmd: &mut Command) -> (u32, ExitStatus) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("trigger {cmd:?}: {e}"));
    let pid = child.id();
    (pid, child.wait().expect("wait for the trigger"))
}

fn pid_is(e: &Value, pid: u32) -> bool {
    e["pid"] == pid
}

#[test]
fn exec_filename_argv_uid_ppid() {
    let ev = Events::start(&["--kind", "exec"]);
    let argv = ["/bin/sh", "-c", "exit 0", "detector-e2e-exec"];
    let (pid, st) = run(Command::new(argv[0])
        .args(&argv[1..])
        .env_clear()
        .env("A", "1")
        .env("B", "2"));
    assert!(st.success());
    let e = ev.expect("exec of /bin/sh", |e| pid_is(e, pid));
    assert_eq!(e["kind"], "exec");
    assert_eq!(e["filename"], "/bin/sh");
    assert_eq!(e["argv"], json!(argv));
    assert_eq!(e["argc"], 4);
    assert_eq!(e["envc"], 2);
    assert_eq!(e["loader_vars"], 0);
    assert_eq!(e["uid"], 0);
    assert_eq!(e["ppid"], std::process::id());
    assert_eq!(e["tid"], pid);
    assert_eq!(e["comm"], "sh");
    assert_eq!(e["filename_truncated"], false);
    assert_eq!(e["args_truncated"], false);
    assert_eq!(e["env_incomplete"], false);
    let stderr = ev.stop();
    // Lost events are reported at exit, channel by channel.
    for channel in [
        "exec",
        "mmap",
        "file_change",
        "lifecycle",
        "mem_tamper",
        "preload_list",
        "mem_read",
        "signal",
    ] {
        assert!(
            stderr.contains(&format!("lost on channel {channel}"))
                || stderr.contains(&format!(" {channel} events (ring buffer full)")),
            "no loss report for {channel} at exit:\n{stderr}"
        );
    }
}

/// Duplicated `LD_PRELOAD`: the count of occurrences and the last one (the one ld.so uses).
#[test]
fn loader_env_occurrences_and_last_value() {
    let dir = TempDir::new("chan-env");
    let exec_env = gcc(&dir, "exec_env.c", "exec_env", false);
    let ev = Events::start(&["--kind", "loader_env", "--kind", "exec"]);
    let (first, last, audit) = (
        "/nonexistent/detector-e2e-first.so",
        "/nonexistent/detector-e2e-last.so",
        "/nonexistent/detector-e2e-audit.so",
    );
    let (pid, _) = run(Command::new(&exec_env).args([
        &format!("LD_PRELOAD={first}"),
        "HOME=/",
        &format!("LD_PRELOAD={last}"),
        &format!("LD_AUDIT={audit}"),
        "--",
        "/bin/true",
    ]));
    let var = |name: &'static str| move |e: &Value| pid_is(e, pid) && e["var"] == name;
    let e = ev.expect("LD_PRELOAD twice", var("LD_PRELOAD"));
    assert_eq!(e["kind"], "loader_env");
    assert_eq!(e["occurrences"], 2);
    assert_eq!(e["index"], 2);
    assert_eq!(e["head"], last);
    assert_eq!(e["value_len"], last.len());
    assert_eq!(e["truncated"], false);
    assert_eq!(e["tail"], "");
    assert_eq!(e["ppid"], std::process::id());
    let e = ev.expect("LD_AUDIT once", var("LD_AUDIT"));
    assert_eq!(e["occurrences"], 1);
    assert_eq!(e["index"], 3);
    assert_eq!(e["head"], audit);
    assert_eq!(e["value_len"], audit.len());
    let e = ev.expect("the exec of /bin/true before them", |e| {
        pid_is(e, pid) && e["kind"] == "exec" && e["filename"] == "/bin/true"
    });
    assert_eq!(e["envc"], 4);
    assert_eq!(e["loader_vars"], 0b11, "LD_PRELOAD and LD_AUDIT bits");
    ev.stop();
}

/// A value longer than the head buffer (4 KiB): the head, the last 256 bytes, the full length.
#[test]
fn loader_env_long_value_head_and_tail() {
    let value = format!(
        "/nonexistent/{}/detector-e2e-tail-{}.so",
        "p".repeat(5000),
        "t".repeat(200)
    );
    let ev = Events::start(&["--kind", "loader_env"]);
    let (pid, _) = run(Command::new("/bin/true").env("LD_PRELOAD", &value));
    let e = ev.expect("a 5 KiB LD_PRELOAD", |e| {
        pid_is(e, pid) && e["var"] == "LD_PRELOAD"
    });
    assert_eq!(e["truncated"], true);
    assert_eq!(e["value_len"], value.len());
    assert_eq!(e["occurrences"], 1);
    // The head buffer holds 4096 bytes with the string's terminating NUL.
    assert_eq!(e["head"], value[..4095]);
    assert_eq!(e["tail"], value[value.len() - 256..]);
    ev.stop();
}

/// The filesystem's magic number, from statfs(2).
fn fs_magic(path: &Path) -> u64 {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statfs(c.as_ptr(), &mut st) }, 0, "statfs");
    st.f_type as u64
}

/// A gcc-built shared object dlopened from a temporary directory: the kernel's view of the file
/// matches what stat(2) says of it.
#[test]
fn mmap_of_a_dlopened_library() {
    let dir = TempDir::new("chan-mmap");
    let lib = gcc(&dir, "read_hook.c", "libchan.so", true);
    let loadlib = gcc(&dir, "loadlib.c", "loadlib", false);
    let ev = Events::start(&["--kind", "mmap"]);
    let (pid, st) = run(Command::new(&loadlib).arg("path").arg(&lib));
    assert!(st.success(), "loadlib path {lib:?}: {st}");
    let path = lib.to_str().unwrap();
    let e = ev.expect("the library mapped executable", |e| {
        pid_is(e, pid) && e["file"]["path"] == path
    });
    let m = std::fs::metadata(&lib).unwrap();
    let f = &e["file"];
    assert_eq!(f["inode"], m.ino());
    assert_eq!(
        f["device"],
        format!("{}:{}", libc::major(m.dev()), libc::minor(m.dev()))
    );
    assert_eq!(f["uid"], m.uid());
    assert_eq!(f["mode"], format!("{:o}", m.mode()));
    assert_eq!(f["nlink"], 1);
    assert_eq!(f["mtime_sec"], m.mtime());
    assert_eq!(f["path_truncated"], false);
    let magic = fs_magic(&lib);
    assert_eq!(f["fs_magic"], format!("{magic:#x}"));
    let fs = match magic {
        0xef53 => Some("ext4"),
        0x0102_1994 => Some("tmpfs"),
        0x8584_58f6 => Some("ramfs"),
        _ => None,
    };
    if let Some(fs) = fs {
        assert_eq!(f["fs"], fs);
    }
    assert_eq!(e["uid"], 0);
    assert_eq!(e["comm"], "loadlib");
    assert_eq!(e["mprotect"], false);
    assert_ne!(
        e["prot"].as_u64().unwrap() & libc::PROT_EXEC as u64,
        0,
        "{e}"
    );
    ev.stop();
}

/// The seen-cache: a root-owned library in a root-only directory is reported at its first
/// mapping and not at an ordinary process's next one (nothing has decided on it: `detector
/// events` never does), but a credential program's mapping of it is (a copy of the loading
/// program named `ssh`).
#[test]
fn mmap_seen_cache_still_reports_a_pending_file_to_credential_programs() {
    let dir = TempDir::new("chan-seen");
    let built = gcc(&dir, "plain_ext.c", "libseen.so", true);
    let loadlib = gcc(&dir, "loadlib.c", "loadlib", false);
    let ssh = dir.path("ssh");
    std::fs::copy(&loadlib, &ssh).unwrap();
    let libs = Path::new("/usr/local/lib/detector-chan-seen");
    let _libs = Restore::path(libs);
    std::fs::create_dir_all(libs).unwrap();
    let lib = libs.join("libseen.so");
    std::fs::copy(&built, &lib).unwrap();
    let path = lib.to_str().unwrap();
    let ev = Events::start(&["--kind", "mmap"]);
    let load = |program: &Path| {
        let (pid, st) = run(Command::new(program).arg("path").arg(&lib));
        assert!(st.success(), "{program:?} path {lib:?}: {st}");
        pid
    };
    let first = load(&loadlib);
    ev.expect("the first mapping", |e| {
        pid_is(e, first) && e["file"]["path"] == path
    });
    let again = load(&loadlib);
    let credential = load(&ssh);
    let e = ev.expect(
        "the credential program's mapping of the pending file",
        |e| pid_is(e, credential) && e["file"]["path"] == path,
    );
    assert_eq!(e["comm"], "ssh");
    assert!(
        ev.matching(|e| pid_is(e, again) && e["file"]["path"] == path)
            .is_empty(),
        "an ordinary process's second mapping was reported"
    );
    ev.stop();
}

/// At exec the kernel maps the program and its ELF interpreter itself, with no mmap call: a copy
/// of /usr/bin/true whose PT_INTERP names a copy of the loader gives one event for each, with
/// the kernel's facts of each file; the loader run as a program (a static executable: the new
/// image starts in its own text) gives its program event and no interpreter event.
#[test]
fn exec_maps_the_program_and_its_interpreter() {
    let dir = TempDir::new("chan-interp");
    // As long as INTERP, which the copy's PT_INTERP is rewritten to name.
    let interp = Path::new("/tmp/detector-e2e-interp.so");
    let _gone = RemoveOnDrop(vec![interp.to_owned()], None);
    let loader = std::fs::read(system_loader()).expect("read the loader");
    write_program(interp, &loader);
    let program = dir.path("true-interp");
    let true_bytes = std::fs::read("/usr/bin/true").expect("read /usr/bin/true");
    write_program(
        &program,
        &rewrite_string(&true_bytes, INTERP, interp.to_str().unwrap()),
    );
    let static_program = dir.path("ld-as-program");
    write_program(&static_program, &loader);

    let ev = Events::start(&["--kind", "mmap"]);
    let (static_pid, st) = run(Command::new(&static_program).arg("--version"));
    assert!(st.success(), "{static_program:?} --version: {st}");
    let (pid, st) = run(&mut Command::new(&program));
    assert!(st.success(), "{program:?}: {st}");

    let source =
        |pid: u32, source: &'static str| move |e: &Value| pid_is(e, pid) && e["source"] == source;
    let e = ev.expect("the program", source(pid, "exec_program"));
    assert_eq!(e["file"]["path"], program.to_str().unwrap());
    assert_eq!(e["mprotect"], false);
    let e = ev.expect("its interpreter", source(pid, "exec_interpreter"));
    let m = std::fs::metadata(interp).unwrap();
    let f = &e["file"];
    assert_eq!(f["path"], interp.to_str().unwrap());
    assert_eq!(f["inode"], m.ino());
    assert_eq!(
        f["device"],
        format!("{}:{}", libc::major(m.dev()), libc::minor(m.dev()))
    );
    assert_eq!(f["mtime_sec"], m.mtime());
    assert_eq!(e["comm"], "true-interp");
    assert_eq!(e["ppid"], std::process::id());
    assert_eq!(e["prot"], libc::PROT_READ | libc::PROT_EXEC);

    // The static program's events came before these.
    let e = ev.expect(
        "the loader run as a program",
        source(static_pid, "exec_program"),
    );
    assert_eq!(e["file"]["path"], static_program.to_str().unwrap());
    let interpreters = ev.matching(source(static_pid, "exec_interpreter"));
    assert!(
        interpreters.is_empty(),
        "a static program has no interpreter: {interpreters:?}"
    );
    ev.stop();
}

/// Removes the test's files, then the directory when the test created it, even when the test
/// fails.
struct RemoveOnDrop(Vec<PathBuf>, Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
        if let Some(dir) = &self.1 {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// A write open, a rename and an unlink in /etc/ld.so.conf.d (a watched directory), by this
/// process. The name does not end in `.conf`: ld.so.conf's include never reads it.
/// /etc/ld.so.preload as ssh's loader read it (the file's inode and size, the names in the
/// loader's copy, its comment gone), and the library it named, mapped while the loader held
/// the list: flagged, and reported both times though a root-owned file is reported once.
#[test]
fn preload_list_as_the_loader_read_it() {
    let dir = TempDir::new("chan-list");
    let lib = gcc(&dir, "read_hook.c", "liblist.so", true);
    let lib = lib.to_str().unwrap().to_owned();
    let ev = Events::start(&["--kind", "preload_list", "--kind", "mmap"]);
    let text = format!("# a comment\n{lib}:/nonexistent/detector-e2e-missing.so\n");
    let (inode, runs) = {
        let _list = Restore::path("/etc/ld.so.preload");
        std::fs::write("/etc/ld.so.preload", &text).unwrap();
        let inode = std::fs::metadata("/etc/ld.so.preload").unwrap().ino();
        let runs = [
            run(Command::new("ssh").arg("-V")).0,
            run(Command::new("ssh").arg("-V")).0,
        ];
        (inode, runs)
    };
    for pid in runs {
        let l = ev.expect("ssh's loader reading the list", |e| {
            pid_is(e, pid) && e["kind"] == "preload_list"
        });
        assert_eq!(l["comm"], "ssh");
        assert_eq!(l["file"]["inode"], inode, "{l}");
        assert_eq!(l["size"], text.len(), "{l}");
        assert_eq!(
            l["names"],
            json!([lib, "/nonexistent/detector-e2e-missing.so"]),
            "{l}"
        );
        assert_eq!(
            (&l["truncated"], &l["unread"]),
            (&json!(false), &json!(false))
        );
        let m = ev.expect("the listed library mapped while the list was held", |e| {
            pid_is(e, pid) && e["kind"] == "mmap" && e["file"]["path"] == lib.as_str()
        });
        assert_eq!(m["after_preload_list"], true, "{m}");
    }
    // What ssh maps after the loader let go of the list is not flagged.
    assert!(ev
        .matching(|e| pid_is(e, runs[0])
            && e["kind"] == "mmap"
            && e["after_preload_list"] == true
            && e["file"]["path"] != lib.as_str())
        .is_empty());
    ev.stop();
}

#[test]
fn file_change_open_rename_unlink_in_ld_so_conf_d() {
    let me = std::process::id();
    let dir = Path::new("/etc/ld.so.conf.d");
    // A minimal system (an initramfs) may lack it; it is watched when it exists at start.
    let created = (!dir.exists()).then(|| {
        std::fs::create_dir_all(dir).unwrap();
        dir.to_owned()
    });
    let a = dir.join(format!("zz-detector-e2e-chan-{me}"));
    let b = dir.join(format!("zz-detector-e2e-chan-{me}.renamed"));
    let _guard = RemoveOnDrop(vec![a.clone(), b.clone()], created);
    let (sa, sb) = (a.to_str().unwrap(), b.to_str().unwrap());
    let ev = Events::start(&["--kind", "file_change", "--pid", &me.to_string()]);
    let op = |op: &'static str| move |e: &Value| e["op"] == op;

    std::fs::write(&a, b"").unwrap();
    let e = ev.expect("a write open", op("open_write"));
    assert_eq!(e["paths"], json!([sa]));
    assert_eq!(e["pid"], me);
    assert_eq!(e["uid"], 0);

    std::fs::rename(&a, &b).unwrap();
    assert_eq!(
        ev.expect("a rename", op("rename"))["paths"],
        json!([sa, sb])
    );

    std::fs::remove_file(&b).unwrap();
    assert_eq!(ev.expect("an unlink", op("unlink"))["paths"], json!([sb]));

    assert!(
        ev.matching(|e| e["pid"] != me).is_empty(),
        "--pid {me} let other processes' events through"
    );
    ev.stop();
}

/// A child exiting with a known code (lifecycle channel); `--pid` names it before it exits.
#[test]
fn exit_code_of_a_child() {
    let mut child = Command::new("/bin/sh")
        .args(["-c", "read x; exit 7"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("start sh");
    let pid = child.id();
    let ev = Events::start(&["--kind", "exit", "--pid", &pid.to_string()]);
    drop(child.stdin.take()); // EOF: `read` returns, sh exits 7
    assert_eq!(child.wait().unwrap().code(), Some(7));
    let e = ev.expect("sh exiting 7", |e| pid_is(e, pid));
    assert_eq!(e["kind"], "exit");
    assert_eq!(e["exit_code"], 7 << 8, "wait status encoding");
    assert_eq!(e["tid"], pid);
    assert_eq!(e["uid"], 0);
    ev.stop();
}

/// `tamper MODE` (gcc-built) writes into a child it forks; returns (tamper's pid, the child's).
fn tamper(bin: &Path, mode: &str) -> (u32, u32) {
    let mut child = Command::new(bin)
        .arg(mode)
        .stdout(Stdio::piped())
        .spawn()
        .expect("run tamper");
    let pid = child.id();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let st = child.wait().unwrap();
    assert!(st.success(), "tamper {mode} failed: {st}");
    (pid, out.trim().parse().expect("the child's pid"))
}

#[test]
fn mem_tamper_ptrace_attach_and_poketext() {
    let dir = TempDir::new("chan-ptrace");
    let bin = gcc(&dir, "tamper.c", "tamper", false);
    let ev = Events::start(&["--kind", "mem_tamper"]);
    let (pid, target) = tamper(&bin, "ptrace");
    let req = |r: u64| move |e: &Value| pid_is(e, pid) && e["request"] == r;
    let e = ev.expect("PTRACE_ATTACH", req(16));
    assert_eq!(e["op"], "ptrace");
    assert_eq!(e["target_pid"], target);
    assert_eq!(e["comm"], "tamper");
    let e = ev.expect("PTRACE_POKETEXT", req(4));
    assert_eq!(e["op"], "ptrace");
    assert_eq!(e["target_pid"], target);
    assert_ne!(e["addr"], 0);
    ev.stop();
}

#[test]
fn mem_tamper_process_vm_writev() {
    let dir = TempDir::new("chan-vmwrite");
    let bin = gcc(&dir, "tamper.c", "tamper", false);
    let ev = Events::start(&["--kind", "mem_tamper"]);
    let (pid, target) = tamper(&bin, "vmwrite");
    let e = ev.expect("process_vm_writev", |e| pid_is(e, pid));
    assert_eq!(e["op"], "process_vm_writev");
    assert_eq!(e["target_pid"], target);
    assert_eq!(e["request"], 1, "one iovec");
    ev.stop();
}

/// Reported by the file_change program (an open), as a mem_tamper event.
#[test]
fn mem_tamper_proc_pid_mem() {
    let dir = TempDir::new("chan-procmem");
    let bin = gcc(&dir, "tamper.c", "tamper", false);
    let ev = Events::start(&["--kind", "mem_tamper"]);
    let (pid, target) = tamper(&bin, "procmem");
    let e = ev.expect("/proc/<pid>/mem opened for write", |e| pid_is(e, pid));
    assert_eq!(e["op"], "proc_mem");
    assert_eq!(e["target_pid"], target);
    ev.stop();
}

/// `memread MODE TARGET` (gcc-built) reads a process's memory; returns (memread's pid, the
/// target's pid, the bytes it read).
fn memread(bin: &Path, mode: &str, target: &str) -> (u32, u32, i64) {
    let mut child = Command::new(bin)
        .args([mode, target])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run memread");
    let pid = child.id();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let st = child.wait().unwrap();
    assert!(st.success(), "memread {mode} {target} failed: {st}");
    let mut lines = out
        .lines()
        .map(|l| l.trim().parse::<i64>().expect("a number"));
    let (target, bytes) = (lines.next().unwrap(), lines.next().unwrap());
    (pid, target as u32, bytes)
}

/// Reported by the file_change program (an open for reading), as a mem_read event.
#[test]
fn mem_read_proc_pid_mem() {
    let dir = TempDir::new("chan-memread-proc");
    let bin = gcc(&dir, "memread.c", "memread", false);
    let ev = Events::start(&["--kind", "mem_read"]);
    let (pid, target, bytes) = memread(&bin, "procmem", "child");
    assert!(bytes > 0);
    let e = ev.expect("/proc/<pid>/mem opened for reading", |e| pid_is(e, pid));
    assert_eq!(e["kind"], "mem_read");
    assert_eq!(e["op"], "proc_mem");
    assert_eq!(e["target_pid"], target);
    assert_eq!(e["comm"], "memread");
    assert_eq!(e["uid"], 0);
    assert_eq!(
        e["request"].as_u64().unwrap() & 0b11,
        0b01,
        "FMODE_READ only"
    );
    ev.stop();
}

#[test]
fn mem_read_process_vm_readv() {
    let dir = TempDir::new("chan-memread-vm");
    let bin = gcc(&dir, "memread.c", "memread", false);
    let ev = Events::start(&["--kind", "mem_read"]);
    let (pid, target, bytes) = memread(&bin, "vmread", "child");
    assert_eq!(bytes, 4096);
    let e = ev.expect("process_vm_readv", |e| pid_is(e, pid));
    assert_eq!(e["op"], "process_vm_readv");
    assert_eq!(e["target_pid"], target);
    assert_eq!(e["request"], 1, "one remote iovec");
    assert_eq!(e["bytes"], 4096);
    assert_ne!(e["addr"], 0);
    ev.stop();
}

/// Reported by the mem_tamper channel's ptrace program, as mem_read events: one per request.
#[test]
fn mem_read_ptrace_getregs_and_peekdata() {
    let dir = TempDir::new("chan-memread-ptrace");
    let bin = gcc(&dir, "memread.c", "memread", false);
    let ev = Events::start(&["--kind", "mem_read"]);
    let (pid, target, _) = memread(&bin, "ptrace", "child");
    let req = |r: u64| move |e: &Value| pid_is(e, pid) && e["request"] == r;
    let e = ev.expect("PTRACE_GETREGS", req(12));
    assert_eq!(e["op"], "ptrace");
    assert_eq!(e["target_pid"], target);
    let e = ev.expect("PTRACE_PEEKDATA", req(2));
    assert_eq!(e["target_pid"], target);
    assert_ne!(e["addr"], 0);
    // Repeats within a second are one event.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(ev.matching(req(2)).len(), 1, "64 PEEKDATA, one event");
    ev.stop();
}

/// The signal channel: SIGSTOP sent to `detector events` itself by a shell's `kill`, reported
/// with the sender, the pid it named, the signal and the system call (the record is queued at
/// the kill and written once the process is continued).
#[test]
fn signal_sent_to_the_daemon() {
    let ev = Events::start(&["--kind", "signal"]);
    let me = ev.pid();
    let (sh, st) = run(Command::new("sh").args(["-c", &format!("kill -STOP {me}")]));
    assert!(st.success());
    std::thread::sleep(std::time::Duration::from_millis(200));
    // SAFETY: plain system call.
    unsafe { libc::kill(me as i32, libc::SIGCONT) };
    let e = ev.expect("the SIGSTOP", |e| e["kind"] == "signal" && e["pid"] == sh);
    assert_eq!(e["target"], me, "{e}");
    assert_eq!(e["signal"], 19, "{e}");
    assert_eq!(e["syscall"], "kill", "{e}");
    assert_eq!(e["comm"], "sh", "{e}");
    ev.stop();
}
