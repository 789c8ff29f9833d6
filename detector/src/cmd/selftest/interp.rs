//! The system's dynamic loader: the ELF interpreter (PT_INTERP) a system program names.
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _, Result};

const PT_INTERP: u32 = 3;

/// The PT_INTERP of `program` (a 64-bit little-endian ELF).
pub fn of(program: &Path) -> Result<PathBuf> {
    let elf = std::fs::read(program).with_context(|| format!("reading {}", program.display()))?;
    parse(&elf).ok_or_else(|| anyhow!("{}: no ELF interpreter found", program.display()))
}

fn parse(elf: &[u8]) -> Option<PathBuf> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(elf.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(elf.get(o..o + 8)?.try_into().ok()?));
    // ELF magic, ELFCLASS64, ELFDATA2LSB.
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    (0..phnum).find_map(|i| {
        let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if u32_at(ph)? != PT_INTERP {
            return None;
        }
        let off = usize::try_from(u64_at(ph + 8)?).ok()?;
        let len = usize::try_from(u64_at(ph + 32)?).ok()?;
        let raw = elf.get(off..off.checked_add(len)?)?;
        let name = raw.split(|&b| b == 0).next()?;
        use std::os::unix::ffi::OsStrExt as _;
        Some(PathBuf::from(std::ffi::OsStr::from_bytes(name)))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_system_program_names_the_loader() {
        let interp = super::of(std::path::Path::new("/bin/true")).unwrap();
        assert!(interp.to_string_lossy().contains("ld-linux"), "{interp:?}");
        assert!(interp.exists());
    }

    #[test]
    fn not_an_elf_is_none() {
        assert!(super::parse(b"#!/bin/sh\n").is_none());
        assert!(super::parse(b"\x7fELF\x02\x01").is_none());
    }
}
