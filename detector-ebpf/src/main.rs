//! detector's eBPF programs: one module per capture channel.
#![no_std]
#![no_main]

mod credential;
mod exec;
mod file_change;
mod floor;
mod kernel;
mod lifecycle;
mod lsm;
mod mem_read;
mod mem_tamper;
mod mmap;
mod preload_list;
mod prevent;
mod read;
mod shared;
mod signal;
mod tp;
mod vfs;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
