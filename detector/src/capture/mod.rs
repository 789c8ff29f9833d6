//! Capture: the kernel side of the pipeline. Preflight checks what the machine offers, the BTF
//! offsets tell the programs where kernel struct members are, `load` attaches the embedded eBPF
//! object and yields raw ring-buffer records, `decode` turns them into typed events, and `fanotify` reports
//! files created or written in the watched directories.
pub mod btf;
pub mod decode;
pub mod fanotify;
pub mod load;
pub mod names;
pub mod preflight;
