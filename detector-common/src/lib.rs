//! Event types shared by the eBPF programs and user space.
//!
//! Every event starts with an [`EventHeader`] whose `kind` is one of the stable numeric
//! [`EventKind`] values. Events are fixed-size `#[repr(C)]` structs; whenever a kernel
//! string did not fit, a `*_TRUNCATED` flag says so. Nothing is cut silently.
#![no_std]

/// Declares the capture channels and the event kinds from one table: the enums, their stable
/// numbers, their names (stats keys, logs) and the dense indexes user space counts by.
macro_rules! event_table {
    (
        channels { $($(#[$cm:meta])* $chan:ident = $cn:literal, $cname:literal, [$($attach:expr),* $(,)?];)+ }
        kinds { $($(#[$km:meta])* $kind:ident = $kn:literal, $kname:literal, $kchan:ident;)+ }
    ) => {
        /// Capture channels: each eBPF program belongs to one; the per-channel counters (`LOST`,
        /// `READ_ERRORS`) are indexed by it.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Channel {
            $($(#[$cm])* $chan = $cn,)+
        }

        impl Channel {
            pub const ALL: [Channel; CHANNELS as usize] = [$(Channel::$chan,)+];
            pub const fn name(self) -> &'static str {
                match self {
                    $(Channel::$chan => $cname,)+
                }
            }
            pub const fn index(self) -> usize {
                self as usize
            }
            /// The tracepoints this channel's programs attach to.
            pub const fn attach(self) -> &'static [Attach] {
                match self {
                    $(Channel::$chan => const { &[$($attach),*] },)+
                }
            }
        }

        /// Number of capture channels (entries of each per-channel counter map).
        pub const CHANNELS: u32 = [$($cn,)+].len() as u32;

        /// Stable numeric event kinds. Never renumber: a retired kind's number stays unused.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum EventKind {
            $($(#[$km])* $kind = $kn,)+
        }

        impl EventKind {
            pub const ALL: [EventKind; EVENT_KINDS] = [$(EventKind::$kind,)+];
            pub const fn from_u32(v: u32) -> Option<Self> {
                match v {
                    $($kn => Some(EventKind::$kind),)+
                    _ => None,
                }
            }
            pub const fn name(self) -> &'static str {
                match self {
                    $(EventKind::$kind => $kname,)+
                }
            }
            /// The channel whose counters account for this kind.
            pub const fn channel(self) -> Channel {
                match self {
                    $(EventKind::$kind => Channel::$kchan,)+
                }
            }
            /// A dense index, 0..EVENT_KINDS, for per-kind counters.
            pub const fn index(self) -> usize {
                let mut i = 0;
                while i < EVENT_KINDS {
                    if EventKind::ALL[i] as u32 == self as u32 {
                        return i;
                    }
                    i += 1;
                }
                unreachable!()
            }
        }

        /// Number of event kinds.
        pub const EVENT_KINDS: usize = [$($kn,)+].len();
    };
}

/// Where a program attaches: a BTF tracepoint (`tp_btf`: the kernel hands the program the
/// tracepoint's arguments without formatting a trace record, the cheaper way for what runs on
/// every exec and exit) or a classic one (the syscall tracepoints, which have no BTF form).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attach {
    /// The program's name in the eBPF object.
    pub program: &'static str,
    /// `None` for a BTF tracepoint; the tracefs category of a classic one.
    pub category: Option<&'static str>,
    pub tracepoint: &'static str,
    /// False for a syscall an architecture may not have (open, rename, unlink exist on x86_64,
    /// not on arm64): it is attached where it exists.
    pub required: bool,
}

const fn btf(program: &'static str, tracepoint: &'static str) -> Attach {
    Attach {
        program,
        category: None,
        tracepoint,
        required: true,
    }
}

const fn syscall(program: &'static str, tracepoint: &'static str, required: bool) -> Attach {
    Attach {
        program,
        category: Some("syscalls"),
        tracepoint,
        required,
    }
}

event_table! {
    channels {
        Exec = 0, "exec", [btf("sched_exec", "sched_process_exec")];
        Mmap = 1, "mmap", [
            // After the exec channel's program on the same tracepoint: the exec's event first.
            btf("exec_program", "sched_process_exec"),
            btf("exec_interpreter", "sched_process_exec"),
            syscall("sys_enter_mmap", "sys_enter_mmap", true),
            syscall("sys_enter_mprotect", "sys_enter_mprotect", true),
        ];
        FileChange = 2, "file_change", [
            syscall("sys_exit_open", "sys_exit_openat", true),
            syscall("sys_exit_open", "sys_exit_openat2", false),
            syscall("sys_exit_open", "sys_exit_open", false),
            syscall("sys_exit_open", "sys_exit_creat", false),
            syscall("sys_enter_renameat", "sys_enter_renameat2", true),
            syscall("sys_enter_renameat", "sys_enter_renameat", false),
            syscall("sys_enter_rename", "sys_enter_rename", false),
            syscall("sys_enter_unlinkat", "sys_enter_unlinkat", true),
            syscall("sys_enter_unlink", "sys_enter_unlink", false),
            syscall("sys_enter_truncate", "sys_enter_truncate", true),
            syscall("sys_enter_symlinkat", "sys_enter_symlinkat", true),
            syscall("sys_enter_symlink", "sys_enter_symlink", false),
            syscall("sys_enter_linkat", "sys_enter_linkat", true),
            syscall("sys_enter_link", "sys_enter_link", false),
        ];
        Lifecycle = 3, "lifecycle", [btf("sched_exit", "sched_process_exit")];
        MemTamper = 4, "mem_tamper", [
            syscall("sys_enter_ptrace", "sys_enter_ptrace", true),
            syscall("sys_enter_process_vm_writev", "sys_enter_process_vm_writev", true),
        ];
        /// The loader's read of /etc/ld.so.preload: marked by the mmap channel's
        /// `sys_enter_mmap` when the list is mapped, sent when it is unmapped.
        PreloadList = 5, "preload_list", [syscall("sys_enter_munmap", "sys_enter_munmap", true)];
        /// Reads of another process's memory: process_vm_readv here; ptrace reads come from the
        /// mem_tamper channel's ptrace program and `/proc/<pid>/mem` opened for reading from the
        /// file_change channel's open program, both counted under this channel.
        MemRead = 6, "mem_read", [
            syscall("sys_enter_process_vm_readv", "sys_enter_process_vm_readv", true),
        ];
        /// Signals a process sends to the daemon, however it names it; core-dumping signals
        /// sent to other processes are the mem_read channel's.
        Signal = 7, "signal", [btf("signal_generate", "signal_generate")];
    }
    kinds {
        /// A successful exec (new image in place). [`ExecEvent`].
        Exec = 1, "exec", Exec;
        /// A dynamic-loader variable found in the new image's environment. [`LoaderEnvEvent`].
        LoaderEnv = 2, "loader_env", Exec;
        /// A file mapped executable (mmap with PROT_EXEC, mprotect adding it, the kernel at exec).
        /// [`MmapEvent`].
        Mmap = 3, "mmap", Mmap;
        /// A watched loader or PAM file opened for write, renamed, unlinked. [`FileChangeEvent`].
        FileChange = 4, "file_change", FileChange;
        // 5 is retired (forks were a kind of their own; a child is learnt from its events' ppid).
        /// A process exited (its thread-group leader). [`ExitEvent`].
        Exit = 6, "exit", Lifecycle;
        /// Another process's memory written or attached to. [`MemTamperEvent`].
        MemTamper = 7, "mem_tamper", MemTamper;
        /// /etc/ld.so.preload as a process's loader read it. [`PreloadListEvent`].
        PreloadList = 8, "preload_list", PreloadList;
        /// Another process's memory read. [`MemReadEvent`].
        MemRead = 9, "mem_read", MemRead;
        /// A signal sent to the daemon. [`SignalEvent`].
        Signal = 10, "signal", Signal;
    }
}

/// The programs force at most one wake-up of the daemon per this many nanoseconds (a forced
/// wake-up costs the program 15–20 µs on a VM: every exec with LD_PRELOAD paid it); after a
/// wake-up the daemon drains its ring every millisecond for this long, so an event whose
/// wake-up was spared waits about a millisecond.
pub const WAKE_GAP_NS: u64 = 20_000_000;

/// Names of the eBPF maps, shared by the programs (each map's static has the name of its
/// constant, checked at compile time) and user space (which looks them up by these names).
pub mod maps {
    /// Ring buffer of all events.
    pub const EVENTS: &str = "EVENTS";
    /// `KernelConfig`, one entry.
    pub const CONFIG: &str = "CONFIG";
    /// Whether the daemon's drain timer is stopped, one `u32`.
    pub const READER_IDLE: &str = "READER_IDLE";
    /// Boot-clock time of the last wake-up the programs forced, one `u64`.
    pub const LAST_WAKE: &str = "LAST_WAKE";
    /// Events lost to a full ring buffer, per-CPU `u64` per [`Channel`](super::Channel).
    pub const LOST: &str = "LOST";
    /// Failed kernel or user memory reads that dropped or degraded an event, per-CPU `u64`
    /// per [`Channel`](super::Channel).
    pub const READ_ERRORS: &str = "READ_ERRORS";
    /// Watched directories, [`WatchKey`](super::WatchKey) to `u32`.
    pub const WATCH: &str = "WATCH";
    /// Seen-cache of safe executable mappings, [`SeenKey`](super::SeenKey) to
    /// [`SEEN_PENDING`](super::SEEN_PENDING) or [`SEEN_VOUCHED`](super::SEEN_VOUCHED).
    pub const SEEN: &str = "SEEN";
    /// The credential catalogue's executable basenames, [`ProgramName`](super::ProgramName) to
    /// `u8`.
    pub const CREDENTIAL_NAMES: &str = "CREDENTIAL_NAMES";
    /// Processes whose loader holds /etc/ld.so.preload mapped: tgid to the list's facts.
    pub const PRELOAD_MARKS: &str = "PRELOAD_MARKS";
    /// Last report of a (reader, target, operation) memory read: ktime, for one event a second.
    pub const MEM_READ_SEEN: &str = "MEM_READ_SEEN";
    /// Prevention: executables ([`ExeKey`](super::ExeKey)) to `PREVENT_EXE_*` roles.
    pub const PREVENT_EXES: &str = "PREVENT_EXES";
    /// Prevention: file versions ([`SeenKey`](super::SeenKey)) to `PREVENT_FILE_*` verdicts.
    pub const PREVENT_FILES: &str = "PREVENT_FILES";
    /// Prevention's per-CPU scratch: the outcome of the mapping being reported.
    pub const PREVENT_VERDICT: &str = "PREVENT_VERDICT";
    /// The programs' own scratch space: syscall string arguments, the exec walk's buffers,
    /// paths being built.
    pub const NAMES: &str = "NAMES";
    pub const ENVBUF: &str = "ENVBUF";
    pub const SCRATCH: &str = "SCRATCH";
}

pub const COMM_LEN: usize = 16;

/// Common prefix of every event.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    /// An [`EventKind`] value.
    pub kind: u32,
    /// Kind-specific flag bits (`*_TRUNCATED`, `*_INCOMPLETE`).
    pub flags: u32,
    /// `bpf_ktime_get_boot_ns()` when the event was made.
    pub ktime_ns: u64,
    /// Thread group id (the user-space pid).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// The real parent's thread group id (0 in exit events, which do not need it).
    pub ppid: u32,
    /// Real uid.
    pub uid: u32,
    pub gid: u32,
    pub _pad: u32,
    pub comm: [u8; COMM_LEN],
}

pub const EXEC_FILENAME_MAX: usize = 512;
pub const EXEC_ARGS_MAX: usize = 1024;

/// `ExecEvent.flags`: the filename did not fit.
pub const EXEC_FILENAME_TRUNCATED: u32 = 1 << 0;
/// `ExecEvent.flags`: the argument block did not fit.
pub const EXEC_ARGS_TRUNCATED: u32 = 1 << 1;
/// `ExecEvent.flags`: the environment could not be read to its end.
pub const EXEC_ENV_INCOMPLETE: u32 = 1 << 2;

/// A successful exec, read from the new image after the kernel set it up.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecEvent {
    pub hdr: EventHeader,
    pub argc: u32,
    /// Number of environment strings scanned.
    pub envc: u32,
    /// Bit `1 << LoaderVar` set for each loader variable present (a [`LoaderEnvEvent`] follows).
    pub loader_vars: u32,
    /// Full length of the argument block (NUL-separated), which may exceed `EXEC_ARGS_MAX`.
    pub args_len: u32,
    /// The path given to exec (`bprm->filename`), NUL-terminated.
    pub filename: [u8; EXEC_FILENAME_MAX],
    /// The start of the argument block: argv strings separated by NUL.
    pub args: [u8; EXEC_ARGS_MAX],
}

/// Loader variables looked for in every environment.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoaderVar {
    LdPreload = 0,
    LdAudit = 1,
    LdLibraryPath = 2,
}

pub const LOADER_VARS: usize = 3;
/// `NAME=` prefixes, indexed by [`LoaderVar`].
pub const LOADER_VAR_PREFIXES: [&[u8]; LOADER_VARS] =
    [b"LD_PRELOAD=", b"LD_AUDIT=", b"LD_LIBRARY_PATH="];

impl LoaderVar {
    pub const fn from_u32(v: u32) -> Option<Self> {
        match v {
            0 => Some(Self::LdPreload),
            1 => Some(Self::LdAudit),
            2 => Some(Self::LdLibraryPath),
            _ => None,
        }
    }
    pub const fn name(self) -> &'static str {
        match self {
            Self::LdPreload => "LD_PRELOAD",
            Self::LdAudit => "LD_AUDIT",
            Self::LdLibraryPath => "LD_LIBRARY_PATH",
        }
    }
}

pub const LOADER_VALUE_HEAD: usize = 4096;
pub const LOADER_VALUE_TAIL: usize = 256;

/// `LoaderEnvEvent.flags`: the value is longer than `head`; `tail` holds its last bytes.
pub const LOADER_VALUE_TRUNCATED: u32 = 1 << 0;

/// One loader variable of a new image's environment: the occurrence the loader uses (the last).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct LoaderEnvEvent {
    pub hdr: EventHeader,
    /// A [`LoaderVar`] value.
    pub var: u32,
    /// How many times the variable occurs in the environment.
    pub occurrences: u32,
    /// Index in envp of the occurrence reported (the last one: glibc's choice).
    pub index: u32,
    /// Full length of the value in bytes.
    pub value_len: u32,
    /// The value's first bytes, NUL-terminated when shorter than the buffer.
    pub head: [u8; LOADER_VALUE_HEAD],
    /// When `LOADER_VALUE_TRUNCATED`: the value's last `LOADER_VALUE_TAIL` bytes.
    pub tail: [u8; LOADER_VALUE_TAIL],
}

/// Size of a path buffer. Paths are built right to left, so a path is `path[path_off..]`
/// (NUL-terminated); when it did not fit, `PATH_TRUNCATED` is set and the tail is kept.
pub const PATH_BUF: usize = 4096;
/// Longest name (user-space string) kept from a syscall argument.
pub const NAME_MAX: usize = 256;

/// Flag (any event with a path): the path did not fit, or its walk hit the depth limit.
pub const PATH_TRUNCATED: u32 = 1 << 8;
/// Flag: a second path (`FileChangeEvent.dir`) did not fit.
pub const DIR_TRUNCATED: u32 = 1 << 9;
/// Flag (file changes): the process's root directory is not the host's (a chroot); its
/// absolute names are relative to that root, whose path is `FileChangeEvent.dir`.
pub const ROOTED_ELSEWHERE: u32 = 1 << 10;

/// What the kernel knows of a file at the moment it was used.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileInfo {
    pub ino: u64,
    pub mtime_sec: i64,
    /// `s_dev` of the file's superblock (kernel encoding: major << 20 | minor).
    pub dev: u32,
    /// `i_mode`: type and permission bits.
    pub mode: u32,
    pub uid: u32,
    /// Link count: 0 for a deleted file or a memfd.
    pub nlink: u32,
    /// Filesystem magic (`s_magic`): tmpfs, overlayfs, proc...
    pub fs_magic: u64,
}

/// `FileInfo::unsafe_facts` bits: why a file is not one only root controls.
pub const UNSAFE_UNLINKED: u32 = 1 << 0;
pub const UNSAFE_MEMORY_FS: u32 = 1 << 1;
pub const UNSAFE_NOT_ROOT_OWNED: u32 = 1 << 2;
pub const UNSAFE_WRITABLE_BY_OTHERS: u32 = 1 << 3;

impl FileInfo {
    /// Why only root might not control this file (`UNSAFE_*` bits): deleted or a memfd, on a
    /// memory filesystem, not owned by root, writable by group or others. One definition for
    /// the kernel (which skips files with none after their first mapping) and user space (which
    /// names them in `library.unsafe_reasons`).
    #[inline(always)]
    pub const fn unsafe_facts(&self) -> u32 {
        let mut bits = 0;
        if self.nlink == 0 {
            bits |= UNSAFE_UNLINKED;
        }
        if self.on_memory_fs() {
            bits |= UNSAFE_MEMORY_FS;
        }
        if self.uid != 0 {
            bits |= UNSAFE_NOT_ROOT_OWNED;
        }
        if self.mode & 0o022 != 0 {
            bits |= UNSAFE_WRITABLE_BY_OTHERS;
        }
        bits
    }

    /// A plain, linked file that only root can have put there or changed.
    #[inline(always)]
    pub const fn only_root_controls(&self) -> bool {
        self.unsafe_facts() == 0
    }

    #[inline(always)]
    pub const fn on_memory_fs(&self) -> bool {
        self.fs_magic == TMPFS_MAGIC
            || self.fs_magic == RAMFS_MAGIC
            || self.fs_magic == HUGETLBFS_MAGIC
    }
}

pub const TMPFS_MAGIC: u64 = 0x0102_1994;
pub const RAMFS_MAGIC: u64 = 0x8584_58f6;
pub const HUGETLBFS_MAGIC: u64 = 0x9584_58f6;
pub const OVERLAYFS_MAGIC: u64 = 0x794c_7630;
pub const PROC_SUPER_MAGIC: u64 = 0x9fa0;

/// `MmapEvent.source`.
pub const MMAP_SOURCE_MMAP: u32 = 1;
pub const MMAP_SOURCE_MPROTECT: u32 = 2;
/// The program's own executable, mapped by the kernel at exec (`bprm->file`).
pub const MMAP_SOURCE_EXEC_PROGRAM: u32 = 3;
/// The ELF interpreter (the dynamic loader) the kernel mapped at exec for the program's
/// PT_INTERP: the file of the mapping the new image starts running in.
pub const MMAP_SOURCE_EXEC_INTERPRETER: u32 = 4;

/// `MmapEvent.hdr.flags`: made while the process's loader held /etc/ld.so.preload mapped
/// (between its mmap and munmap of the list, when the loader maps only the objects the list
/// names), so reported past the seen-cache.
pub const MMAP_AFTER_PRELOAD_LIST: u32 = 1 << 0;

/// `MmapEvent.hdr.flags`, prevention: the process was sent SIGKILL for this mapping.
pub const MMAP_PREVENT_KILLED: u32 = 1 << 16;
/// `MmapEvent.hdr.flags`, prevention in audit mode: the mapping would have been stopped.
pub const MMAP_PREVENT_AUDIT: u32 = 1 << 17;
/// `MmapEvent.hdr.flags`, why a mapping is one to prevent: the file's own kernel facts
/// (`FileInfo::unsafe_facts`, which user space names).
pub const MMAP_PREVENT_FACTS: u32 = 1 << 18;
/// ...the directory holding it is not root's alone (owned by another user, or writable by
/// group or others, sticky or not).
pub const MMAP_PREVENT_DIR: u32 = 1 << 19;
/// ...user space listed this file version as one the package database does not vouch for.
pub const MMAP_PREVENT_LISTED: u32 = 1 << 20;
/// `MmapEvent.hdr.flags`, prevention: the LSM programs refuse this mapping (EPERM); with
/// `MMAP_PREVENT_AUDIT`, they would have.
pub const MMAP_PREVENT_DENIED: u32 = 1 << 21;

/// `KernelConfig.prevent` bits. None set: detection only, and the programs do no prevention
/// work at all.
pub const PREVENT_ON: u32 = 1 << 0;
/// Stop (SIGKILL) rather than only flag (audit).
pub const PREVENT_KILL: u32 = 1 << 1;
/// Prevent mappings of files whose kernel facts are unsafe, or in a directory not root's alone.
pub const PREVENT_FACTS: u32 = 1 << 2;
/// Prevent mappings of the file versions user space listed (`PREVENT_FILE_UNVERIFIED`).
pub const PREVENT_UNVERIFIED: u32 = 1 << 3;
/// Prevent an exec whose ELF interpreter is such a file.
pub const PREVENT_INTERPRETER: u32 = 1 << 4;
/// The LSM programs are attached: mappings a process asks for are refused (EPERM) rather
/// than killed for.
pub const PREVENT_DENY: u32 = 1 << 5;

/// `PREVENT_EXES` values: a package manager's executable (a process running it, and its
/// descendants, are never stopped); an allowed process's executable (never stopped).
pub const PREVENT_EXE_PACKAGE_MANAGER: u32 = 1;
pub const PREVENT_EXE_ALLOWED: u32 = 2;
/// `PREVENT_FILES` values: a file version the package database does not vouch for; one the
/// allowlist names (never stopped).
pub const PREVENT_FILE_UNVERIFIED: u32 = 1;
pub const PREVENT_FILE_ALLOWED: u32 = 2;

/// A file-backed mapping made executable: by mmap or mprotect, or by the kernel at exec (the
/// program and its ELF interpreter; `prot` is then PROT_READ | PROT_EXEC, `map_flags`
/// MAP_PRIVATE, as the ELF loader maps text).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MmapEvent {
    pub hdr: EventHeader,
    pub file: FileInfo,
    /// `MMAP_SOURCE_*`.
    pub source: u32,
    pub prot: u32,
    pub map_flags: u32,
    pub path_off: u32,
    pub path: [u8; PATH_BUF],
}

/// `FileChangeEvent.op`.
pub const FILE_OP_OPEN_WRITE: u32 = 1;
pub const FILE_OP_RENAME: u32 = 2;
pub const FILE_OP_UNLINK: u32 = 3;
pub const FILE_OP_TRUNCATE: u32 = 4;
/// A symbolic link created (`name` is the link; its target is read by user space).
pub const FILE_OP_SYMLINK: u32 = 5;
/// A hard link created (`name` the existing file, `name2` the new name).
pub const FILE_OP_LINK: u32 = 6;

/// A change to a watched file (loader configuration, loader binaries, PAM configuration).
/// For an open, `path` is the file resolved in the kernel; for rename, unlink and truncate,
/// `name` (and for rename `name2`, the destination) are the syscall's strings, and `dir` is
/// the directory a relative name is resolved against (cwd or dirfd), resolved in the kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FileChangeEvent {
    pub hdr: EventHeader,
    pub file: FileInfo,
    pub op: u32,
    /// `open` flags for an open; `renameat2` flags for a rename.
    pub op_flags: u32,
    pub path_off: u32,
    pub dir_off: u32,
    pub path: [u8; PATH_BUF],
    pub dir: [u8; PATH_BUF],
    pub name: [u8; NAME_MAX],
    pub name2: [u8; NAME_MAX],
}

/// A process's thread-group leader exited.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExitEvent {
    pub hdr: EventHeader,
    /// `task->exit_code` (wait status encoding).
    pub exit_code: u32,
    pub _pad: u32,
}

/// `MemTamperEvent.op`.
pub const TAMPER_PTRACE: u32 = 1;
pub const TAMPER_PROCESS_VM_WRITEV: u32 = 2;
/// `/proc/<pid>/mem` opened for write; the target pid is parsed from `path` in user space.
pub const TAMPER_PROC_MEM: u32 = 3;

pub const PTRACE_POKETEXT: u64 = 4;
pub const PTRACE_POKEDATA: u64 = 5;
pub const PTRACE_ATTACH: u64 = 16;
pub const PTRACE_SEIZE: u64 = 0x4206;

/// Another process's memory written or attached to: the Linux form of inline hooking.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MemTamperEvent {
    pub hdr: EventHeader,
    pub op: u32,
    pub target_pid: u32,
    /// The ptrace request, or the number of iovecs for process_vm_writev.
    pub request: u64,
    pub addr: u64,
    pub path_off: u32,
    pub _pad: u32,
    pub path: [u8; PATH_BUF],
}

/// A signal a process sent to the daemon, as the kernel queued it: however the sender named it
/// (its pid or a thread's, a process group, every process, a pidfd). Signal 0 (a liveness
/// probe) is never queued, so never sent.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SignalEvent {
    pub hdr: EventHeader,
    /// The first argument of the sender's syscall: for the kill family the pid as the sender
    /// gave it (negative: a process group, -1: every process), for pidfd_send_signal a pidfd.
    pub target: i32,
    pub sig: u32,
    /// The number of the sender's syscall (`u32::MAX`: unknown).
    pub syscall_nr: u32,
    /// The process that received it (the daemon).
    pub receiver: u32,
}

/// `MemReadEvent.op`.
pub const READ_PROC_MEM: u32 = 1;
pub const READ_PROCESS_VM_READV: u32 = 2;
pub const READ_PTRACE: u32 = 3;
/// `/proc/<pid>/environ` opened for reading (the target pid is the directory's name).
pub const READ_PROC_ENVIRON: u32 = 4;
/// `/proc/<pid>/coredump_filter` opened for writing: what the target's next core dump holds
/// (the target pid is the directory's name; `request` is the file's `f_mode`).
pub const READ_COREDUMP_FILTER: u32 = 5;
/// A signal whose default action dumps core sent to another process (`request` is the signal;
/// `target_pid` the pid or thread id the sender named).
pub const READ_DUMP_SIGNAL: u32 = 6;

/// Signals whose default action is to dump core (signal(7)), as a bit mask by number:
/// SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGSEGV, SIGXCPU, SIGXFSZ, SIGSYS.
pub const CORE_DUMP_SIGNALS: u64 = (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 6)
    | (1 << 7)
    | (1 << 8)
    | (1 << 11)
    | (1 << 24)
    | (1 << 25)
    | (1 << 31);

pub const PTRACE_PEEKTEXT: u64 = 1;
pub const PTRACE_PEEKDATA: u64 = 2;
pub const PTRACE_PEEKUSR: u64 = 3;
pub const PTRACE_GETREGS: u64 = 12;
pub const PTRACE_GETFPREGS: u64 = 14;
pub const PTRACE_GETREGSET: u64 = 0x4204;

/// Longest name of a `/proc/<pid>/mem` file's directory kept (the pid or thread id).
pub const PROC_DIR_NAME: usize = 16;

/// Another process's memory read: `/proc/<pid>/mem` opened for reading, process_vm_readv, a
/// ptrace read request. Repeats of one (reader, target, operation) within a second are not
/// reported again.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MemReadEvent {
    pub hdr: EventHeader,
    /// `READ_*`.
    pub op: u32,
    /// The pid given to the syscall; 0 for `/proc/<pid>/mem` (user space reads `dir`).
    pub target_pid: u32,
    /// The ptrace request; the number of remote iovecs for process_vm_readv; the file's
    /// `f_mode` for `/proc/<pid>/mem`.
    pub request: u64,
    /// The first remote address (process_vm_readv's `rvec[0].iov_base`, ptrace's `addr`).
    pub addr: u64,
    /// Bytes asked for where known: `rvec[0].iov_len`; 0 otherwise.
    pub bytes: u64,
    /// For `/proc/<pid>/mem`: the name of the file's directory (the pid), NUL-terminated.
    pub dir: [u8; PROC_DIR_NAME],
}

/// Bytes of the loader's copy of /etc/ld.so.preload kept in a [`PreloadListEvent`].
pub const PRELOAD_LIST_MAX: usize = 4096;
/// `PreloadListEvent.hdr.flags`: the list is longer than `content`.
pub const PRELOAD_LIST_TRUNCATED: u32 = 1 << 0;
/// `PreloadListEvent.hdr.flags`: the loader's copy could not be read (`content_len` is 0).
pub const PRELOAD_LIST_UNREAD: u32 = 1 << 1;

/// /etc/ld.so.preload as a process's loader read it: the file's facts when the loader mapped
/// it, and the loader's private copy of its content when the loader unmapped it, after
/// parsing it in place (glibc overwrites separators with NUL and comments with spaces).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PreloadListEvent {
    pub hdr: EventHeader,
    /// The list file when the loader mapped it.
    pub file: FileInfo,
    /// `bpf_ktime_get_boot_ns()` when the loader mapped it.
    pub mapped_ns: u64,
    /// Bytes the loader mapped: the file's size at its fstat.
    pub size: u64,
    /// Valid bytes of `content`.
    pub content_len: u32,
    pub _pad: u32,
    pub content: [u8; PRELOAD_LIST_MAX],
}

/// Kernel facts user space hands to the programs at start (map `CONFIG`, index 0).
/// Struct offsets come from the running kernel's BTF, never from one build's headers.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelConfig {
    /// Non-zero once user space filled this in; programs do nothing before.
    pub ready: u32,
    /// The daemon's own tgid: its events are dropped in the kernel.
    pub self_tgid: u32,
    pub task_real_parent: u32,
    pub task_tgid: u32,
    pub task_mm: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub mm_env_start: u32,
    pub mm_env_end: u32,
    pub mm_start_stack: u32,
    /// `struct linux_binprm`'s `filename`: the name the program was executed by.
    pub bprm_filename: u32,
    pub task_files: u32,
    pub task_fs: u32,
    pub task_exit_code: u32,
    pub files_fdt: u32,
    pub fdt_fd: u32,
    pub fdt_max_fds: u32,
    pub file_f_path: u32,
    pub file_f_inode: u32,
    pub file_f_mode: u32,
    pub path_mnt: u32,
    pub path_dentry: u32,
    pub dentry_d_parent: u32,
    pub dentry_d_name: u32,
    pub dentry_d_inode: u32,
    pub qstr_name: u32,
    pub qstr_len: u32,
    pub mount_mnt: u32,
    pub mount_mnt_parent: u32,
    pub mount_mnt_mountpoint: u32,
    pub vfsmount_mnt_root: u32,
    pub vfsmount_mnt_sb: u32,
    pub sb_s_magic: u32,
    pub sb_s_dev: u32,
    pub inode_i_mode: u32,
    pub inode_i_uid: u32,
    pub inode_i_nlink: u32,
    pub inode_i_ino: u32,
    pub inode_i_sb: u32,
    pub inode_i_mtime: u32,
    pub fs_pwd: u32,
    pub vma_vm_file: u32,
    pub vma_vm_flags: u32,
    /// This architecture's `openat` syscall number, and the offset in `struct pt_regs` of a
    /// syscall's third argument (0: unknown, the open programs then skip their flags check).
    pub openat_nr: u32,
    pub regs_arg2: u32,
    /// Non-zero when `mm_struct`'s start_stack, arg_start, arg_end, env_start, env_end are
    /// adjacent, in that order (they are read with one call then).
    pub mm_stack_args_adjacent: u32,
    /// `struct linux_binprm`'s `file`: the program the kernel loaded.
    pub bprm_file: u32,
    /// `mm_struct`'s start_code and end_code: the program's own text.
    pub mm_start_code: u32,
    pub mm_end_code: u32,
    /// The offset in `struct pt_regs` of the user instruction pointer (0: unknown, the exec
    /// program then does not look for the ELF interpreter).
    pub regs_ip: u32,
    /// `mm_struct`'s `exe_file`: the process's executable.
    pub mm_exe_file: u32,
    /// `fs_struct`'s `root`: the process's root directory.
    pub fs_root: u32,
    /// The host's root directory (the daemon's): its device (kernel encoding) and inode.
    pub host_root_dev: u32,
    pub _pad_root: u32,
    pub host_root_ino: u64,
    /// The offsets in `struct pt_regs` of a syscall's number and first argument (0: unknown,
    /// the signal program then reports neither).
    pub regs_nr: u32,
    pub regs_arg0: u32,
    /// `kernel_siginfo`'s `si_code`.
    pub siginfo_code: u32,
    pub _pad_signal: u32,
    /// `PREVENT_*` bits; 0 when prevention is off.
    pub prevent: u32,
    pub _pad_prevent: u32,
}

/// Seen-cache value of a file version reported once and not yet decided on by user space: a
/// credential program's mappings of it are still reported (see `CREDENTIAL_NAMES`), other
/// processes' are not.
pub const SEEN_PENDING: u8 = 1;
/// Seen-cache value of a file version user space vouched for, or has nothing more to ask about:
/// its mappings are not reported.
pub const SEEN_VOUCHED: u8 = 2;

/// The longest executable basename the kernel compares with the credential catalogue.
pub const PROGRAM_NAME_MAX: usize = 32;

/// Key of the `CREDENTIAL_NAMES` map: an executable's basename, NUL-padded.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgramName {
    pub bytes: [u8; PROGRAM_NAME_MAX],
}

impl ProgramName {
    /// The key for `name`; `None` when it does not fit with its terminating NUL.
    pub fn new(name: &[u8]) -> Option<Self> {
        if name.is_empty() || name.len() >= PROGRAM_NAME_MAX || name.contains(&0) {
            return None;
        }
        let mut bytes = [0u8; PROGRAM_NAME_MAX];
        bytes[..name.len()].copy_from_slice(name);
        Some(ProgramName { bytes })
    }
}

/// Key of the in-kernel seen-cache of safe executable mappings: one event per file version.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SeenKey {
    pub ino: u64,
    pub mtime_sec: i64,
    pub dev: u32,
    pub _pad: u32,
}

/// Key of the `PREVENT_EXES` map: an executable file, by device (kernel encoding: major << 20
/// | minor) and inode.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExeKey {
    pub ino: u64,
    pub dev: u32,
    pub _pad: u32,
}

/// Key of the `WATCH` map: a watched directory.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WatchKey {
    pub ino: u64,
    /// Kernel encoding: major << 20 | minor.
    pub dev: u32,
    pub _pad: u32,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all are repr(C) plain data with no padding-dependent invariants.
    unsafe impl aya::Pod for super::KernelConfig {}
    unsafe impl aya::Pod for super::SeenKey {}
    unsafe impl aya::Pod for super::ExeKey {}
    unsafe impl aya::Pod for super::WatchKey {}
    unsafe impl aya::Pod for super::ProgramName {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_index_densely() {
        for (i, k) in EventKind::ALL.iter().enumerate() {
            assert_eq!(EventKind::from_u32(*k as u32), Some(*k));
            assert_eq!(k.index(), i);
        }
        assert_eq!(EventKind::from_u32(5), None, "5 is retired");
        for (i, c) in Channel::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
    }
}
