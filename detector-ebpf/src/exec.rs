//! Capture channel: exec.
//!
//! `sched/sched_process_exec` fires once the new image is in place (so the exec succeeded, for
//! execve and execveat alike) and before it runs a single user instruction: its argv and envp,
//! laid out by the kernel on the new stack, cannot be changed under us. We walk the whole envp
//! array with `bpf_loop` (no fixed cap on the number of strings), remember the last occurrence of
//! each loader variable (the one glibc's loader uses), then emit one `ExecEvent` and one
//! `LoaderEnvEvent` per variable present.
use aya_ebpf::{
    cty::c_void,
    helpers::{
        bpf_probe_read_kernel_str_bytes, bpf_probe_read_user, bpf_probe_read_user_buf,
        bpf_probe_read_user_str_bytes, generated::bpf_loop,
    },
    macros::tracepoint,
    programs::TracePointContext,
    EbpfContext,
};
use detector_common::{
    Channel, Config, EventKind, ExecEvent, LoaderEnvEvent, LoaderVar, EXEC_ARGS_MAX,
    EXEC_ARGS_TRUNCATED, EXEC_ENV_INCOMPLETE, EXEC_FILENAME_MAX, EXEC_FILENAME_TRUNCATED,
    LOADER_VALUE_HEAD, LOADER_VALUE_TAIL, LOADER_VALUE_TRUNCATED, LOADER_VARS,
};

use crate::shared::{config, current_task_and_ppid, is_self, kread, reserve, submit_flags};

/// Upper bound on envp entries walked. The kernel allows ~2 MiB of strings plus pointers
/// (at least 9 bytes each), so no real environment reaches this.
const MAX_ENV: u32 = 1 << 20;

#[derive(Clone, Copy)]
struct Found {
    ptr: u64,
    index: u32,
    count: u32,
}

struct Scan {
    envp: u64,
    envc: u32,
    incomplete: u32,
    found: [Found; LOADER_VARS],
}

#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    match try_exec(&ctx) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

fn try_exec(ctx: &TracePointContext) -> Result<(), i64> {
    let Some(cfg) = config() else { return Ok(()) };
    if is_self(cfg) {
        return Ok(());
    }
    let (task, ppid) = current_task_and_ppid(cfg);
    let mm: u64 = unsafe { kread(task, cfg.task_mm)? };
    let arg_start: u64 = unsafe { kread(mm, cfg.mm_arg_start)? };
    let arg_end: u64 = unsafe { kread(mm, cfg.mm_arg_end)? };
    let env_end: u64 = unsafe { kread(mm, cfg.mm_env_end)? };
    let start_stack: u64 = unsafe { kread(mm, cfg.mm_start_stack)? };
    // The new stack: argc, argv[argc], NULL, envp[], NULL.
    let argc: u64 =
        unsafe { bpf_probe_read_user(start_stack as *const u64).map_err(|e| e as i64)? };

    let mut scan = Scan {
        envp: start_stack + 8 * (argc + 2),
        envc: 0,
        incomplete: 0,
        found: [Found {
            ptr: 0,
            index: 0,
            count: 0,
        }; LOADER_VARS],
    };
    unsafe {
        bpf_loop(
            MAX_ENV,
            env_step as *mut c_void,
            &mut scan as *mut Scan as *mut c_void,
            0,
        )
    };

    emit_exec(ctx, cfg, ppid, argc as u32, arg_start, arg_end, &scan);
    for var in 0..LOADER_VARS {
        let f = scan.found[var];
        if f.count != 0 {
            emit_loader_env(ppid, var as u32, &f, scan.envp, env_end);
        }
    }
    Ok(())
}

/// One envp entry: stop at NULL, note loader variables.
#[inline(never)]
unsafe extern "C" fn env_step(index: u32, ctx: *mut c_void) -> i64 {
    let scan = unsafe { &mut *(ctx as *mut Scan) };
    let slot = scan.envp + 8 * index as u64;
    let Ok(ptr) = (unsafe { bpf_probe_read_user(slot as *const u64) }) else {
        scan.incomplete = 1;
        return 1;
    };
    if ptr == 0 {
        scan.envc = index;
        return 1;
    }
    let mut name = [0u8; 24];
    if unsafe { bpf_probe_read_user_buf(ptr as *const u8, &mut name) }.is_err() {
        // Near the end of the stack: fall back to a bounded string read.
        name = [0u8; 24];
        if unsafe { bpf_probe_read_user_str_bytes(ptr as *const u8, &mut name) }.is_err() {
            scan.incomplete = 1;
            return 0;
        }
    }
    if name[0] != b'L' || name[1] != b'D' || name[2] != b'_' {
        return 0;
    }
    let var = if starts_with(&name, b"LD_PRELOAD=") {
        LoaderVar::LdPreload
    } else if starts_with(&name, b"LD_AUDIT=") {
        LoaderVar::LdAudit
    } else if starts_with(&name, b"LD_LIBRARY_PATH=") {
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
    ctx: &TracePointContext,
    cfg: &Config,
    ppid: u32,
    argc: u32,
    arg_start: u64,
    arg_end: u64,
    scan: &Scan,
) {
    let Some(mut entry) = reserve::<ExecEvent>(Channel::Exec, EventKind::Exec, ppid) else {
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

    // __data_loc char[] filename: low 16 bits offset from the record start, high 16 length.
    ev.filename[0] = 0;
    if let Ok(loc) = unsafe { ctx.read_at::<u32>(cfg.tp_exec_filename as usize) } {
        let src = (ctx.as_ptr() as u64 + (loc & 0xffff) as u64) as *const u8;
        match unsafe { bpf_probe_read_kernel_str_bytes(src, &mut ev.filename) } {
            Ok(s) if s.len() + 1 >= EXEC_FILENAME_MAX => ev.hdr.flags |= EXEC_FILENAME_TRUNCATED,
            Ok(_) => {}
            Err(_) => ev.filename[0] = 0,
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
        if unsafe { bpf_probe_read_user_buf(arg_start as *const u8, dst) }.is_err() {
            ev.args_len = 0;
        }
    }
    entry.submit(submit_flags());
}

fn emit_loader_env(ppid: u32, var: u32, f: &Found, envp: u64, env_end: u64) {
    let Some(mut entry) = reserve::<LoaderEnvEvent>(Channel::Exec, EventKind::LoaderEnv, ppid)
    else {
        return;
    };
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    ev.var = var;
    ev.occurrences = f.count;
    ev.index = f.index;

    // The kernel lays strings out back to back: a value ends where the next string starts.
    let next: u64 = unsafe { bpf_probe_read_user((envp + 8 * (f.index as u64 + 1)) as *const u64) }
        .unwrap_or(0);
    let end = if next != 0 { next } else { env_end };
    let prefix = prefix_len(var);
    let value = f.ptr + prefix;
    let value_len = end.saturating_sub(value + 1);
    ev.value_len = value_len as u32;

    ev.head[0] = 0;
    let _ = unsafe { bpf_probe_read_user_str_bytes(value as *const u8, &mut ev.head) };
    ev.tail[0] = 0;
    if value_len >= LOADER_VALUE_HEAD as u64 {
        ev.hdr.flags |= LOADER_VALUE_TRUNCATED;
        let from = value + value_len - LOADER_VALUE_TAIL as u64;
        let _ = unsafe { bpf_probe_read_user_buf(from as *const u8, &mut ev.tail) };
    }
    entry.submit(submit_flags());
}
