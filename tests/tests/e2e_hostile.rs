//! Root end-to-end: names an attacker chooses (newlines, tabs, quotes, backslashes, bytes that
//! are not UTF-8, long paths) keep every output line one JSON object, show escaped in the text
//! view, and give back their exact bytes: in a name, `\xNN` is a byte that is not UTF-8 and `\\`
//! a backslash (README, "Names").
use std::{
    ffi::OsStr,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use detector_tests::{gcc, s, trigger, Daemon, TempDir};

/// The bytes an alert's name stands for: the README's rule, written out independently of the
/// daemon's code.
fn name_bytes(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let (mut out, mut i) = (Vec::new(), 0);
    while i < b.len() {
        match (b[i], b.get(i + 1)) {
            (b'\\', Some(b'\\')) => {
                out.push(b'\\');
                i += 2;
            }
            (b'\\', Some(b'x')) => {
                let hex = std::str::from_utf8(&b[i + 2..i + 4]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// A copy of the read() hook under a hostile directory and name (no space or colon: the
/// loader splits LD_PRELOAD there); returns its path.
fn hostile_library(dir: &TempDir) -> PathBuf {
    let lib = gcc(dir, "read_hook.c", "libplain.so", true);
    // A long directory (a 255-byte component, the most a name may have) holding a hostile name.
    let long = dir.0.join("d".repeat(255));
    std::fs::create_dir_all(&long).unwrap();
    let mut name = b"lib\nnew\tline\"quote'\\back\xff\xfe-".to_vec();
    name.extend_from_slice("ünï".as_bytes());
    name.extend_from_slice(b".so");
    let hostile = long.join(OsStr::from_bytes(&name));
    std::fs::copy(&lib, &hostile).unwrap();
    hostile
}

#[test]
fn a_hostile_library_name_is_one_json_line_with_its_exact_bytes() {
    let dir = TempDir::new("hostile");
    let lib = hostile_library(&dir);
    let arg: &OsStr = OsStr::from_bytes(b"arg\nwith\ttab\\and\x80byte");
    let d = Daemon::start();
    trigger(
        Command::new("cat")
            .arg("/etc/hostname")
            .arg(arg)
            .env("LD_PRELOAD", &lib),
    );
    // Every stdout line parsed as one JSON object (the harness fails otherwise), and this one:
    let a = d.expect_alert("the hostile library in cat", |a| {
        s(a, "process.name") == "cat" && s(a, "library.path").contains("new")
    });
    let path = s(&a, "library.path");
    assert_eq!(name_bytes(path), lib.as_os_str().as_bytes(), "{path}");
    // The daemon read the file by those bytes: its hooks and hash are there.
    assert!(s(&a, "library.hash.sha256").len() == 64, "{a}");
    assert!(
        a["library"]["hooks"]
            .as_array()
            .is_some_and(|h| h.iter().any(|x| x == "read")),
        "{a}"
    );
    let cmdline = s(&a, "process.command_line");
    let mut expected = b"cat /etc/hostname ".to_vec();
    expected.extend_from_slice(arg.as_bytes());
    assert_eq!(name_bytes(cmdline), expected, "{cmdline}");
    d.stop();
}

#[test]
fn the_text_view_shows_control_characters_escaped() {
    let dir = TempDir::new("hostile-text");
    let lib = hostile_library(&dir);
    let d = Daemon::start_with(&["--format", "text"]);
    trigger(
        Command::new("cat")
            .arg("/etc/hostname")
            .env("LD_PRELOAD", &lib),
    );
    let line = d.expect_line("the hostile library in cat", |l| {
        l.contains("cat[") && l.contains("lib\\nnew\\tline")
    });
    assert!(line.contains("\\xff\\xfe-ünï.so"), "{line}");
    assert!(!line.contains('\t') && !line.contains('\n'), "{line:?}");
    d.stop();
}

/// The benign twin: an ordinary name is shown exactly as it is, with nothing escaped.
#[test]
fn an_ordinary_name_is_unchanged() {
    let dir = TempDir::new("plain-name");
    let lib = gcc(&dir, "read_hook.c", "libünï-plain.so", true);
    let d = Daemon::start();
    trigger(
        Command::new("cat")
            .arg("/etc/hostname")
            .env("LD_PRELOAD", &lib),
    );
    let a = d.expect_alert("the plain library in cat", |a| {
        s(a, "process.name") == "cat" && s(a, "library.path").ends_with("-plain.so")
    });
    assert_eq!(Path::new(s(&a, "library.path")), lib);
    d.stop();
}

/// The same name found by `detector scan` in a running process's maps (where the kernel shows a
/// newline as `\012`).
#[test]
fn scan_reads_a_hostile_name_from_a_running_process() {
    let dir = TempDir::new("hostile-scan");
    let lib = hostile_library(&dir);
    let mut sleeper = Command::new("sleep")
        .arg("30")
        .env("LD_PRELOAD", &lib)
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = Command::new(detector_tests::detector_bin())
        .args(["--log-level", "error", "scan", "--json", "--pid"])
        .arg(sleeper.id().to_string())
        .output()
        .unwrap();
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let text = String::from_utf8(out.stdout).expect("UTF-8 JSON lines");
    let found: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let mapped = found
        .iter()
        .filter(|a| s(a, "library.path").contains("new"))
        .map(|a| name_bytes(s(a, "library.path")))
        .collect::<Vec<_>>();
    assert!(
        mapped.iter().any(|b| b == lib.as_os_str().as_bytes()),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
