//! `/proc/<pid>/status`: a writer's name, parent, uid and gid (the fanotify path). A process
//! chooses its name (`Name:`), which may hold any byte but NUL and newline.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut hdr = detector::capture::decode::Header::default();
    detector::capture::fanotify::status_fields(&mut hdr, &text);
});
