use std::{path::Path, process::Command};

use anyhow::{anyhow, bail, Context as _};
use aya_build::{Package, Toolchain};

/// The harmless libraries `detector selftest` carries: C sources under `selftest/`, compiled
/// here into `$OUT_DIR/selftest/<stem>.so` with the system's C compiler (`$CC`, else `cc`) and
/// embedded by `src/cmd/selftest/payload.rs`.
const SELFTEST_LIBS: [&str; 3] = ["read_hook", "audit", "pam_module"];

fn build_selftest_libs() -> anyhow::Result<()> {
    let out = Path::new(&std::env::var("OUT_DIR").context("OUT_DIR")?).join("selftest");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    println!("cargo:rerun-if-env-changed=CC");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    for stem in SELFTEST_LIBS {
        let src = format!("selftest/{stem}.c");
        println!("cargo:rerun-if-changed={src}");
        let so = out.join(format!("{stem}.so"));
        let st = Command::new(&cc)
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&so)
            .arg(&src)
            .arg("-ldl")
            .status()
            .with_context(|| format!("running {cc} for {src} (the selftest libraries need a C compiler at build time)"))?;
        if !st.success() {
            bail!("{cc} {src}: {st}");
        }
    }
    Ok(())
}

/// Builds the selftest libraries, then `detector-ebpf` for the BPF target (nightly,
/// build-std=core, bpf-linker) so that `src/capture` can embed the object with
/// `include_bytes_aligned!`. A fuzzing build (cargo-fuzz passes `--cfg fuzzing`) embeds no object
/// and builds none.
fn main() -> anyhow::Result<()> {
    build_selftest_libs()?;
    println!("cargo:rerun-if-env-changed=CARGO_CFG_FUZZING");
    if std::env::var_os("CARGO_CFG_FUZZING").is_some() {
        return Ok(());
    }
    let meta = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let pkg = meta
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "detector-ebpf")
        .ok_or_else(|| anyhow!("detector-ebpf package not found"))?;
    let root_dir = pkg
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", pkg.manifest_path))?;
    aya_build::build_ebpf(
        [Package {
            name: pkg.name.as_str(),
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        Toolchain::default(),
    )
}
