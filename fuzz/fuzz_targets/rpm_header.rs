//! rpm's package header (the `blob` of `rpmdb.sqlite`'s `Packages` table): every tag the reader
//! asks for, as strings and numbers, from any bytes.
#![no_main]
use detector::engine::provenance::rpm::header::{self, Header};
use libfuzzer_sys::fuzz_target;

const TAGS: &[u32] = &[
    header::NAME,
    header::VERSION,
    header::RELEASE,
    header::ARCH,
    header::FILESTATES,
    header::FILEMODES,
    header::FILEDIGESTS,
    header::FILELINKTOS,
    header::FILEFLAGS,
    header::DIRINDEXES,
    header::BASENAMES,
    header::DIRNAMES,
    header::FILEDIGESTALGO,
];

fuzz_target!(|data: &[u8]| {
    let Ok(h) = Header::parse(data) else {
        return;
    };
    for &tag in TAGS {
        let _ = h.string(tag);
        let _ = h.strings(tag);
        let _ = h.numbers(tag);
    }
});
