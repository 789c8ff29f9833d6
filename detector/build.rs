use anyhow::{anyhow, Context as _};
use aya_build::{Package, Toolchain};

/// Builds `detector-ebpf` for the BPF target (nightly, build-std=core, bpf-linker) so that
/// `src/capture` can embed the object with `include_bytes_aligned!`.
fn main() -> anyhow::Result<()> {
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
