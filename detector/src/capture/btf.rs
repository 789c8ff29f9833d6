//! Facts about the running kernel handed to the eBPF programs: struct member offsets read from
//! its BTF (Rust eBPF gets no CO-RE relocations).

use anyhow::{anyhow, bail, Result};
use btf_rs::{Btf, Type};
use detector_common::KernelConfig;
use std::os::unix::fs::MetadataExt as _;

/// Builds the programs' [`KernelConfig`] for this kernel.
pub fn config(btf_path: &str, self_tgid: u32) -> Result<KernelConfig> {
    let btf =
        Btf::from_file(btf_path).map_err(|e| anyhow!("reading kernel BTF {btf_path}: {e}"))?;
    let off = |s: &str, m: &str| member_offset(&btf, s, m);
    let (regs_nr, regs_arg0) = syscall_regs(&btf);
    // start_stack, arg_start, arg_end, env_start, env_end: the exec program reads them with one
    // call when they are adjacent, in that order.
    let [start_stack, arg_start, arg_end, env_start, env_end] = [
        "start_stack",
        "arg_start",
        "arg_end",
        "env_start",
        "env_end",
    ]
    .map(|m| off("mm_struct", m));
    let (start_stack, arg_start, arg_end, env_start, env_end) =
        (start_stack?, arg_start?, arg_end?, env_start?, env_end?);
    let adjacent = [arg_start, arg_end, env_start, env_end]
        .iter()
        .enumerate()
        .all(|(i, &o)| o == start_stack + 8 * (i as u32 + 1));
    // The host's root, by identity: a process whose root differs is in a chroot.
    let root = std::fs::metadata("/").map_err(|e| anyhow!("stat /: {e}"))?;
    Ok(KernelConfig {
        ready: 1,
        self_tgid,
        task_real_parent: off("task_struct", "real_parent")?,
        task_tgid: off("task_struct", "tgid")?,
        task_mm: off("task_struct", "mm")?,
        mm_arg_start: arg_start,
        mm_arg_end: arg_end,
        mm_env_start: env_start,
        mm_env_end: env_end,
        mm_start_stack: start_stack,
        bprm_filename: off("linux_binprm", "filename")?,
        task_files: off("task_struct", "files")?,
        task_fs: off("task_struct", "fs")?,
        task_exit_code: off("task_struct", "exit_code")?,
        files_fdt: off("files_struct", "fdt")?,
        fdt_fd: off("fdtable", "fd")?,
        fdt_max_fds: off("fdtable", "max_fds")?,
        file_f_path: off("file", "f_path")?,
        file_f_inode: off("file", "f_inode")?,
        file_f_mode: off("file", "f_mode")?,
        path_mnt: off("path", "mnt")?,
        path_dentry: off("path", "dentry")?,
        dentry_d_parent: off("dentry", "d_parent")?,
        dentry_d_name: off("dentry", "d_name")?,
        dentry_d_inode: off("dentry", "d_inode")?,
        qstr_name: off("qstr", "name")?,
        qstr_len: off("qstr", "len")?,
        mount_mnt: off("mount", "mnt")?,
        mount_mnt_parent: off("mount", "mnt_parent")?,
        mount_mnt_mountpoint: off("mount", "mnt_mountpoint")?,
        vfsmount_mnt_root: off("vfsmount", "mnt_root")?,
        vfsmount_mnt_sb: off("vfsmount", "mnt_sb")?,
        sb_s_magic: off("super_block", "s_magic")?,
        sb_s_dev: off("super_block", "s_dev")?,
        inode_i_mode: off("inode", "i_mode")?,
        inode_i_uid: off("inode", "i_uid")?,
        inode_i_nlink: off("inode", "i_nlink")?,
        inode_i_ino: off("inode", "i_ino")?,
        inode_i_sb: off("inode", "i_sb")?,
        // The seconds of the modification time: i_mtime_sec (6.11+), __i_mtime (6.6+), i_mtime.
        inode_i_mtime: off("inode", "i_mtime_sec")
            .or_else(|_| off("inode", "__i_mtime"))
            .or_else(|_| off("inode", "i_mtime"))?,
        fs_pwd: off("fs_struct", "pwd")?,
        vma_vm_file: off("vm_area_struct", "vm_file")?,
        vma_vm_flags: off("vm_area_struct", "vm_flags")?,
        openat_nr: libc::SYS_openat as u32,
        regs_arg2: third_syscall_arg(&btf),
        mm_stack_args_adjacent: adjacent as u32,
        bprm_file: off("linux_binprm", "file")?,
        mm_start_code: off("mm_struct", "start_code")?,
        mm_end_code: off("mm_struct", "end_code")?,
        regs_ip: user_ip(&btf),
        mm_exe_file: off("mm_struct", "exe_file")?,
        fs_root: off("fs_struct", "root")?,
        host_root_dev: (libc::major(root.dev()) << 20) | libc::minor(root.dev()),
        _pad_root: 0,
        host_root_ino: root.ino(),
        regs_nr,
        regs_arg0,
        siginfo_code: off("kernel_siginfo", "si_code")?,
        _pad_signal: 0,
        prevent: 0,
        _pad_prevent: 0,
    })
}

/// Where `struct pt_regs` keeps a syscall's third argument on this architecture (0 when this
/// build does not know).
fn third_syscall_arg(btf: &Btf) -> u32 {
    if cfg!(target_arch = "x86_64") {
        member_offset(btf, "pt_regs", "dx").unwrap_or(0)
    } else if cfg!(target_arch = "aarch64") {
        member_offset(btf, "user_pt_regs", "regs").map_or(0, |o| o + 16)
    } else {
        0
    }
}

/// Where `struct pt_regs` keeps a syscall's number and its first argument on this architecture
/// ((0, 0) when this build does not know).
fn syscall_regs(btf: &Btf) -> (u32, u32) {
    let (nr, arg0) = if cfg!(target_arch = "x86_64") {
        (
            member_offset(btf, "pt_regs", "orig_ax"),
            member_offset(btf, "pt_regs", "di"),
        )
    } else if cfg!(target_arch = "aarch64") {
        (
            member_offset(btf, "pt_regs", "syscallno"),
            member_offset(btf, "pt_regs", "orig_x0"),
        )
    } else {
        return (0, 0);
    };
    match (nr, arg0) {
        (Ok(nr), Ok(arg0)) => (nr, arg0),
        _ => (0, 0),
    }
}

/// Where `struct pt_regs` keeps the user instruction pointer on this architecture (0 when this
/// build does not know).
fn user_ip(btf: &Btf) -> u32 {
    if cfg!(target_arch = "x86_64") {
        member_offset(btf, "pt_regs", "ip").unwrap_or(0)
    } else if cfg!(target_arch = "aarch64") {
        member_offset(btf, "user_pt_regs", "pc").unwrap_or(0)
    } else {
        0
    }
}

/// Byte offset of `member` in `struct name`, looking through anonymous structs and unions.
pub fn member_offset(btf: &Btf, name: &str, member: &str) -> Result<u32> {
    let types = btf
        .resolve_types_by_name(name)
        .map_err(|e| anyhow!("kernel BTF has no type {name}: {e}"))?;
    for t in types {
        if let Type::Struct(s) = t {
            if let Some(bits) = find_member(btf, &s, member)? {
                if bits % 8 != 0 {
                    bail!("{name}.{member} is a bitfield");
                }
                return Ok(bits / 8);
            }
        }
    }
    bail!("kernel BTF: struct {name} has no member {member}")
}

fn find_member(btf: &Btf, s: &btf_rs::Struct, member: &str) -> Result<Option<u32>> {
    for m in &s.members {
        let name = btf.resolve_name(m).unwrap_or_default();
        if name == member {
            return Ok(Some(m.bit_offset()));
        }
        if name.is_empty() {
            let inner = btf
                .resolve_chained_type(m)
                .map_err(|e| anyhow!("kernel BTF: {e}"))?;
            if let Type::Struct(inner) | Type::Union(inner) = inner {
                if let Some(bits) = find_member(btf, &inner, member)? {
                    return Ok(Some(m.bit_offset() + bits));
                }
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn btf_offsets_of_this_kernel() {
        // Needs no privilege: /sys/kernel/btf/vmlinux is world-readable.
        let Ok(btf) = Btf::from_file(crate::capture::preflight::BTF_PATH) else {
            eprintln!(
                "skipped: no kernel BTF at {}",
                crate::capture::preflight::BTF_PATH
            );
            return;
        };
        let arg_start = member_offset(&btf, "mm_struct", "arg_start").unwrap();
        let arg_end = member_offset(&btf, "mm_struct", "arg_end").unwrap();
        assert_eq!(arg_end, arg_start + 8, "arg_end follows arg_start");
        assert!(member_offset(&btf, "task_struct", "real_parent").unwrap() > 0);
        assert!(member_offset(&btf, "task_struct", "no_such_member").is_err());
        // Members inside anonymous unions and structs are found too.
        let len = member_offset(&btf, "qstr", "len").unwrap();
        assert!(len == 0 || len == 4, "qstr.len at {len}");
        assert!(member_offset(&btf, "inode", "i_nlink").is_ok());
        assert!(member_offset(&btf, "linux_binprm", "filename").is_ok());
        let cfg = config(crate::capture::preflight::BTF_PATH, 1).unwrap();
        assert_eq!(
            cfg.mm_stack_args_adjacent, 1,
            "mm_struct's stack and args are adjacent"
        );
        #[cfg(target_arch = "x86_64")]
        assert_eq!(cfg.regs_arg2, 96, "pt_regs.dx, as the x86_64 ABI has it");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(cfg.regs_ip, 128, "pt_regs.ip, as the x86_64 ABI has it");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            (cfg.regs_nr, cfg.regs_arg0),
            (120, 112),
            "pt_regs.orig_ax and di, as the x86_64 ABI has them"
        );
        assert_eq!(cfg.siginfo_code, 8, "si_code after si_signo and si_errno");
        assert_eq!(cfg.mm_end_code, cfg.mm_start_code + 8);
    }
}
