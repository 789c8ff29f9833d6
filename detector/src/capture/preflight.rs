//! What the daemon needs from the machine, checked before loading anything, so that a missing
//! piece is reported as one clear line rather than an opaque verifier or syscall error.
use std::{fs, path::Path, process::Command};

use anyhow::{bail, Context as _, Result};
use aya::maps::MapType;

pub const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";
const TRACEFS_PATHS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Runs every check; returns the tracefs mount point in use.
pub fn check() -> Result<&'static str> {
    check_privileges()?;
    if !Path::new(BTF_PATH).exists() {
        bail!("kernel BTF is missing ({BTF_PATH} not found): run a kernel built with CONFIG_DEBUG_INFO_BTF=y");
    }
    let tracefs = ensure_tracefs()?;
    match aya::sys::is_map_supported(MapType::RingBuf) {
        Ok(true) => {}
        Ok(false) => bail!(
            "this kernel has no BPF ring buffer (BPF_MAP_TYPE_RINGBUF needs Linux 5.8 or later)"
        ),
        Err(e) => bail!("could not probe for the BPF ring buffer: {e}"),
    }
    Ok(tracefs)
}

/// This process's effective capabilities.
fn cap_eff() -> Result<u64> {
    let status = fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    Ok(status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0))
}

/// Whether this process has CAP_SYS_ADMIN (without it fanotify hides other processes' pids).
/// Whether BPF LSM programs run here: `bpf` among the active security modules (when the
/// kernel says which), and a BPF LSM program loads. The reason when not.
pub fn bpf_lsm() -> std::result::Result<(), String> {
    use aya::programs::{LsmAttachType, ProgramType};
    let list = std::fs::read_to_string("/sys/kernel/security/lsm").unwrap_or_default();
    let list = list.trim();
    if !list.is_empty() && !list.split(',').any(|l| l == "bpf") {
        return Err(format!(
            "bpf is not an active LSM ({list}): boot with lsm=...,bpf"
        ));
    }
    match aya::sys::is_program_supported(ProgramType::Lsm(LsmAttachType::Mac)) {
        Ok(true) => Ok(()),
        Ok(false) => Err("BPF LSM programs are not supported".to_owned()),
        Err(e) => Err(format!("BPF LSM programs are refused: {e}")),
    }
}

pub fn has_sys_admin() -> bool {
    cap_eff().is_ok_and(|c| c & (1 << CAP_SYS_ADMIN) != 0)
}

pub fn check_privileges() -> Result<()> {
    let cap_eff = cap_eff()?;
    let has = |cap: u32| cap_eff & (1 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    bail!(
        "not enough privilege to load eBPF programs: run as root (or with CAP_BPF and CAP_PERFMON)"
    )
}

/// Finds tracefs; mounts it at /sys/kernel/tracing when it is not mounted (it is not at boot
/// on some machines).
pub fn ensure_tracefs() -> Result<&'static str> {
    if let Some(p) = TRACEFS_PATHS
        .iter()
        .find(|p| Path::new(p).join("events").is_dir())
    {
        return Ok(p);
    }
    let target = TRACEFS_PATHS[0];
    let mounted = Path::new(target).is_dir()
        && Command::new("mount")
            .args(["-t", "tracefs", "nodev", target])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
    if mounted && Path::new(target).join("events").is_dir() {
        log::info!("mounted tracefs at {target}");
        return Ok(target);
    }
    bail!("tracefs is not mounted and could not be mounted: run `mount -t tracefs nodev {target}` (the kernel needs CONFIG_TRACING)")
}
