//! What the watched places held, kept in memory so that a change can be told from what was
//! there before it: the lines of the text configuration files, the targets of the symbolic
//! links in the library, loader and PAM module directories, and which names existed. Taken at
//! start, and updated after each change. Bounded: past its limits a file or a name is not
//! kept, and a change to it says so.
use std::{
    collections::{HashMap, HashSet},
    fs,
    io::Read as _,
    os::unix::fs::OpenOptionsExt as _,
    path::Path,
};

use super::places::{Watched, TEXT_DIRS, TEXT_FILES};

/// Bytes of one text file kept at most.
pub const TEXT_FILE_MAX: u64 = 64 * 1024;
/// Text files kept at most.
const TEXT_FILES_MAX: usize = 512;
/// Names (and symbolic links) kept at most.
const NAMES_MAX: usize = 200_000;

/// A text file's lines, or why they are not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Text {
    Lines(Vec<String>),
    Unkept(String),
}

#[derive(Debug, Default)]
pub struct Snapshot {
    texts: HashMap<String, Text>,
    links: HashMap<String, String>,
    names: HashSet<String>,
}

/// Opens a regular file for reading; anything else (a FIFO, a device: opening or reading one
/// could wait forever) is an error.
pub fn open_regular(path: &Path) -> std::io::Result<fs::File> {
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    if !f.metadata()?.file_type().is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(f)
}

/// The file's lines (`None`: it does not exist), or why they cannot be read.
pub fn read_text(path: &str) -> Result<Option<Vec<String>>, String> {
    let f = match open_regular(Path::new(path)) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read the file: {e}")),
    };
    let mut buf = Vec::new();
    f.take(TEXT_FILE_MAX + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read the file: {e}"))?;
    if buf.len() as u64 > TEXT_FILE_MAX {
        return Err(format!("the file is over {TEXT_FILE_MAX} bytes"));
    }
    Ok(Some(
        String::from_utf8_lossy(&buf)
            .lines()
            .map(str::to_owned)
            .collect(),
    ))
}

impl Snapshot {
    pub fn take(watched: &Watched) -> Self {
        let mut s = Snapshot::default();
        let mut texts: Vec<String> = TEXT_FILES.iter().map(|f| (*f).to_owned()).collect();
        for d in TEXT_DIRS {
            texts.extend(entries(d));
        }
        for t in texts {
            match read_text(&t) {
                Ok(Some(lines)) => {
                    s.set_text(&t, Some(Text::Lines(lines)));
                    s.set_known(&t, true);
                }
                Ok(None) => {}
                Err(why) => {
                    s.set_text(&t, Some(Text::Unkept(why)));
                    s.set_known(&t, true);
                }
            }
        }
        let mut dirs: Vec<&String> = watched
            .library_dirs
            .iter()
            .chain(&watched.pam_module_dirs)
            .collect();
        dirs.dedup();
        for d in dirs {
            for p in entries(d) {
                if let Ok(target) = fs::read_link(&p) {
                    s.set_link(&p, Some(target.display().to_string()));
                }
                s.set_known(&p, true);
            }
        }
        s
    }

    pub fn text(&self, path: &str) -> Option<&Text> {
        self.texts.get(path)
    }

    /// Keeps (or forgets, with `None`) a text file's lines.
    pub fn set_text(&mut self, path: &str, text: Option<Text>) {
        match text {
            Some(t) if self.texts.len() < TEXT_FILES_MAX || self.texts.contains_key(path) => {
                self.texts.insert(path.to_owned(), t);
            }
            Some(_) => {
                self.texts.insert(
                    path.to_owned(),
                    Text::Unkept(format!("over {TEXT_FILES_MAX} text files are watched")),
                );
            }
            None => {
                self.texts.remove(path);
            }
        }
    }

    pub fn link(&self, path: &str) -> Option<&String> {
        self.links.get(path)
    }

    pub fn set_link(&mut self, path: &str, target: Option<String>) {
        match target {
            Some(t) if self.links.len() < NAMES_MAX || self.links.contains_key(path) => {
                self.links.insert(path.to_owned(), t);
            }
            Some(_) => {}
            None => {
                self.links.remove(path);
            }
        }
    }

    /// Whether the name existed when last looked at.
    pub fn known(&self, path: &str) -> bool {
        self.names.contains(path)
    }

    pub fn set_known(&mut self, path: &str, exists: bool) {
        if !exists {
            self.names.remove(path);
        } else if self.names.len() < NAMES_MAX {
            self.names.insert(path.to_owned());
        }
    }
}

/// The paths of a directory's entries (none when it cannot be read).
fn entries(dir: &str) -> Vec<String> {
    let Ok(rd) = fs::read_dir(Path::new(dir)) else {
        return Vec::new();
    };
    rd.flatten()
        .map(|e| e.path().display().to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_is_not_read_and_a_missing_file_is_none() {
        let dir = std::env::temp_dir().join(format!("detector-snapshot-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(read_text(fifo.to_str().unwrap()).is_err());
        assert_eq!(read_text(dir.join("none").to_str().unwrap()), Ok(None));
        let text = dir.join("text");
        fs::write(&text, "a\nb\n").unwrap();
        assert_eq!(
            read_text(text.to_str().unwrap()),
            Ok(Some(vec!["a".into(), "b".into()]))
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
