//! Capture channel: exec.
//!
//! `sched/sched_process_exec` (as a BTF tracepoint: the kernel hands the program its arguments
//! directly instead of first formatting a trace record) fires once the new image is in place (so the exec succeeded, for
//! execve and execveat alike) and before it runs a single user instruction: its argv and envp,
//! laid out by the kernel on the new stack, cannot be changed under us. We walk the whole envp
//! array with `bpf_loop` (no fixed cap on the number of strings), remember the last occurrence of
//! each loader variable (the one glibc's loader uses), then emit one `ExecEvent` and one
//! `LoaderEnvEvent` per variable present.
//!
//! Cost: helper calls dominate, so the walk reads envp pointers 32 at a time and the strings
//! (contiguous after exec, ending at `mm->env_end`) 4 KiB at a time into a per-CPU buffer,
//! checking each string's first bytes there: a typical environment costs a handful of reads.
use aya_ebpf::{
    cty::c_void, helpers::generated::bpf_loop, macros::btf_tracepoint, maps::PerCpuArray,
    programs::BtfTracePointContext,
};
use detector_common::{
    Channel, EventKind, ExecEvent, KernelConfig, LoaderEnvEvent, LoaderVar, EXEC_ARGS_MAX,
    EXEC_ARGS_TRUNCATED, EXEC_ENV_INCOMPLETE, EXEC_FILENAME_MAX, EXEC_FILENAME_TRUNCATED,
    LOADER_VALUE_HEAD, LOADER_VALUE_TAIL, LOADER_VALUE_TRUNCATED, LOADER_VARS,
};

use crate::{
    kernel::{Bprm, StackAndArgs},
    read::{self, count_error, OrCount as _},
    shared::{
        config, current_task_and_ppid, is_self, named_map, reserve, submit_flags, submit_urgent,
    },
};

/// The channel whose read errors this program counts.
const CH: Channel = Channel::Exec;

/// Upper bound on envp entries walked. The kernel allows ~2 MiB of strings plus pointers
/// (at least 9 bytes each), so no real environment reaches this.
const MAX_ENV: u32 = 1 << 20;

#[repr(C)]
#[derive(Clone, Copy)]
struct Found {
    ptr: u64,
    index: u32,
    count: u32,
}

const PTR_BATCH: usize = 32;
const CHUNK: usize = 4096;
/// Bytes of a string's start that are compared (`LD_LIBRARY_PATH=` is 16).
const NAME: usize = 24;

/// Per-CPU buffers of the walk: a batch of envp pointers and a chunk of environment strings
/// (with room past `CHUNK` so a masked offset plus `NAME` stays inside).
/// The walk's state lives here too, not on the stack: the verifier then sees its fields as
/// unknown on every iteration and checks the callback once, instead of unrolling the loop.
#[repr(C)]
struct EnvBuf {
    scan: Scan,
    ptrs: [u64; PTR_BATCH],
    chunk: [u8; CHUNK + 32],
}

named_map! {
    static ENVBUF: PerCpuArray<EnvBuf> = PerCpuArray::with_max_entries(1, 0);
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Scan {
    envp: u64,
    env_end: u64,
    /// The strings in `EnvBuf.chunk`: user address and length.
    chunk_base: u64,
    chunk_len: u64,
    envc: u32,
    incomplete: u32,
    /// Set when a batch of pointers could not be read: read them one by one.
    single_ptrs: u32,
    found: [Found; LOADER_VARS],
}

/// `sched_process_exec(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)`; the
/// program's name is short so that the kernel's 15-byte name tells it from `sched_exit`.
#[btf_tracepoint(function = "sched_process_exec")]
pub fn sched_exec(ctx: BtfTracePointContext) -> i32 {
    let bprm = Bprm::from_addr(ctx.arg::<*const u8>(2) as u64);
    let _ = try_exec(bprm);
    0
}

fn try_exec(bprm: Bprm) -> Option<()> {
    let cfg = config()?;
    if is_self(cfg) {
        return None;
    }
    let (task, ppid) = current_task_and_ppid(cfg, CH);
    let mm = task.mm(cfg).or_count(CH)?;
    let StackAndArgs {
        start_stack,
        arg_start,
        arg_end,
        env_end,
    } = mm.stack_and_args(cfg).or_count(CH)?;
    // The new stack: argc, argv[argc], NULL, envp[], NULL.
    let argc: u64 = read::user(start_stack).or_count(CH)?;

    let buf = ENVBUF.get_ptr_mut(0)?;
    let scan = unsafe { &mut (*buf).scan };
    *scan = Scan {
        envp: start_stack + 8 * (argc + 2),
        env_end,
        chunk_base: 0,
        chunk_len: 0,
        envc: 0,
        incomplete: 0,
        single_ptrs: 0,
        found: [Found {
            ptr: 0,
            index: 0,
            count: 0,
        }; LOADER_VARS],
    };
    unsafe {
        bpf_loop(
            MAX_ENV / STEPS_PER_CALL,
            env_steps as *mut c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    let scan = unsafe { (*buf).scan };

    emit_exec(bprm, cfg, ppid, argc as u32, arg_start, arg_end, &scan);
    for var in 0..LOADER_VARS {
        let f = scan.found[var];
        if f.count != 0 {
            emit_loader_env(ppid, var as u32, &f, scan.envp, env_end);
        }
    }
    Some(())
}

/// Envp entries per `bpf_loop` callback: the call costs about as much as judging an entry.
const STEPS_PER_CALL: u32 = 4;

/// Envp entries `STEPS_PER_CALL * group ..`: stop at NULL, note loader variables.
#[inline(never)]
unsafe extern "C" fn env_steps(group: u32, _ctx: *mut c_void) -> i64 {
    let mut k = 0;
    while k < STEPS_PER_CALL {
        if unsafe { env_step(group * STEPS_PER_CALL + k) } != 0 {
            return 1;
        }
        k += 1;
    }
    0
}

/// One envp entry: 1 to stop (the NULL at the end, or unreadable), 0 to go on.
#[inline(always)]
unsafe fn env_step(index: u32) -> i64 {
    let Some(buf) = ENVBUF.get_ptr_mut(0) else {
        return 1;
    };
    let buf = unsafe { &mut *buf };
    let scan = unsafe { &mut *core::ptr::addr_of_mut!(buf.scan) };
    let slot = index as usize % PTR_BATCH;
    let from = scan.envp + 8 * index as u64;
    if slot == 0 && scan.single_ptrs == 0 {
        let dst = unsafe {
            core::slice::from_raw_parts_mut(buf.ptrs.as_mut_ptr() as *mut u8, 8 * PTR_BATCH)
        };
        if read::user_buf(from, dst).is_none() {
            // The batch ran off the stack: one pointer at a time from here on.
            scan.single_ptrs = 1;
        }
    }
    let ptr = if scan.single_ptrs != 0 {
        let Some(p) = read::user::<u64>(from) else {
            scan.incomplete = 1;
            count_error(CH);
            return 1;
        };
        p
    } else {
        buf.ptrs[slot & (PTR_BATCH - 1)]
    };
    if ptr == 0 {
        scan.envc = index;
        return 1;
    }
    // Words, not bytes: zeroing a byte array compiles to a memset loop the verifier walks.
    let mut words = [0u64; NAME / 8];
    if !name_from_chunk(scan, &mut buf.chunk, ptr, &mut words) {
        // Not readable as a chunk: this string's start alone.
        let bytes = unsafe { &mut *(words.as_mut_ptr() as *mut [u8; NAME]) };
        if read::user_str(ptr, bytes).is_none() {
            scan.incomplete = 1;
            count_error(CH);
            return 0;
        }
    }
    let name = unsafe { &*(words.as_ptr() as *const [u8; NAME]) };
    if name[0] != b'L' || name[1] != b'D' || name[2] != b'_' {
        return 0;
    }
    let var = if starts_with(name, b"LD_PRELOAD=") {
        LoaderVar::LdPreload
    } else if starts_with(name, b"LD_AUDIT=") {
        LoaderVar::LdAudit
    } else if starts_with(name, b"LD_LIBRARY_PATH=") {
        LoaderVar::LdLibraryPath
    } else {
        return 0;
    };
    // Later occurrences replace earlier ones: glibc's loader uses the last.
    let f = &mut scan.found[var as usize];
    f.ptr = ptr;
    f.index = index;
    f.count += 1;
    0
}

/// Copies the first `NAME` bytes of the string at `ptr` from the chunk buffer, reading a new
/// chunk from `ptr` when it is not in the current one.
#[inline(always)]
fn name_from_chunk(
    scan: &mut Scan,
    chunk: &mut [u8; CHUNK + 32],
    ptr: u64,
    name: &mut [u64; NAME / 8],
) -> bool {
    let off = ptr.wrapping_sub(scan.chunk_base);
    // In the last chunk every string ends (with its NUL) inside it, so a comparison stops
    // before any stale byte; elsewhere the whole name must be inside.
    let last = scan.chunk_base + scan.chunk_len >= scan.env_end;
    let inside = ptr >= scan.chunk_base
        && if last {
            off < scan.chunk_len
        } else {
            off + NAME as u64 <= scan.chunk_len
        };
    let off = if inside {
        off
    } else {
        let mut len = scan.env_end.saturating_sub(ptr);
        if len > CHUNK as u64 {
            len = CHUNK as u64;
        }
        if len == 0 {
            return false;
        }
        let dst = &mut chunk[..len as usize];
        if read::user_buf(ptr, dst).is_none() {
            scan.chunk_len = 0;
            return false;
        }
        scan.chunk_base = ptr;
        scan.chunk_len = len;
        0
    };
    let start = unsafe { chunk.as_ptr().add(off as usize & (CHUNK - 1)) } as *const u64;
    for (k, w) in name.iter_mut().enumerate() {
        *w = unsafe { start.add(k).read_unaligned() };
    }
    true
}

#[inline(always)]
fn starts_with<const N: usize>(buf: &[u8; 24], prefix: &[u8; N]) -> bool {
    let mut i = 0;
    while i < N {
        if buf[i] != prefix[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[inline(always)]
fn prefix_len(var: u32) -> u64 {
    match var {
        0 => 11, // LD_PRELOAD=
        1 => 9,  // LD_AUDIT=
        _ => 16, // LD_LIBRARY_PATH=
    }
}

fn emit_exec(
    bprm: Bprm,
    cfg: &KernelConfig,
    ppid: u32,
    argc: u32,
    arg_start: u64,
    arg_end: u64,
    scan: &Scan,
) {
    let Some(mut entry) = reserve::<ExecEvent>(EventKind::Exec, ppid) else {
        return;
    };
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    ev.argc = argc;
    ev.envc = scan.envc;
    ev.loader_vars = 0;
    for var in 0..LOADER_VARS {
        if scan.found[var].count != 0 {
            ev.loader_vars |= 1 << var;
        }
    }
    if scan.incomplete != 0 {
        ev.hdr.flags |= EXEC_ENV_INCOMPLETE;
    }

    // The name the program was executed by (bprm->filename), as the classic tracepoint's
    // `filename` field has it.
    ev.filename[0] = 0;
    if let Some(src) = bprm.filename(cfg).or_count(CH) {
        match read::kernel_str(src, &mut ev.filename).or_count(CH) {
            Some(len) if len + 1 >= EXEC_FILENAME_MAX => ev.hdr.flags |= EXEC_FILENAME_TRUNCATED,
            Some(_) => {}
            None => ev.filename[0] = 0,
        }
    }

    let len = arg_end.saturating_sub(arg_start);
    ev.args_len = len as u32;
    let mut n = len as usize;
    if n > EXEC_ARGS_MAX {
        n = EXEC_ARGS_MAX;
        ev.hdr.flags |= EXEC_ARGS_TRUNCATED;
    }
    ev.args[0] = 0;
    if n > 0 {
        // `n` is bounded for the verifier by the clamp above.
        let dst = &mut ev.args[..n];
        if read::user_buf(arg_start, dst).or_count(CH).is_none() {
            ev.args_len = 0;
        }
    }
    entry.submit(submit_flags());
}

fn emit_loader_env(ppid: u32, var: u32, f: &Found, envp: u64, env_end: u64) {
    let Some(mut entry) = reserve::<LoaderEnvEvent>(EventKind::LoaderEnv, ppid) else {
        return;
    };
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    ev.var = var;
    ev.occurrences = f.count;
    ev.index = f.index;

    // The kernel lays strings out back to back: a value ends where the next string starts.
    let next: u64 = read::user(envp + 8 * (f.index as u64 + 1))
        .or_count(CH)
        .unwrap_or(0);
    let end = if next != 0 { next } else { env_end };
    let prefix = prefix_len(var);
    let value = f.ptr + prefix;
    let value_len = end.saturating_sub(value + 1);
    ev.value_len = value_len as u32;

    ev.head[0] = 0;
    let _ = read::user_str(value, &mut ev.head).or_count(CH);
    ev.tail[0] = 0;
    if value_len >= LOADER_VALUE_HEAD as u64 {
        ev.hdr.flags |= LOADER_VALUE_TRUNCATED;
        let from = value + value_len - LOADER_VALUE_TAIL as u64;
        let _ = read::user_buf(from, &mut ev.tail).or_count(CH);
    }
    entry.submit(submit_urgent());
}
