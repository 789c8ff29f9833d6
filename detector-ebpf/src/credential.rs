//! Whether a task runs a credential program: its executable's basename in the catalogue user
//! space writes to `CREDENTIAL_NAMES` at start (the same basenames its own catalogue matches;
//! the executable, not `comm`, which a process sets at will). Asked only where a seen-cache entry
//! is still pending, so its reads (mm, exe_file, dentry, name) cost nothing on the common path.
use aya_ebpf::maps::HashMap;
use detector_common::{KernelConfig, ProgramName, PROGRAM_NAME_MAX};

use crate::{
    kernel::Task,
    read,
    shared::{config, named_map},
};

named_map! {
    /// The credential catalogue's basenames.
    static CREDENTIAL_NAMES: HashMap<ProgramName, u8> = HashMap::with_max_entries(256, 0);
}

/// 1 when the task at `task` runs an executable named in the credential catalogue, else 0. A
/// BPF subprogram: its reads' failure paths do not multiply the states the verifier explores
/// in the caller (the mmap program is near the older verifiers' limit).
#[inline(never)]
pub fn runs_credential_program(task: u64) -> u64 {
    let Some(cfg) = config() else { return 0 };
    match name_of(cfg, Task::from_addr(task)) {
        Some(key) if unsafe { CREDENTIAL_NAMES.get(key) }.is_some() => 1,
        _ => 0,
    }
}

#[inline(always)]
fn name_of(cfg: &KernelConfig, task: Task) -> Option<ProgramName> {
    let exe = task.mm(cfg)?.exe_file(cfg)?;
    let name = exe.path(cfg).dentry(cfg)?.name_ptr(cfg)?;
    let mut key = ProgramName {
        bytes: [0; PROGRAM_NAME_MAX],
    };
    read::kernel_str(name, &mut key.bytes)?;
    Some(key)
}
