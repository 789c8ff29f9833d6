//! dpkg's database: `status`, `diversions` and a package's `.list`, `.md5sums` and
//! `.conffiles`, read as the provenance reader reads them, under a root of the target's own
//! (in /dev/shm). The input is those five files, separated by NUL bytes; three files of the
//! root are then asked about: a library, a configuration file and a merged-/usr alias. The root
//! is made in `$DETECTOR_FUZZ_DIR` (`cargo xtask fuzz` sets it and removes it), else /dev/shm.
#![no_main]
use std::{fs, path::PathBuf, sync::OnceLock};

use detector::engine::provenance::{dpkg::Dpkg, PackageDb as _};
use libfuzzer_sys::fuzz_target;

const PACKAGE: &str = "libx:amd64";

fn root() -> &'static PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let base = match std::env::var_os("DETECTOR_FUZZ_DIR") {
            Some(d) => PathBuf::from(d),
            None if std::path::Path::new("/dev/shm").is_dir() => PathBuf::from("/dev/shm"),
            None => std::env::temp_dir(),
        };
        let root = base.join(format!("detector-fuzz-dpkg-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for d in ["var/lib/dpkg/info", "usr/lib", "etc"] {
            fs::create_dir_all(root.join(d)).expect("fuzz root");
        }
        fs::write(root.join("usr/lib/libx.so.1"), b"\x7fELF library bytes").expect("fuzz root");
        fs::write(root.join("etc/x.conf"), b"setting = 1\n").expect("fuzz root");
        let _ = std::os::unix::fs::symlink("usr/lib", root.join("lib"));
        root
    })
}

fuzz_target!(|data: &[u8]| {
    let root = root();
    let mut parts = data.splitn(5, |&b| b == 0);
    let admin = root.join("var/lib/dpkg");
    let files = [
        admin.join("status"),
        admin.join("diversions"),
        admin.join(format!("info/{PACKAGE}.list")),
        admin.join(format!("info/{PACKAGE}.md5sums")),
        admin.join(format!("info/{PACKAGE}.conffiles")),
    ];
    for f in &files {
        fs::write(f, parts.next().unwrap_or_default()).expect("fuzz root");
    }
    let db = Dpkg::new(root);
    for p in ["usr/lib/libx.so.1", "etc/x.conf", "lib/libx.so.1"] {
        let _ = db.provenance(&root.join(p));
    }
});
