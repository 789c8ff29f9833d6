//! Decoding: raw ring-buffer records into owned, typed events. Never panics on bad input.
use std::mem::size_of;

use super::names;

use detector_common::{
    EventHeader, EventKind, ExecEvent, ExitEvent, FileChangeEvent, FileInfo, LoaderEnvEvent,
    LoaderVar, MemReadEvent, MemTamperEvent, MmapEvent, PreloadListEvent, SignalEvent,
    EXEC_ARGS_TRUNCATED, EXEC_ENV_INCOMPLETE, EXEC_FILENAME_TRUNCATED, FILE_OP_LINK,
    FILE_OP_OPEN_WRITE, FILE_OP_RENAME, FILE_OP_SYMLINK, FILE_OP_TRUNCATE, FILE_OP_UNLINK,
    HUGETLBFS_MAGIC, LOADER_VALUE_TRUNCATED, MMAP_AFTER_PRELOAD_LIST, MMAP_PREVENT_AUDIT,
    MMAP_PREVENT_DENIED, MMAP_PREVENT_DIR, MMAP_PREVENT_FACTS, MMAP_PREVENT_KILLED,
    MMAP_PREVENT_LISTED, MMAP_SOURCE_EXEC_INTERPRETER, MMAP_SOURCE_EXEC_PROGRAM, MMAP_SOURCE_MMAP,
    MMAP_SOURCE_MPROTECT, OVERLAYFS_MAGIC, PATH_TRUNCATED, PRELOAD_LIST_MAX,
    PRELOAD_LIST_TRUNCATED, PRELOAD_LIST_UNREAD, RAMFS_MAGIC, READ_COREDUMP_FILTER,
    READ_DUMP_SIGNAL, READ_PROCESS_VM_READV, READ_PROC_ENVIRON, READ_PROC_MEM, READ_PTRACE,
    ROOTED_ELSEWHERE, TAMPER_PROCESS_VM_WRITEV, TAMPER_PROC_MEM, TAMPER_PTRACE, TMPFS_MAGIC,
};

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Header {
    pub ktime_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub comm: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Exec {
    #[serde(flatten)]
    pub hdr: Header,
    pub filename: String,
    pub filename_truncated: bool,
    pub argc: u32,
    pub argv: Vec<String>,
    pub args_truncated: bool,
    pub envc: u32,
    pub env_incomplete: bool,
    /// Bit `1 << LoaderVar` for each loader variable that follows in a [`LoaderEnv`].
    pub loader_vars: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LoaderEnv {
    #[serde(flatten)]
    pub hdr: Header,
    #[serde(serialize_with = "json::loader_var")]
    pub var: LoaderVar,
    pub occurrences: u32,
    pub index: u32,
    pub value_len: u32,
    /// The value's start (all of it unless `truncated`).
    pub head: String,
    /// When `truncated`: the value's last bytes.
    pub tail: String,
    pub truncated: bool,
}

/// A file as the kernel saw it when it was used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub path: String,
    pub path_truncated: bool,
    pub info: FileInfo,
}

impl File {
    pub fn fs(&self) -> &'static str {
        match self.info.fs_magic {
            TMPFS_MAGIC => "tmpfs",
            RAMFS_MAGIC => "ramfs",
            HUGETLBFS_MAGIC => "hugetlbfs",
            OVERLAYFS_MAGIC => "overlay",
            0xef53 => "ext4",
            0x5846_5342 => "xfs",
            0x9123_683e => "btrfs",
            0x7371_7368 => "squashfs",
            _ => "other",
        }
    }
    /// A memfd: an unlinked tmpfs/hugetlbfs file named `memfd:...`.
    pub fn is_memfd(&self) -> bool {
        self.path.starts_with("/memfd:") && self.info.nlink == 0
    }
    /// Unlinked since it was opened (and not a memfd).
    pub fn is_deleted(&self) -> bool {
        self.info.nlink == 0 && !self.is_memfd()
    }
}

/// How a file came to be mapped executable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MmapSource {
    Mmap,
    Mprotect,
    /// The program's own executable, mapped by the kernel at exec.
    ExecProgram,
    /// The ELF interpreter (dynamic loader) the kernel mapped at exec.
    ExecInterpreter,
}

impl MmapSource {
    /// Mapped by the kernel at exec, not asked for by the process.
    pub fn at_exec(self) -> bool {
        matches!(self, MmapSource::ExecProgram | MmapSource::ExecInterpreter)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Mmap {
    #[serde(flatten)]
    pub hdr: Header,
    pub file: File,
    pub source: MmapSource,
    pub mprotect: bool,
    pub prot: u32,
    /// Made while the process's loader held /etc/ld.so.preload mapped: an object the list
    /// names (see [`PreloadList`]).
    pub after_preload_list: bool,
    /// What prevention made of the mapping, when the kernel judged it one to stop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prevented: Option<Prevented>,
}

/// A mapping prevention stopped (or, in audit mode, would have stopped), and the kernel's
/// reasons: the file's own facts (`FileInfo::unsafe_facts`), its directory not being root's
/// alone, the daemon having listed the file version as unverified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Prevented {
    /// SIGKILL was sent; false in audit mode.
    pub killed: bool,
    /// The LSM programs refused the mapping (EPERM); in audit mode, they would have.
    pub denied: bool,
    /// Audit mode: nothing was stopped.
    pub audit: bool,
    pub facts: bool,
    pub directory: bool,
    pub listed: bool,
}

impl Prevented {
    fn from_flags(flags: u32) -> Option<Self> {
        let killed = flags & MMAP_PREVENT_KILLED != 0;
        let denied = flags & MMAP_PREVENT_DENIED != 0;
        let audit = flags & MMAP_PREVENT_AUDIT != 0;
        if !killed && !denied && !audit {
            return None;
        }
        Some(Prevented {
            killed,
            denied,
            audit,
            facts: flags & MMAP_PREVENT_FACTS != 0,
            directory: flags & MMAP_PREVENT_DIR != 0,
            listed: flags & MMAP_PREVENT_LISTED != 0,
        })
    }
}

/// /etc/ld.so.preload as a process's loader read it, from the kernel: the file's facts when
/// the loader mapped it and the loader's copy of its content when it unmapped it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PreloadList {
    #[serde(flatten)]
    pub hdr: Header,
    /// The list file (its path is not built: the loader opens `/etc/ld.so.preload` in its root).
    #[serde(serialize_with = "json::file_info")]
    pub file: FileInfo,
    /// Kernel time the loader mapped the list.
    pub mapped_ns: u64,
    /// Bytes the loader mapped (the file's size then).
    pub size: u64,
    /// The names the loader's copy held, in order, without repeats.
    pub names: Vec<String>,
    /// The list is longer than what was kept of it.
    pub truncated: bool,
    /// The loader's copy could not be read (`names` is empty).
    pub unread: bool,
}

/// The names in the loader's copy of the list: glibc overwrote comments with spaces and the
/// separators it passed with NUL; names are separated by white space, `:` or NUL.
pub fn list_names(content: &[u8]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for name in content.split(|&b| matches!(b, 0 | b' ' | b'\t' | b'\n' | b':')) {
        if name.is_empty() {
            continue;
        }
        let name = names::lossless(name);
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileOp {
    OpenWrite,
    Rename,
    Unlink,
    Truncate,
    /// A symbolic link created; `paths` holds the link.
    Symlink,
    /// A hard link created; `paths` holds the existing file then the new name.
    Link,
}

/// A change to a watched file. `paths` are the absolute paths involved: for an open, the file;
/// for a rename or a hard link, source then destination; for unlink, truncate and a symbolic
/// link, the file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileChange {
    #[serde(flatten)]
    pub hdr: Header,
    pub op: FileOp,
    pub paths: Vec<String>,
    /// The writer's root is not in the daemon's mount tree (the kernel's walk of it stopped at
    /// its namespace's root): another mount namespace, a container. `paths` are in its view.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub other_mount_ns: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Exit {
    #[serde(flatten)]
    pub hdr: Header,
    pub exit_code: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TamperOp {
    Ptrace,
    ProcessVmWritev,
    ProcMem,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MemTamper {
    #[serde(flatten)]
    pub hdr: Header,
    pub op: TamperOp,
    pub target_pid: u32,
    pub request: u64,
    pub addr: u64,
}

/// How another process's memory was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadOp {
    /// `/proc/<pid>/mem` opened for reading.
    ProcMem,
    /// `/proc/<pid>/environ` opened for reading: the target's environment, not its memory.
    ProcEnviron,
    ProcessVmReadv,
    /// A ptrace read request (PEEKTEXT, PEEKDATA, PEEKUSER, GETREGS, GETFPREGS, GETREGSET).
    Ptrace,
    /// `/proc/<pid>/coredump_filter` opened for writing: which mappings its core dump holds.
    CoredumpFilter,
    /// A signal whose default action dumps core sent to the target: its memory in a core file.
    DumpSignal,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MemRead {
    #[serde(flatten)]
    pub hdr: Header,
    pub op: ReadOp,
    /// The process read (for `/proc/<pid>/mem`, the pid or thread id its directory names).
    pub target_pid: u32,
    /// The ptrace request; process_vm_readv's number of remote iovecs; the open file's mode;
    /// the signal sent.
    pub request: u64,
    /// The first remote address, 0 when unknown.
    pub addr: u64,
    /// Bytes asked for (process_vm_readv's first remote iovec), 0 when unknown.
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Exec(Exec),
    LoaderEnv(LoaderEnv),
    Mmap(Mmap),
    FileChange(FileChange),
    Exit(Exit),
    MemTamper(MemTamper),
    PreloadList(PreloadList),
    MemRead(MemRead),
    Signal(Signal),
}

/// A signal sent to the daemon (see [`detector_common::SignalEvent`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Signal {
    #[serde(flatten)]
    pub hdr: Header,
    /// The pid the sender named: the daemon's or one of its threads', `-pgid`, or -1 (every
    /// process); the daemon's pid when the sender named it another way (a pidfd).
    pub target: i32,
    pub signal: u32,
    /// The system call that sent it (`kill`, `tkill`, `tgkill`, `rt_sigqueueinfo`,
    /// `rt_tgsigqueueinfo`, `pidfd_send_signal`), its number for another, or `unknown`.
    pub syscall: String,
}

/// The name of a signal-sending system call by its number, and whether its first argument is
/// the pid the sender named.
fn signal_syscall(nr: u32) -> (String, bool) {
    let known = [
        (libc::SYS_kill, "kill", true),
        (libc::SYS_tkill, "tkill", true),
        (libc::SYS_tgkill, "tgkill", true),
        (libc::SYS_rt_sigqueueinfo, "rt_sigqueueinfo", true),
        (libc::SYS_rt_tgsigqueueinfo, "rt_tgsigqueueinfo", true),
        (libc::SYS_pidfd_send_signal, "pidfd_send_signal", false),
    ];
    match known.iter().find(|(n, ..)| *n as u32 == nr) {
        Some((_, name, names_pid)) => ((*name).to_owned(), *names_pid),
        None if nr == u32::MAX => ("unknown".to_owned(), false),
        None => (nr.to_string(), false),
    }
}

impl Event {
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Exec(_) => EventKind::Exec,
            Event::LoaderEnv(_) => EventKind::LoaderEnv,
            Event::Mmap(_) => EventKind::Mmap,
            Event::FileChange(_) => EventKind::FileChange,
            Event::Exit(_) => EventKind::Exit,
            Event::MemTamper(_) => EventKind::MemTamper,
            Event::PreloadList(_) => EventKind::PreloadList,
            Event::MemRead(_) => EventKind::MemRead,
            Event::Signal(_) => EventKind::Signal,
        }
    }
}

/// JSON forms (`detector events`): an event is its fields, header fields included, under a
/// `kind` named by [`EventKind::name`]; a file's kernel facts are written readably.
mod json {
    use serde::{ser::SerializeStruct, Serialize, Serializer};

    use super::{Event, File, FileInfo, LoaderVar};

    impl Serialize for Event {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            #[derive(Serialize)]
            struct Tagged<'a, T> {
                kind: &'static str,
                #[serde(flatten)]
                event: &'a T,
            }
            let kind = self.kind().name();
            match self {
                Event::Exec(event) => Tagged { kind, event }.serialize(s),
                Event::LoaderEnv(event) => Tagged { kind, event }.serialize(s),
                Event::Mmap(event) => Tagged { kind, event }.serialize(s),
                Event::FileChange(event) => Tagged { kind, event }.serialize(s),
                Event::Exit(event) => Tagged { kind, event }.serialize(s),
                Event::MemTamper(event) => Tagged { kind, event }.serialize(s),
                Event::PreloadList(event) => Tagged { kind, event }.serialize(s),
                Event::MemRead(event) => Tagged { kind, event }.serialize(s),
                Event::Signal(event) => Tagged { kind, event }.serialize(s),
            }
        }
    }

    /// `device` as `major:minor`, `mode` in octal (type and permission bits), `fs` by name.
    impl Serialize for File {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_struct("File", 10)?;
            m.serialize_field("path", &self.path)?;
            m.serialize_field("path_truncated", &self.path_truncated)?;
            info_fields(&mut m, &self.info, self.fs())?;
            m.end()
        }
    }

    /// A file known by its kernel facts alone, as `File` writes them.
    pub fn file_info<S: Serializer>(i: &FileInfo, s: S) -> Result<S::Ok, S::Error> {
        let f = super::File {
            path: String::new(),
            path_truncated: false,
            info: *i,
        };
        let mut m = s.serialize_struct("FileInfo", 8)?;
        info_fields(&mut m, i, f.fs())?;
        m.end()
    }

    fn info_fields<M: SerializeStruct>(
        m: &mut M,
        i: &FileInfo,
        fs: &'static str,
    ) -> Result<(), M::Error> {
        m.serialize_field("inode", &i.ino)?;
        m.serialize_field("device", &format!("{}:{}", i.dev >> 20, i.dev & 0xfffff))?;
        m.serialize_field("mode", &format!("{:o}", i.mode))?;
        m.serialize_field("uid", &i.uid)?;
        m.serialize_field("nlink", &i.nlink)?;
        m.serialize_field("mtime_sec", &i.mtime_sec)?;
        m.serialize_field("fs", fs)?;
        m.serialize_field("fs_magic", &format!("{:#x}", i.fs_magic))?;
        Ok(())
    }

    pub fn loader_var<S: Serializer>(v: &LoaderVar, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.name())
    }
}

/// A syscall name of a process whose root directory is `root` (a chroot), as the host names it.
fn under_root(root: &str, name: &str) -> String {
    format!(
        "{}/{}",
        root.trim_end_matches('/'),
        name.trim_start_matches('/')
    )
}

/// A syscall name made absolute: as is when it starts with '/', else joined to `dir`.
fn absolute(dir: &str, name: &str) -> String {
    if name.starts_with('/') || dir.is_empty() {
        name.to_owned()
    } else {
        format!("{}/{}", dir.trim_end_matches('/'), name)
    }
}

/// Lexically removes `.` and `..` components (the kernel gave us the real base directory).
pub fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    Short { kind: u32, len: usize, need: usize },
    UnknownKind(u32),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Short { kind, len, need } => {
                write!(f, "event of kind {kind} is {len} bytes, expected {need}")
            }
            Self::UnknownKind(k) => write!(f, "unknown event kind {k}"),
        }
    }
}

/// Reads a `T` from the start of `buf` if it is long enough.
fn read<T: Copy>(buf: &[u8], kind: u32) -> Result<T, DecodeError> {
    if buf.len() < size_of::<T>() {
        return Err(DecodeError::Short {
            kind,
            len: buf.len(),
            need: size_of::<T>(),
        });
    }
    // SAFETY: length checked; T is a repr(C) plain-data event type; unaligned read.
    Ok(unsafe { std::ptr::read_unaligned(buf.as_ptr().cast::<T>()) })
}

/// Bytes up to the first NUL, every byte kept ([`names::lossless`]).
pub fn cstr(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    names::lossless(&bytes[..end])
}

fn header(h: &EventHeader) -> Header {
    Header {
        comm: cstr(&h.comm),
        ..header_without_comm(h)
    }
}

fn header_without_comm(h: &EventHeader) -> Header {
    Header {
        ktime_ns: h.ktime_ns,
        pid: h.pid,
        tid: h.tid,
        ppid: h.ppid,
        uid: h.uid,
        gid: h.gid,
        comm: String::new(),
    }
}

/// A right-aligned kernel path buffer: the path is `buf[off..]`, NUL-terminated.
fn path_at(buf: &[u8], off: u32) -> String {
    cstr(buf.get(off as usize..).unwrap_or_default())
}

fn file(hdr: &EventHeader, info: FileInfo, buf: &[u8], off: u32) -> File {
    File {
        path: path_at(buf, off),
        path_truncated: hdr.flags & PATH_TRUNCATED != 0,
        info,
    }
}

/// Splits a NUL-separated argument block; `len` is how many bytes of it are valid.
fn split_args(block: &[u8], len: usize) -> Vec<String> {
    let block = &block[..len.min(block.len())];
    let block = block.strip_suffix(&[0]).unwrap_or(block);
    if block.is_empty() {
        return Vec::new();
    }
    block.split(|&b| b == 0).map(names::lossless).collect()
}

pub fn decode(buf: &[u8]) -> Result<Event, DecodeError> {
    let kind = read::<u32>(buf, 0)?;
    match EventKind::from_u32(kind) {
        Some(EventKind::Exec) => {
            let e: ExecEvent = read(buf, kind)?;
            Ok(Event::Exec(Exec {
                hdr: header(&e.hdr),
                filename: cstr(&e.filename),
                filename_truncated: e.hdr.flags & EXEC_FILENAME_TRUNCATED != 0,
                argc: e.argc,
                argv: split_args(&e.args, e.args_len as usize),
                args_truncated: e.hdr.flags & EXEC_ARGS_TRUNCATED != 0,
                envc: e.envc,
                env_incomplete: e.hdr.flags & EXEC_ENV_INCOMPLETE != 0,
                loader_vars: e.loader_vars,
            }))
        }
        Some(EventKind::LoaderEnv) => {
            let e: LoaderEnvEvent = read(buf, kind)?;
            let truncated = e.hdr.flags & LOADER_VALUE_TRUNCATED != 0;
            Ok(Event::LoaderEnv(LoaderEnv {
                hdr: header(&e.hdr),
                var: LoaderVar::from_u32(e.var).ok_or(DecodeError::UnknownKind(kind))?,
                occurrences: e.occurrences,
                index: e.index,
                value_len: e.value_len,
                head: cstr(&e.head),
                tail: if truncated {
                    names::lossless(&e.tail)
                } else {
                    String::new()
                },
                truncated,
            }))
        }
        Some(EventKind::Mmap) => {
            let e: MmapEvent = read(buf, kind)?;
            let source = match e.source {
                MMAP_SOURCE_MMAP => MmapSource::Mmap,
                MMAP_SOURCE_MPROTECT => MmapSource::Mprotect,
                MMAP_SOURCE_EXEC_PROGRAM => MmapSource::ExecProgram,
                MMAP_SOURCE_EXEC_INTERPRETER => MmapSource::ExecInterpreter,
                _ => return Err(DecodeError::UnknownKind(kind)),
            };
            Ok(Event::Mmap(Mmap {
                hdr: header(&e.hdr),
                file: file(&e.hdr, e.file, &e.path, e.path_off),
                source,
                mprotect: source == MmapSource::Mprotect,
                prot: e.prot,
                after_preload_list: e.hdr.flags & MMAP_AFTER_PRELOAD_LIST != 0,
                prevented: Prevented::from_flags(e.hdr.flags),
            }))
        }
        Some(EventKind::FileChange) => {
            let e: FileChangeEvent = read(buf, kind)?;
            let op = match e.op {
                FILE_OP_OPEN_WRITE => FileOp::OpenWrite,
                FILE_OP_RENAME => FileOp::Rename,
                FILE_OP_UNLINK => FileOp::Unlink,
                FILE_OP_TRUNCATE => FileOp::Truncate,
                FILE_OP_SYMLINK => FileOp::Symlink,
                FILE_OP_LINK => FileOp::Link,
                _ => return Err(DecodeError::UnknownKind(kind)),
            };
            let paths = if op == FileOp::OpenWrite {
                vec![path_at(&e.path, e.path_off)]
            } else {
                let dir = if e.dir[0] == 0 && e.dir_off == 0 {
                    String::new()
                } else {
                    path_at(&e.dir, e.dir_off)
                };
                let rooted = e.hdr.flags & ROOTED_ELSEWHERE != 0;
                [cstr(&e.name), cstr(&e.name2)]
                    .iter()
                    .filter(|n| !n.is_empty())
                    .map(|n| {
                        if rooted {
                            under_root(&dir, &normalize(n))
                        } else {
                            normalize(&absolute(&dir, n))
                        }
                    })
                    .collect()
            };
            let other_mount_ns = e.hdr.flags & ROOTED_ELSEWHERE != 0
                && op != FileOp::OpenWrite
                && path_at(&e.dir, e.dir_off).trim_end_matches('/').is_empty();
            Ok(Event::FileChange(FileChange {
                hdr: header(&e.hdr),
                op,
                paths,
                other_mount_ns,
            }))
        }
        Some(EventKind::Exit) => {
            let e: ExitEvent = read(buf, kind)?;
            // One per process: only its pid and time are used, so its name is not copied.
            let hdr = Header {
                comm: String::new(),
                ..header_without_comm(&e.hdr)
            };
            Ok(Event::Exit(Exit {
                hdr,
                exit_code: e.exit_code,
            }))
        }
        Some(EventKind::MemTamper) => {
            let e: MemTamperEvent = read(buf, kind)?;
            let (op, target_pid) = match e.op {
                TAMPER_PTRACE => (TamperOp::Ptrace, e.target_pid),
                TAMPER_PROCESS_VM_WRITEV => (TamperOp::ProcessVmWritev, e.target_pid),
                TAMPER_PROC_MEM => {
                    // /proc/<pid>/mem: the pid is the parent directory's name.
                    let path = path_at(&e.path, e.path_off);
                    let pid = path
                        .rsplit('/')
                        .nth(1)
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(0);
                    (TamperOp::ProcMem, pid)
                }
                _ => return Err(DecodeError::UnknownKind(kind)),
            };
            Ok(Event::MemTamper(MemTamper {
                hdr: header(&e.hdr),
                op,
                target_pid,
                request: e.request,
                addr: e.addr,
            }))
        }
        Some(EventKind::MemRead) => {
            let e: MemReadEvent = read(buf, kind)?;
            let (op, target_pid) = match e.op {
                READ_PROC_MEM => (ReadOp::ProcMem, cstr(&e.dir).parse().unwrap_or(0)),
                READ_PROC_ENVIRON => (ReadOp::ProcEnviron, cstr(&e.dir).parse().unwrap_or(0)),
                READ_PROCESS_VM_READV => (ReadOp::ProcessVmReadv, e.target_pid),
                READ_PTRACE => (ReadOp::Ptrace, e.target_pid),
                READ_COREDUMP_FILTER => (ReadOp::CoredumpFilter, cstr(&e.dir).parse().unwrap_or(0)),
                READ_DUMP_SIGNAL => (ReadOp::DumpSignal, e.target_pid),
                _ => return Err(DecodeError::UnknownKind(kind)),
            };
            Ok(Event::MemRead(MemRead {
                hdr: header(&e.hdr),
                op,
                target_pid,
                request: e.request,
                addr: e.addr,
                bytes: e.bytes,
            }))
        }
        Some(EventKind::Signal) => {
            let e: SignalEvent = read(buf, kind)?;
            let (syscall, names_pid) = signal_syscall(e.syscall_nr);
            Ok(Event::Signal(Signal {
                hdr: header(&e.hdr),
                target: if names_pid {
                    e.target
                } else {
                    e.receiver as i32
                },
                signal: e.sig,
                syscall,
            }))
        }
        Some(EventKind::PreloadList) => {
            let e: PreloadListEvent = read(buf, kind)?;
            let len = (e.content_len as usize).min(PRELOAD_LIST_MAX);
            Ok(Event::PreloadList(PreloadList {
                hdr: header(&e.hdr),
                file: e.file,
                mapped_ns: e.mapped_ns,
                size: e.size,
                names: list_names(&e.content[..len]),
                truncated: e.hdr.flags & PRELOAD_LIST_TRUNCATED != 0,
                unread: e.hdr.flags & PRELOAD_LIST_UNREAD != 0,
            }))
        }
        None => Err(DecodeError::UnknownKind(kind)),
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use detector_common::{
        EXEC_ARGS_MAX, EXEC_FILENAME_MAX, LOADER_VALUE_HEAD, LOADER_VALUE_TAIL, PATH_BUF,
    };

    pub fn bytes_of<T>(v: &T) -> Vec<u8> {
        // SAFETY: reading the bytes of a plain-data value.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    pub fn hdr(kind: EventKind, pid: u32, comm: &str) -> EventHeader {
        let mut c = [0u8; 16];
        c[..comm.len()].copy_from_slice(comm.as_bytes());
        EventHeader {
            kind: kind as u32,
            flags: 0,
            ktime_ns: 7,
            pid,
            tid: pid,
            ppid: 1,
            uid: 1000,
            gid: 1000,
            _pad: 0,
            comm: c,
        }
    }

    pub fn exec_event(pid: u32, comm: &str, filename: &str, args: &[&str]) -> ExecEvent {
        let mut e = ExecEvent {
            hdr: hdr(EventKind::Exec, pid, comm),
            argc: args.len() as u32,
            envc: 3,
            loader_vars: 1,
            args_len: 0,
            filename: [0; EXEC_FILENAME_MAX],
            args: [0; EXEC_ARGS_MAX],
        };
        e.filename[..filename.len()].copy_from_slice(filename.as_bytes());
        let block: Vec<u8> = args.iter().flat_map(|a| a.bytes().chain([0])).collect();
        e.args[..block.len()].copy_from_slice(&block);
        e.args_len = block.len() as u32;
        e
    }

    /// `e` as the kernel reports it for a child of `ppid`.
    pub fn child_of(ppid: u32, mut e: ExecEvent) -> ExecEvent {
        e.hdr.ppid = ppid;
        e
    }

    pub fn loader_event(pid: u32, comm: &str, var: LoaderVar, value: &str) -> LoaderEnvEvent {
        let mut e = LoaderEnvEvent {
            hdr: hdr(EventKind::LoaderEnv, pid, comm),
            var: var as u32,
            occurrences: 1,
            index: 0,
            value_len: value.len() as u32,
            head: [0; LOADER_VALUE_HEAD],
            tail: [0; LOADER_VALUE_TAIL],
        };
        e.head[..value.len()].copy_from_slice(value.as_bytes());
        e
    }

    /// A rename of absolute `from` onto `to` by `pid`.
    pub fn rename_event(
        pid: u32,
        comm: &str,
        from: &str,
        to: &str,
    ) -> detector_common::FileChangeEvent {
        use detector_common::{FILE_OP_RENAME, NAME_MAX};
        let mut e = FileChangeEvent {
            hdr: hdr(EventKind::FileChange, pid, comm),
            file: Default::default(),
            op: FILE_OP_RENAME,
            op_flags: 0,
            path_off: 0,
            dir_off: 0,
            path: [0; PATH_BUF],
            dir: [0; PATH_BUF],
            name: [0; NAME_MAX],
            name2: [0; NAME_MAX],
        };
        e.name[..from.len()].copy_from_slice(from.as_bytes());
        e.name2[..to.len()].copy_from_slice(to.as_bytes());
        e
    }

    /// An executable mapping of `path` (root-owned, 0755, on ext4), flagged `flags`.
    pub fn mmap_event(pid: u32, comm: &str, path: &str, flags: u32) -> MmapEvent {
        let mut e = MmapEvent {
            hdr: hdr(EventKind::Mmap, pid, comm),
            file: FileInfo {
                ino: 77,
                mtime_sec: 1,
                dev: (254 << 20) | 1,
                mode: 0o100755,
                uid: 0,
                nlink: 1,
                fs_magic: 0xef53,
            },
            source: 1,
            prot: 5,
            map_flags: 2,
            path_off: 0,
            path: [0; PATH_BUF],
        };
        e.hdr.flags = flags;
        let off = PATH_BUF - path.len() - 1;
        e.path[off..off + path.len()].copy_from_slice(path.as_bytes());
        e.path_off = off as u32;
        e
    }

    /// A read of `target`'s memory by `pid`, as the kernel sends it.
    pub fn mem_read_event(pid: u32, comm: &str, op: u32, target: u32) -> MemReadEvent {
        let mut e = MemReadEvent {
            hdr: hdr(EventKind::MemRead, pid, comm),
            op,
            target_pid: target,
            request: 1,
            addr: 0x5555_0000,
            bytes: 4096,
            dir: [0; detector_common::PROC_DIR_NAME],
        };
        if [READ_PROC_MEM, READ_PROC_ENVIRON, READ_COREDUMP_FILTER].contains(&op) {
            e.target_pid = 0;
            let dir = target.to_string();
            e.dir[..dir.len()].copy_from_slice(dir.as_bytes());
        }
        e
    }

    #[test]
    fn decodes_memory_reads() {
        for (op, name) in [
            (READ_PROC_MEM, ReadOp::ProcMem),
            (READ_PROC_ENVIRON, ReadOp::ProcEnviron),
            (READ_PROCESS_VM_READV, ReadOp::ProcessVmReadv),
            (READ_COREDUMP_FILTER, ReadOp::CoredumpFilter),
            (READ_DUMP_SIGNAL, ReadOp::DumpSignal),
        ] {
            match decode(&bytes_of(&mem_read_event(3, "reader", op, 1234))).unwrap() {
                Event::MemRead(r) => {
                    assert_eq!((r.op, r.target_pid, r.bytes), (name, 1234, 4096));
                }
                other => panic!("{other:?}"),
            }
        }
        let mut bad = mem_read_event(3, "reader", 99, 1234);
        assert!(decode(&bytes_of(&bad)).is_err());
        bad.op = READ_PTRACE;
        assert!(decode(&bytes_of(&bad)).is_ok());
    }

    /// The loader's copy of a list holding `content`, as the kernel sends it.
    pub fn preload_list_event(pid: u32, comm: &str, content: &[u8]) -> PreloadListEvent {
        let mut e = PreloadListEvent {
            hdr: hdr(EventKind::PreloadList, pid, comm),
            file: FileInfo {
                ino: 4242,
                mtime_sec: 1_700_000_000,
                dev: (254 << 20) | 1,
                mode: 0o100644,
                uid: 0,
                nlink: 1,
                fs_magic: 0xef53,
            },
            mapped_ns: 5,
            size: content.len() as u64,
            content_len: content.len() as u32,
            _pad: 0,
            content: [0; PRELOAD_LIST_MAX],
        };
        e.content[..content.len()].copy_from_slice(content);
        e
    }

    #[test]
    fn decodes_the_loaders_copy_of_the_list() {
        // As glibc leaves it: the comment overwritten with spaces, separators it passed NUL.
        let e = preload_list_event(
            3,
            "ssh",
            b"/tmp/a.so\0      \0/usr/local/lib/b.so:/tmp/a.so\0",
        );
        let Event::PreloadList(l) = decode(&bytes_of(&e)).unwrap() else {
            panic!()
        };
        assert_eq!(l.names, ["/tmp/a.so", "/usr/local/lib/b.so"]);
        assert_eq!((l.size, l.file.ino), (47, 4242));
        assert!(!l.truncated && !l.unread);
        let mut e = preload_list_event(3, "ssh", b"");
        e.hdr.flags = PRELOAD_LIST_UNREAD;
        e.content_len = 99_999;
        let Event::PreloadList(l) = decode(&bytes_of(&e)).unwrap() else {
            panic!()
        };
        assert!(l.unread && l.names.is_empty());
        let m = mmap_event(3, "ssh", "/tmp/a.so", MMAP_AFTER_PRELOAD_LIST);
        let Event::Mmap(m) = decode(&bytes_of(&m)).unwrap() else {
            panic!()
        };
        assert!(m.after_preload_list && m.file.path == "/tmp/a.so");
    }

    /// A signal sent by `pid` with kill(2) to `target`, received by process 4242.
    pub fn signal_event(pid: u32, comm: &str, target: i32, sig: u32) -> SignalEvent {
        SignalEvent {
            hdr: hdr(EventKind::Signal, pid, comm),
            target,
            sig,
            syscall_nr: libc::SYS_kill as u32,
            receiver: 4242,
        }
    }

    #[test]
    fn decodes_signals() {
        let Event::Signal(sig) = decode(&bytes_of(&signal_event(7, "sh", -1, 19))).unwrap() else {
            panic!()
        };
        assert_eq!((sig.hdr.pid, sig.target, sig.signal), (7, -1, 19));
        assert_eq!(sig.syscall, "kill");
        // A pidfd is no pid: the receiver is the target then.
        let pidfd = SignalEvent {
            syscall_nr: libc::SYS_pidfd_send_signal as u32,
            target: 3,
            ..signal_event(7, "sh", 0, 19)
        };
        let Event::Signal(sig) = decode(&bytes_of(&pidfd)).unwrap() else {
            panic!()
        };
        assert_eq!(
            (sig.target, sig.syscall.as_str()),
            (4242, "pidfd_send_signal")
        );
        let unknown = SignalEvent {
            syscall_nr: u32::MAX,
            ..signal_event(7, "sh", 0, 19)
        };
        let Event::Signal(sig) = decode(&bytes_of(&unknown)).unwrap() else {
            panic!()
        };
        assert_eq!(sig.syscall, "unknown");
        let short = bytes_of(&signal_event(7, "sh", 1, 19));
        assert!(decode(&short[..short.len() - 1]).is_err());
    }

    /// Writes the fuzz target `decode`'s seed corpus (one record of each kind, as the kernel
    /// programs lay them out) to `$DETECTOR_FUZZ_SEEDS`: `cargo test -p detector --lib
    /// write_decode_seeds -- --ignored` with it set to `fuzz/corpus/decode`.
    #[test]
    #[ignore = "writes the fuzz seed corpus when asked"]
    fn write_decode_seeds() {
        let Some(dir) = std::env::var_os("DETECTOR_FUZZ_SEEDS") else {
            return;
        };
        let dir = std::path::PathBuf::from(dir);
        let mut tamper = MemTamperEvent {
            hdr: hdr(EventKind::MemTamper, 7, "gdb"),
            op: TAMPER_PROC_MEM,
            target_pid: 0,
            request: 0,
            addr: 0x7f00_0000_1000,
            path_off: 0,
            _pad: 0,
            path: [0; PATH_BUF],
        };
        tamper.path[..14].copy_from_slice(b"/proc/4321/mem");
        let seeds: Vec<(&str, Vec<u8>)> = vec![
            (
                "exec",
                bytes_of(&exec_event(42, "ssh", "/usr/bin/ssh", &["ssh", "-V"])),
            ),
            (
                "loader_env",
                bytes_of(&loader_event(
                    42,
                    "ssh",
                    LoaderVar::LdPreload,
                    "/tmp/a.so:/tmp/b.so",
                )),
            ),
            (
                "mmap",
                bytes_of(&mmap_event(42, "ssh", "/dev/shm/x.so (deleted)", 0)),
            ),
            (
                "rename",
                bytes_of(&rename_event(
                    42,
                    "sed",
                    "/etc/pam.d/sedAb12",
                    "/etc/pam.d/su",
                )),
            ),
            (
                "mem_read",
                bytes_of(&mem_read_event(42, "gdb", READ_PTRACE, 4321)),
            ),
            ("mem_tamper", bytes_of(&tamper)),
            ("signal", bytes_of(&signal_event(7, "sh", 4321, 19))),
            (
                "preload_list",
                bytes_of(&preload_list_event(
                    42,
                    "ssh",
                    b"/tmp/a.so\0  \0/lib/b.so\0",
                )),
            ),
        ];
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in seeds {
            // The records are mostly zero padding: a seed keeps them whole, as the ring has them.
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }

    #[test]
    fn decodes_exec() {
        let e = exec_event(42, "cat", "/usr/bin/cat", &["cat", "/etc/hostname"]);
        let Event::Exec(x) = decode(&bytes_of(&e)).unwrap() else {
            panic!("not exec")
        };
        assert_eq!(x.hdr.pid, 42);
        assert_eq!(x.hdr.comm, "cat");
        assert_eq!(x.filename, "/usr/bin/cat");
        assert_eq!(x.argv, vec!["cat", "/etc/hostname"]);
        assert!(!x.args_truncated && !x.filename_truncated && !x.env_incomplete);
    }

    #[test]
    fn decodes_flags() {
        let mut e = exec_event(1, "x", "/x", &["x"]);
        e.hdr.flags = EXEC_ARGS_TRUNCATED | EXEC_ENV_INCOMPLETE;
        let Event::Exec(x) = decode(&bytes_of(&e)).unwrap() else {
            panic!()
        };
        assert!(x.args_truncated && x.env_incomplete && !x.filename_truncated);
    }

    #[test]
    fn decodes_loader_env_with_tail() {
        let mut e = loader_event(9, "ls", LoaderVar::LdPreload, "/tmp/a.so");
        e.hdr.flags = LOADER_VALUE_TRUNCATED;
        e.tail = [b'b'; LOADER_VALUE_TAIL];
        let Event::LoaderEnv(x) = decode(&bytes_of(&e)).unwrap() else {
            panic!()
        };
        assert_eq!(x.var, LoaderVar::LdPreload);
        assert_eq!(x.head, "/tmp/a.so");
        assert!(x.truncated);
        assert_eq!(x.tail.len(), LOADER_VALUE_TAIL);
    }

    #[test]
    fn paths_are_made_absolute_and_normal() {
        assert_eq!(
            normalize(&absolute("/etc", "ld.so.preload")),
            "/etc/ld.so.preload"
        );
        assert_eq!(
            normalize(&absolute("/etc/pam.d", "../ld.so.preload")),
            "/etc/ld.so.preload"
        );
        assert_eq!(
            normalize(&absolute("/x", "/etc/./pam.d//su")),
            "/etc/pam.d/su"
        );
        assert_eq!(
            normalize(&absolute("/", "etc/ld.so.conf")),
            "/etc/ld.so.conf"
        );
    }

    #[test]
    fn a_chroots_names_are_under_its_root_and_cannot_climb_out() {
        assert_eq!(
            under_root("/srv/tree", &normalize("/etc/pam.d/su")),
            "/srv/tree/etc/pam.d/su"
        );
        assert_eq!(
            under_root("/srv/tree", &normalize("/../../etc/pam.d/su")),
            "/srv/tree/etc/pam.d/su"
        );
        assert_eq!(
            under_root("/usr/local/", &normalize("/lib//x")),
            "/usr/local/lib/x"
        );
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(
            decode(&[]),
            Err(DecodeError::Short {
                kind: 0,
                len: 0,
                need: 4
            })
        );
        assert_eq!(
            decode(&99u32.to_ne_bytes()),
            Err(DecodeError::UnknownKind(99))
        );
        let e = exec_event(1, "x", "/x", &[]);
        let b = bytes_of(&e);
        assert!(matches!(
            decode(&b[..100]),
            Err(DecodeError::Short { kind: 1, .. })
        ));
        let mut l = loader_event(1, "x", LoaderVar::LdAudit, "a");
        l.var = 77;
        assert!(decode(&bytes_of(&l)).is_err());
    }
}
