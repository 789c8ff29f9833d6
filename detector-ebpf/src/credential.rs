//! Whether a task runs a credential program: its executable's basename in the catalogue user
//! space writes to `CREDENTIAL_NAMES` at start (the same basenames its own catalogue matches;
//! the executable, not `comm`, which a process sets at will). Asked only where a seen-cache entry
//! is still pending, so its reads (mm, exe_file, dentry, name) cost nothing on the common path.
use aya_ebpf::maps::HashMap;
use detector_common::{KernelConfig, ProgramName, PROGRAM_NAME_MAX};

use crate::{kernel::Task, read, shared::named_map};

named_map! {
    /// The credential catalogue's basenames.
    static CREDENTIAL_NAMES: HashMap<ProgramName, u8> = HashMap::with_max_entries(256, 0);
}

/// True when `task`'s executable is named in the credential catalogue.
#[inline(always)]
pub fn runs_credential_program(cfg: &KernelConfig, task: Task) -> bool {
    name_of(cfg, task).is_some_and(|key| unsafe { CREDENTIAL_NAMES.get(&key) }.is_some())
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
