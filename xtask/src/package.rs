//! `cargo xtask package`: target/debian/detector_<version>_amd64.deb, built with dpkg-deb from
//! target/release/detector and packaging/, then checked with lintian (any error fails).
//!
//! The package holds the stripped binary (/usr/bin/detector), the unit
//! (/lib/systemd/system/detector.service), the commented configuration as a conffile
//! (/etc/detector/detector.toml), the man page and the bash, zsh and fish completions (generated
//! by the binary itself: `detector man`, `detector completions SHELL`), the README, the Debian
//! changelog and copyright, lintian's overrides, and the maintainer scripts of
//! packaging/debian/. Its version is the first entry of packaging/debian/changelog, whose
//! upstream part must be the crate's version; its `Depends` are dpkg-shlibdeps' answer for the
//! binary.
use std::{
    fs,
    io::Write as _,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

const NAME: &str = "detector";
const ARCH: &str = "amd64";
const MAINTAINER: &str =
    "Seed 08c78483 maintainers <maintainers@users.noreply.r-seed-08c78483.example>";
/// Where each completion script goes, by the shell `detector completions` is given.
const COMPLETIONS: &[(&str, &str)] = &[
    ("bash", "usr/share/bash-completion/completions/detector"),
    ("zsh", "usr/share/zsh/vendor-completions/_detector"),
    ("fish", "usr/share/fish/vendor_completions.d/detector.fish"),
];
const CONFFILE: &str = "etc/detector/detector.toml";

/// Builds the package from target/release/detector (built already) and returns its path.
pub fn build(root: &Path) -> Result<PathBuf> {
    let bin = root.join("target/release/detector");
    let version = version(root, &bin)?;
    let out_dir = root.join("target/debian");
    let stage = out_dir.join(format!("{NAME}_{version}_{ARCH}"));
    if stage.exists() {
        fs::remove_dir_all(&stage)?;
    }
    fs::create_dir_all(&stage)?;

    let usr_bin = stage.join("usr/bin");
    fs::create_dir_all(&usr_bin)?;
    sh(Command::new("strip")
        .args([
            "--strip-unneeded",
            "--remove-section=.comment",
            "--remove-section=.note",
            "-o",
        ])
        .arg(usr_bin.join(NAME))
        .arg(&bin))?;
    set_mode(&usr_bin.join(NAME), 0o755)?;
    let packaging = root.join("packaging");
    install(
        &packaging.join("detector.service"),
        &stage.join("lib/systemd/system/detector.service"),
    )?;
    install(&packaging.join("detector.toml"), &stage.join(CONFFILE))?;
    let man = output(Command::new(&bin).arg("man"))?;
    write(
        &stage.join("usr/share/man/man1/detector.1.gz"),
        &gzip(&man)?,
    )?;
    for (shell, path) in COMPLETIONS {
        let script = output(Command::new(&bin).args(["completions", shell]))?;
        write(&stage.join(path), &script)?;
    }
    let doc = stage.join("usr/share/doc").join(NAME);
    install(&root.join("README.md"), &doc.join("README.md"))?;
    install(&packaging.join("debian/copyright"), &doc.join("copyright"))?;
    install(
        &packaging.join("debian/lintian-overrides"),
        &stage.join("usr/share/lintian/overrides").join(NAME),
    )?;
    let changelog = fs::read(packaging.join("debian/changelog"))?;
    write(&doc.join("changelog.Debian.gz"), &gzip(&changelog)?)?;

    let control = stage.join("DEBIAN");
    fs::create_dir_all(&control)?;
    for script in ["postinst", "prerm", "postrm"] {
        let to = control.join(script);
        install(&packaging.join("debian").join(script), &to)?;
        set_mode(&to, 0o755)?;
    }
    write(
        &control.join("conffiles"),
        format!("/{CONFFILE}\n").as_bytes(),
    )?;
    write(&control.join("md5sums"), md5sums(&stage)?.as_bytes())?;
    let depends = shlib_depends(&out_dir, &usr_bin.join(NAME))?;
    let control_text = format!(
        "Package: {NAME}\n\
         Version: {version}\n\
         Architecture: {ARCH}\n\
         Maintainer: {MAINTAINER}\n\
         Installed-Size: {size}\n\
         Depends: {depends}\n\
         Section: admin\n\
         Priority: optional\n\
         Description: eBPF sensor for credential theft through shared-object hooking\n \
         detector watches, in the kernel, every way a shared object gets into a\n \
         process (LD_PRELOAD and LD_AUDIT, ld.so --preload, /etc/ld.so.preload,\n \
         libraries from tmpfs, memfds, deleted or user-writable files, PAM modules)\n \
         and reads of credential processes' memory, and writes a JSON alert for each\n \
         one that concerns ssh, sshd, sudo, su, login and other credential programs\n \
         (MITRE ATT&CK T1056.004, T1574.006, T1556.003, T1003.007).\n \
         .\n \
         The package runs it as a hardened systemd service, detector.service.\n",
        size = du_kib(&stage)?,
    );
    write(&control.join("control"), control_text.as_bytes())?;

    let deb = out_dir.join(format!("{NAME}_{version}_{ARCH}.deb"));
    sh(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&stage)
        .arg(&deb)
        .stdout(Stdio::null()))?;
    fs::remove_dir_all(&stage)?;
    say(&format!("built {}", deb.display()));
    lintian(&deb)?;
    Ok(deb)
}

/// The Debian version: the first entry of packaging/debian/changelog, checked against the
/// binary's (the crate's) version.
fn version(root: &Path, bin: &Path) -> Result<String> {
    let path = root.join("packaging/debian/changelog");
    let text = fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    let version = debian_version(&text).with_context(|| {
        format!(
            "{}: the first line is not `{NAME} (VERSION) ...`",
            path.display()
        )
    })?;
    let crate_version = String::from_utf8(output(Command::new(bin).arg("--version"))?)?;
    let crate_version = crate_version
        .split_whitespace()
        .nth(1)
        .context("detector --version printed no version")?;
    let upstream = version
        .rsplit_once('-')
        .map_or(version.as_str(), |(u, _)| u);
    if upstream != crate_version {
        bail!(
            "{} is at {version} but the crate is at {crate_version}: add a changelog entry",
            path.display()
        );
    }
    Ok(version)
}

/// The version of a Debian changelog's first entry: `NAME (VERSION) DIST; urgency=...`.
fn debian_version(changelog: &str) -> Option<String> {
    let first = changelog.lines().next()?;
    let rest = first.strip_prefix(NAME)?.trim_start().strip_prefix('(')?;
    let (version, _) = rest.split_once(')')?;
    (!version.is_empty()).then(|| version.to_owned())
}

/// `Depends` for `bin`: dpkg-shlibdeps' `shlibs:Depends`, run in a scratch source tree (it
/// wants a debian/control).
fn shlib_depends(out_dir: &Path, bin: &Path) -> Result<String> {
    let scratch = out_dir.join("shlibdeps");
    fs::create_dir_all(scratch.join("debian"))?;
    fs::write(
        scratch.join("debian/control"),
        format!("Source: {NAME}\n\nPackage: {NAME}\nArchitecture: any\n"),
    )?;
    let text = String::from_utf8(output(
        Command::new("dpkg-shlibdeps")
            .arg("-O")
            .arg(format!("-e{}", bin.display()))
            .current_dir(&scratch),
    )?)?;
    let depends = text
        .lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .context("dpkg-shlibdeps printed no shlibs:Depends")?
        .trim()
        .to_owned();
    fs::remove_dir_all(&scratch)?;
    Ok(depends)
}

/// DEBIAN/md5sums: `md5  path` for every regular file outside DEBIAN/ and the conffile.
fn md5sums(stage: &Path) -> Result<String> {
    let mut files: Vec<PathBuf> = walk(stage)
        .into_iter()
        .filter(|p| !p.starts_with(stage.join("DEBIAN")) && !p.starts_with(stage.join("etc")))
        .collect();
    files.sort();
    let out = output(
        Command::new("md5sum")
            .args(
                files
                    .iter()
                    .map(|f| f.strip_prefix(stage).expect("under stage")),
            )
            .current_dir(stage),
    )?;
    Ok(String::from_utf8(out)?)
}

/// Runs lintian on `deb`, printing what it says; an error fails.
fn lintian(deb: &Path) -> Result<()> {
    say(&format!("lintian {}", deb.display()));
    let out = Command::new("lintian")
        .args(["--fail-on", "error", "--no-tag-display-limit"])
        .arg(deb)
        .output()
        .context("running lintian (package lintian)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    for l in text.lines() {
        println!("    | {l}");
    }
    if !out.status.success() {
        bail!(
            "lintian found errors in {} ({})",
            deb.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    say(&format!(
        "lintian: no errors ({} other tags)",
        text.lines().count()
    ));
    Ok(())
}

/// gzip -9n: no name or timestamp in the header, as Debian wants.
fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut child = Command::new("gzip")
        .args(["-9n", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("running gzip")?;
    let mut stdin = child.stdin.take().context("gzip's stdin")?;
    let input = data.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output()?;
    feeder.join().expect("the feeder thread")?;
    if !out.status.success() {
        bail!("gzip failed with {}", out.status);
    }
    Ok(out.stdout)
}

/// Copies `from` to `to` (mode 0644), creating the directories (0755).
fn install(from: &Path, to: &Path) -> Result<()> {
    let data = fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    write(to, &data)
}

fn write(to: &Path, data: &[u8]) -> Result<()> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(to, data).with_context(|| format!("writing {}", to.display()))?;
    set_mode(to, 0o644)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

/// Every regular file under `dir`, recursively.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => files.extend(walk(&p)),
            Ok(t) if t.is_file() => files.push(p),
            _ => {}
        }
    }
    files
}

/// The disk usage of `dir` in KiB, as dpkg-gencontrol counts `Installed-Size`.
fn du_kib(dir: &Path) -> Result<u64> {
    let text = String::from_utf8(output(
        Command::new("du")
            .args(["-sk", "--exclude=DEBIAN"])
            .arg(dir),
    )?)?;
    text.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("du -sk {}", dir.display()))
}

/// `cmd`'s stdout; a failure (with its stderr) is an error.
fn output(cmd: &mut Command) -> Result<Vec<u8>> {
    let out = cmd
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

fn sh(cmd: &mut Command) -> Result<()> {
    output(cmd).map(drop)
}

fn say(msg: &str) {
    println!("[package] {msg}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_changelog_version() {
        assert_eq!(
            debian_version("detector (0.1.0-1) unstable; urgency=medium\n\n  * x\n").as_deref(),
            Some("0.1.0-1")
        );
        assert_eq!(debian_version("other (1.0) unstable; urgency=low\n"), None);
        assert_eq!(debian_version("detector () unstable\n"), None);
        assert_eq!(debian_version(""), None);
    }

    #[test]
    fn the_packaged_changelog_matches_the_crate() {
        let text = include_str!("../../packaging/debian/changelog");
        let v = debian_version(text).expect("a version");
        assert_eq!(
            v.rsplit_once('-').map(|(u, _)| u),
            Some(env!("CARGO_PKG_VERSION"))
        );
    }
}
