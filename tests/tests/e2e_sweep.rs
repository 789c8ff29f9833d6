//! Root end-to-end: what was loaded before the daemon started is found by its /proc sweep at
//! start and alerted on (`event.dataset` = `detector.sweep`) with the process's pid.
use std::path::Path;

use detector_tests::{gcc, has, s, Daemon, Holder, TempDir};

#[test]
fn preload_and_memfd_loaded_before_start_are_found_at_start() {
    let dir = TempDir::new("sweep");
    let hook = gcc(&dir, "read_hook.c", "libsweephook.so", true);
    let payload = gcc(&dir, "read_hook.c", "libsweepmemfd.so", true);
    let loadlib = gcc(&dir, "loadlib.c", "loadlib", false);
    let preloaded = Holder::start(&loadlib, "path", Path::new("libm.so.6"), Some(&hook));
    let memfd = Holder::start(&loadlib, "memfd", &payload, None);
    let d = Daemon::start();
    let a = d.expect_alert(
        "the LD_PRELOAD of a process started before the daemon",
        |a| {
            a["process"]["pid"] == preloaded.0.id()
                && s(a, "library.path") == hook.to_str().unwrap()
        },
    );
    assert_eq!(s(&a, "event.dataset"), "detector.sweep");
    assert!(has(&a, "detections", "preload_env") && has(&a, "detections", "credential_hooks"));
    assert_eq!(a["library"]["hooks"], serde_json::json!(["read"]));
    let a = d.expect_alert("a memfd library mapped before the daemon", |a| {
        a["process"]["pid"] == memfd.0.id() && s(a, "library.path").starts_with("/memfd:payload")
    });
    assert_eq!(s(&a, "event.dataset"), "detector.sweep");
    assert!(has(&a, "library.unsafe_reasons", "memfd"), "{a}");
    // Read through /proc/<pid>/map_files although it has no path: hashed, hooks found.
    assert_eq!(s(&a, "library.hash.sha256").len(), 64, "{a}");
    assert_eq!(a["library"]["hooks"], serde_json::json!(["read"]));
    d.stop();
}
