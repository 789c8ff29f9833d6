//! Harness for detector's end-to-end tests: start the real daemon, run a real trigger, wait for
//! the real alert. Each test reads "trigger → expect alert".
use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

/// The binary under test: `DETECTOR_BIN` (set by `cargo xtask test`) or target/release/detector.
pub fn detector_bin() -> PathBuf {
    match std::env::var_os("DETECTOR_BIN") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/detector"),
    }
}

/// Test deadlines times `DETECTOR_TEST_TIME_SCALE` (default 1): under an emulated CPU (the VM
/// tests' TCG) everything runs several times slower, and a deadline is about liveness there,
/// not speed (speed is `cargo xtask bench`'s).
pub fn scaled(d: Duration) -> Duration {
    let k: u32 = std::env::var("DETECTOR_TEST_TIME_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&k| k >= 1)
        .unwrap_or(1);
    d * k
}

/// Root e2e tests need root; they fail (not skip) without it, since CI runs as root.
pub fn require_root() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "end-to-end tests load eBPF programs: run them as root (cargo xtask test does in CI)"
    );
}

/// A fresh directory under /tmp, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("detector-e2e-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// The file name of `source` compiled ahead of time into `$DETECTOR_FIXTURES`: read_hook.c as
/// a shared object is `read_hook.so`, exec_env.c as a program is `exec_env`.
pub fn prebuilt_fixture_name(source: &str, shared: bool) -> String {
    let stem = source.strip_suffix(".c").unwrap_or(source);
    if shared {
        format!("{stem}.so")
    } else {
        stem.to_owned()
    }
}

/// Compiles fixtures/`source` with gcc into `dir`/`out` (a shared object when `shared`). When
/// `DETECTOR_FIXTURES` names a directory (a machine without gcc, e.g. the VM tests' guest), copies
/// the output compiled there ahead of time with the same flags (see `prebuilt_fixture_name`).
pub fn gcc(dir: &TempDir, source: &str, out: &str, shared: bool) -> PathBuf {
    let dst = dir.path(out);
    if let Some(prebuilt) = std::env::var_os("DETECTOR_FIXTURES") {
        let src = Path::new(&prebuilt).join(prebuilt_fixture_name(source, shared));
        std::fs::copy(&src, &dst).unwrap_or_else(|e| {
            panic!(
                "prebuilt fixture {} (DETECTOR_FIXTURES): {e}",
                src.display()
            )
        });
        return dst;
    }
    let mut cmd = Command::new("gcc");
    if shared {
        cmd.args(["-shared", "-fPIC"]);
    }
    let st = cmd
        .arg("-o")
        .arg(&dst)
        .arg(fixture(source))
        .arg("-ldl")
        .status()
        .expect("run gcc");
    assert!(st.success(), "gcc {source} failed");
    dst
}

/// Where this test's daemon output is saved when `DETECTOR_ALERTS_DIR` names a directory:
/// `<dir>/<test binary>__<test name>.jsonl`, appended, after a line `{"e2e":{"pid":N}}`
/// naming the test process (the SIEM content's tests read it).
pub fn saved_alerts_path() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("DETECTOR_ALERTS_DIR")?);
    let exe = std::env::current_exe().ok()?;
    let stem = exe.file_stem()?.to_string_lossy().into_owned();
    // cargo names test binaries `<name>-<hash>`.
    let binary = stem
        .rsplit_once('-')
        .map_or(stem.as_str(), |(b, _)| b)
        .to_owned();
    let test = thread::current()
        .name()
        .unwrap_or("main")
        .replace("::", "__");
    Some(dir.join(format!("{binary}__{test}.jsonl")))
}

fn saved_alerts() -> Option<std::fs::File> {
    let path = saved_alerts_path()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .unwrap_or_else(|e| panic!("DETECTOR_ALERTS_DIR {}: {e}", dir.display()));
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // A first line that is not an alert: the test process, whose descendants the triggers are.
    use std::io::Write as _;
    writeln!(
        f,
        "{}",
        serde_json::json!({"e2e": {"pid": std::process::id()}})
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Some(f)
}

/// How long a stopping daemon may take. Most of it is the kernel's: the daemon detaches its
/// links one after the other, each waiting for an RCU grace period (measured here: 25 links in
/// about 0.5 s on a loaded host).
pub const STOP_DEADLINE: Duration = Duration::from_secs(2);

/// One daemon at a time per test binary: each detach of a tracepoint takes the kernel's
/// event_mutex and waits for an RCU grace period, so daemons stopping together would slow
/// each other past the stop deadline the tests check.
static ONE_DAEMON: Mutex<()> = Mutex::new(());

pub struct Daemon {
    child: Child,
    _one: std::sync::MutexGuard<'static, ()>,
    alerts: Arc<Mutex<Vec<Value>>>,
    /// stdout lines, as written (with `--format text`, the only record).
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    _dir: TempDir,
}

impl Daemon {
    /// Starts `detector run` and waits until it says it is armed (the ready file).
    pub fn start() -> Daemon {
        Self::start_with(&[])
    }

    /// `detector run` with extra flags.
    pub fn start_with(extra: &[&str]) -> Daemon {
        Self::start_env(extra, &[])
    }

    /// `detector run` with extra flags and environment variables.
    pub fn start_env(extra: &[&str], envs: &[(&str, &std::ffi::OsStr)]) -> Daemon {
        Self::spawn(&detector_bin(), "run", extra, envs)
    }

    /// `detector run` with extra flags, from the binary at `bin` (a copy a test may replace).
    pub fn start_program(bin: &Path, extra: &[&str]) -> Daemon {
        Self::spawn(bin, "run", extra, &[])
    }

    /// `detector SUBCOMMAND --ready-file ... EXTRA...`, once it is armed; each stdout line is
    /// parsed as JSON unless `--format text` is among the flags.
    fn spawn(
        bin: &Path,
        subcommand: &str,
        extra: &[&str],
        envs: &[(&str, &std::ffi::OsStr)],
    ) -> Daemon {
        require_root();
        let one = ONE_DAEMON.lock().unwrap_or_else(|e| e.into_inner());
        let dir = TempDir::new("daemon");
        let ready = dir.path("ready");
        let mut child = Command::new(bin)
            .arg(subcommand)
            .arg("--ready-file")
            .arg(&ready)
            .args(extra)
            .envs(envs.iter().map(|(k, v)| (*k, *v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let alerts = Arc::new(Mutex::new(Vec::new()));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().unwrap();
        let (a, l) = (alerts.clone(), lines.clone());
        let text = extra.windows(2).any(|w| w == ["--format", "text"]);
        let mut saved = (subcommand == "run" && !text).then(saved_alerts).flatten();
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if !text {
                    let v: Value = serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
                    a.lock().unwrap().push(v);
                }
                if let Some(f) = saved.as_mut() {
                    use std::io::Write as _;
                    let _ = writeln!(f, "{line}");
                }
                l.lock().unwrap().push(line);
            }
        });
        let err = child.stderr.take().unwrap();
        let s = stderr.clone();
        thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = s.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let deadline = Instant::now() + scaled(Duration::from_secs(30));
        while !ready.exists() {
            if let Some(st) = child.try_wait().unwrap() {
                thread::sleep(Duration::from_millis(100));
                panic!(
                    "detector exited with {st} before it was armed:\n{}",
                    stderr.lock().unwrap()
                );
            }
            assert!(Instant::now() < deadline, "detector not armed after 30 s");
            thread::sleep(Duration::from_millis(20));
        }
        Daemon {
            child,
            _one: one,
            alerts,
            lines,
            stderr,
            _dir: dir,
        }
    }

    /// Waits up to 10 s for an alert matching `pred`; panics with every alert seen otherwise.
    pub fn expect_alert(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.expect_record("alert", what, pred)
    }

    /// Waits up to 10 s for a stdout record matching `pred`; panics with every one seen otherwise.
    fn expect_record(&self, record: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + scaled(Duration::from_secs(10));
        loop {
            if let Some(v) = self.alerts.lock().unwrap().iter().find(|v| pred(v)) {
                return v.clone();
            }
            if Instant::now() > deadline {
                panic!(
                    "no {record} for {what} within 10 s; {record}s seen:\n{:#?}\ndetector stderr:\n{}",
                    self.alerts.lock().unwrap(),
                    self.stderr.lock().unwrap()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to 10 s for a stdout line matching `pred` (for `--format text`).
    pub fn expect_line(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + scaled(Duration::from_secs(10));
        loop {
            if let Some(l) = self.lines.lock().unwrap().iter().find(|l| pred(l)) {
                return l.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no line for {what} within 10 s; stdout:\n{}\nstderr:\n{}",
                self.lines.lock().unwrap().join("\n"),
                self.stderr.lock().unwrap()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every alert so far that matches `pred`.
    pub fn alerts_matching(&self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.alerts
            .lock()
            .unwrap()
            .iter()
            .filter(|v| pred(v))
            .cloned()
            .collect()
    }

    /// Everything the daemon wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the daemon (SIGSTOP) until the guard is dropped (SIGCONT): as busy as a daemon can
    /// be, it reads nothing and looks at no file meanwhile; the kernel's events wait in the
    /// ring buffer. Returns once the daemon is stopped.
    pub fn freeze(&self) -> Frozen {
        let pid = self.pid();
        unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
        let frozen = Frozen(pid);
        let deadline = Instant::now() + scaled(Duration::from_secs(5));
        // /proc/<pid>/stat: "pid (comm) STATE ...".
        while !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|st| {
            st.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('T'))
        }) {
            assert!(Instant::now() < deadline, "the daemon did not stop");
            thread::sleep(Duration::from_millis(2));
        }
        frozen
    }

    /// SIGTERM; asserts a clean exit (0) within `STOP_DEADLINE`. Returns stderr.
    pub fn stop(mut self) -> String {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let t = Instant::now();
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            assert!(
                t.elapsed() < scaled(STOP_DEADLINE),
                "detector still running {STOP_DEADLINE:?} after SIGTERM"
            );
            thread::sleep(Duration::from_millis(10));
        };
        thread::sleep(Duration::from_millis(50));
        let stderr = self.stderr.lock().unwrap().clone();
        assert_eq!(
            status.code(),
            Some(0),
            "detector exit status after SIGTERM; stderr:\n{stderr}"
        );
        stderr
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A stopped daemon (`Daemon::freeze`), continued (SIGCONT) when dropped, even when the test
/// panics.
pub struct Frozen(u32);

impl Drop for Frozen {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0 as i32, libc::SIGCONT) };
    }
}

/// `detector events`: the capture and the decoder alone; each stdout line is one decoded event
/// (`kind`, the header's `pid`, `ppid`, `uid`, `comm`..., the kind's fields).
pub struct Events(Daemon);

impl Events {
    /// Starts `detector events FLAGS...` (`--kind`, `--pid`) and waits until it is armed.
    pub fn start(flags: &[&str]) -> Events {
        Events(Daemon::spawn(&detector_bin(), "events", flags, &[]))
    }

    /// Waits up to 10 s for an event matching `pred`; panics with every event seen otherwise.
    pub fn expect(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.0.expect_record("event", what, pred)
    }

    /// Every event so far that matches `pred`.
    pub fn matching(&self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.0.alerts_matching(pred)
    }

    /// SIGTERM; asserts a clean exit (0) within `STOP_DEADLINE`. Returns stderr.
    pub fn stop(self) -> String {
        self.0.stop()
    }

    pub fn pid(&self) -> u32 {
        self.0.pid()
    }
}

/// An alert's severity as a number: info 0, low 1, medium 2, high 3, critical 4; 0 for a record
/// that is no alert (the stats record, `event.kind` metric, every `stats_interval_secs`).
pub fn severity_rank(a: &Value) -> u8 {
    if a["event"]["kind"] == "metric" {
        return 0;
    }
    match s(a, "severity") {
        "info" => 0,
        "low" => 1,
        "medium" => 2,
        "high" => 3,
        "critical" => 4,
        other => panic!("bad severity {other}"),
    }
}

/// Runs a trigger to completion and returns its pid (that of its events and alerts).
pub fn trigger_pid(cmd: &mut Command) -> u32 {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("trigger {cmd:?}: {e}"));
    let pid = child.id();
    child.wait().expect("wait for the trigger");
    pid
}

/// Runs a trigger to completion and returns its status.
pub fn trigger(cmd: &mut Command) -> std::process::ExitStatus {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("trigger {cmd:?}: {e}"))
}

/// Field accessors that read like the alert schema.
pub fn s<'a>(v: &'a Value, path: &str) -> &'a str {
    path.split('.').fold(v, |v, k| &v[k]).as_str().unwrap_or("")
}

/// True when the array at the dotted `array` path holds `item`.
pub fn has(v: &Value, array: &str, item: &str) -> bool {
    array
        .split('.')
        .fold(v, |v, k| &v[k])
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == item))
}

/// A process that has `lib` loaded (by `mode`, see loadlib.c) and waits; killed on drop.
pub struct Holder(pub Child);

impl Holder {
    pub fn start(loadlib: &Path, mode: &str, lib: &Path, preload: Option<&Path>) -> Holder {
        let mut cmd = Command::new(loadlib);
        cmd.arg(mode)
            .arg(lib)
            .env("LOADLIB_WAIT", "1")
            .stdout(Stdio::piped());
        if let Some(p) = preload {
            cmd.env("LD_PRELOAD", p);
        }
        let mut child = cmd.spawn().expect("start loadlib");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "loaded", "loadlib {mode} did not load {lib:?}");
        Holder(child)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What a path was before a test changed it.
enum Was {
    Absent,
    File {
        bytes: Vec<u8>,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Link(PathBuf),
}

/// Puts a path under /etc or /usr back as it was — a file's bytes, mode and owner, a symbolic
/// link's target, or nothing — when dropped, even when the test panics. A file is put back by
/// writing a sibling and renaming it over the path, so that processes that have the file
/// mapped keep their pages. Commands given to `then_run` (e.g. `ldconfig`) run after.
pub struct Restore {
    path: PathBuf,
    was: Was,
    then: Vec<Vec<String>>,
}

impl Restore {
    pub fn path(path: impl AsRef<Path>) -> Restore {
        use std::os::unix::fs::MetadataExt as _;
        let path = path.as_ref().to_owned();
        let was = match std::fs::symlink_metadata(&path) {
            Err(_) => Was::Absent,
            Ok(m) if m.file_type().is_symlink() => {
                Was::Link(std::fs::read_link(&path).expect("read the link"))
            }
            Ok(m) => Was::File {
                bytes: std::fs::read(&path).expect("read the file"),
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
            },
        };
        Restore {
            path,
            was,
            then: Vec::new(),
        }
    }

    /// A command to run after the path is restored.
    pub fn then_run(mut self, argv: &[&str]) -> Restore {
        self.then.push(argv.iter().map(|a| a.to_string()).collect());
        self
    }

    fn put_back(&self) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        let side = {
            let mut name = self.path.file_name().unwrap_or_default().to_owned();
            name.push(format!(".detector-restore-{}", std::process::id()));
            self.path.with_file_name(name)
        };
        let _ = std::fs::remove_file(&side);
        match &self.was {
            Was::Absent => match std::fs::symlink_metadata(&self.path) {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(&self.path),
                Ok(_) => std::fs::remove_file(&self.path),
                Err(_) => Ok(()),
            },
            Was::Link(target) => {
                std::os::unix::fs::symlink(target, &side)?;
                std::fs::rename(&side, &self.path)
            }
            Was::File {
                bytes,
                mode,
                uid,
                gid,
            } => {
                std::fs::write(&side, bytes)?;
                std::os::unix::fs::chown(&side, Some(*uid), Some(*gid))?;
                std::fs::set_permissions(&side, std::fs::Permissions::from_mode(*mode))?;
                std::fs::rename(&side, &self.path)
            }
        }
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        if let Err(e) = self.put_back() {
            eprintln!("could not restore {}: {e}", self.path.display());
        }
        for argv in &self.then {
            let _ = Command::new(&argv[0]).args(&argv[1..]).status();
        }
    }
}

/// The system's dynamic loader, the file `/lib64/ld-linux-x86-64.so.2` leads to.
pub fn system_loader() -> PathBuf {
    std::fs::canonicalize("/lib64/ld-linux-x86-64.so.2").expect("the system loader")
}

/// The loader's path as programs name it in their PT_INTERP.
pub const INTERP: &str = "/lib64/ld-linux-x86-64.so.2";

/// `bytes` with every NUL-terminated occurrence of `old` replaced by `new`, which must be as
/// long (an ELF's strings cannot move): a program's PT_INTERP, a loader's built-in preload
/// file. Panics when `old` does not occur.
pub fn rewrite_string(bytes: &[u8], old: &str, new: &str) -> Vec<u8> {
    assert_eq!(old.len(), new.len(), "{new} must be as long as {old}");
    let needle: Vec<u8> = old.bytes().chain([0]).collect();
    let mut out = bytes.to_vec();
    let mut found = 0;
    let mut i = 0;
    while i + needle.len() <= out.len() {
        if out[i..i + needle.len()] == needle[..] {
            out[i..i + old.len()].copy_from_slice(new.as_bytes());
            found += 1;
            i += needle.len();
        } else {
            i += 1;
        }
    }
    assert!(found > 0, "{old} not found");
    out
}

/// Writes `bytes` to `path`, root-owned, mode 0755.
pub fn write_program(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod 0755");
}

/// `apt-get install --reinstall -y` of `packages` from Debian's mirror, non-interactive,
/// waiting up to 10 minutes for dpkg's lock; panics with apt's output when it fails.
pub fn apt_reinstall(packages: &[&str]) {
    let out = Command::new("apt-get")
        .args([
            "-o",
            "DPkg::Lock::Timeout=600",
            "install",
            "--reinstall",
            "-y",
        ])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .expect("run apt-get");
    assert!(
        out.status.success(),
        "apt-get failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
