use anyhow::{anyhow, Context as _};
use aya_build::{Package, Toolchain};

/// Builds `detector-ebpf` for the BPF target (nightly, build-std=core, bpf-linker) so that
/// `src/capture` can embed the object with `include_bytes_aligned!`. A fuzzing build (cargo-fuzz
/// passes `--cfg fuzzing`) embeds no object and builds none.
fn main() -> anyhow::Result<()> {
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
