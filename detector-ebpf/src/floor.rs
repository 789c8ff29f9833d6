//! Not attached by the daemon: the cheapest program on each attach point a per-open check could
//! use, each returning at once. `cargo xtask bench` attaches them in turn between chunks of
//! opens (`xtask/src/dispatch.rs`) to measure what the kernel spends around a program on that
//! attach point: the floor of any program that must see every open.
use aya_ebpf::{
    macros::{btf_tracepoint, raw_tracepoint, tracepoint},
    programs::{BtfTracePointContext, RawTracePointContext, TracePointContext},
};

/// For a classic syscall tracepoint (`syscalls/sys_exit_openat`): the kernel builds the trace
/// record, then runs the program.
#[tracepoint]
pub fn floor_tp(_ctx: TracePointContext) -> u32 {
    0
}

/// For the raw tracepoint `raw_syscalls/sys_exit`: no record, but it runs on every syscall.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn floor_raw(_ctx: RawTracePointContext) -> i32 {
    0
}

/// For the BTF tracepoint `sys_exit` (`raw_syscalls`, typed arguments): every syscall too.
#[btf_tracepoint(function = "sys_exit")]
pub fn floor_btf(_ctx: BtfTracePointContext) -> i32 {
    0
}
