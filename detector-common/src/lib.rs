//! Event types shared by the eBPF programs and user space.
//!
//! Every event starts with an [`EventHeader`] whose `kind` is one of the stable numeric
//! [`EventKind`] values. Events are fixed-size `#[repr(C)]` structs; whenever a kernel
//! string did not fit, a `*_TRUNCATED` flag says so. Nothing is cut silently.
#![no_std]

/// Stable numeric event kinds. Never renumber: add new kinds at the end.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A successful exec (new image in place). [`ExecEvent`].
    Exec = 1,
    /// A dynamic-loader variable found in the new image's environment. [`LoaderEnvEvent`].
    LoaderEnv = 2,
}

impl EventKind {
    pub const fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Exec),
            2 => Some(Self::LoaderEnv),
            _ => None,
        }
    }
}

/// Capture channels, used to index the per-channel loss counters (`LOST` map).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    Exec = 0,
}

/// Number of entries in the `LOST` per-CPU array.
pub const CHANNELS: u32 = 1;
pub const CHANNEL_NAMES: [&str; CHANNELS as usize] = ["exec"];

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
    /// Thread group id of the real parent.
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

/// Kernel facts user space hands to the programs at start (map `CONFIG`, index 0).
/// Struct offsets come from the running kernel's BTF, never from one build's headers.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Config {
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
    /// Offset of the `__data_loc char[] filename` field in `sched/sched_process_exec`.
    pub tp_exec_filename: u32,
    pub _pad: u32,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all are repr(C) plain data with no padding-dependent invariants.
    unsafe impl aya::Pod for super::Config {}
}
