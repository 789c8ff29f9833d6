use which::which;

/// Rebuild the programs when bpf-linker changes (aya-template does the same).
fn main() {
    if let Ok(path) = which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
