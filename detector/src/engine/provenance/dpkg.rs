//! Debian's package database (`/var/lib/dpkg`): the files each package installed
//! (`info/<pkg>.list`, `<pkg>` being `name` or `name:arch`), their MD5 sums
//! (`info/<pkg>.md5sums`, paths without the leading slash), configuration files
//! (`info/<pkg>.conffiles`, their sums in `status`) and diversions (`diversions`: lines in threes,
//! the diverted path, where the diverted file went, and the package that diverts it or `:` for
//! the administrator).
//!
//! Paths are compared after mapping the merged-`/usr` aliases: where `<root>/lib` is a symbolic
//! link to `usr/lib` (likewise `bin`, `sbin`, `lib32`, `lib64`, `libx32`), a package's
//! `/lib/x/libc.so.6` and `/usr/lib/x/libc.so.6` are one file.
//!
//! The index of every listed path is built on the first query, not before: directory names are
//! stored once each, file names once each, and each (directory, name, package) triple is 12
//! bytes. Directories are left out (a path that is some other listed path's directory). Answers
//! are cached per path and file version (device, inode, mtime, size).
use std::{
    borrow::Cow,
    collections::HashMap,
    fs, io,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock},
};

use md5::Md5;

use super::{
    PackageDb, Provenance, CHECKSUM_SKIPPED, CONFFILE_MODIFIED, MODIFIED_SINCE_PACKAGE,
    NOT_FROM_PACKAGE, NO_PACKAGE_CHECKSUM, SYMLINK_NOT_FROM_PACKAGE,
};

/// Top-level directories that merged-`/usr` systems make links to `usr/<dir>`.
const MERGED_DIRS: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];
/// Most answers kept; past it the cache is emptied.
const CACHE_CAPACITY: usize = 4096;

/// dpkg's database under a filesystem root (`/` on the running machine). Paths given to
/// [`PackageDb::provenance`] are absolute paths inside that root. Symbolic links are resolved by
/// the kernel, so under a root other than `/` an absolute link target leads outside it (an
/// error); relative targets stay inside.
pub struct Dpkg {
    root: PathBuf,
    admin: PathBuf,
    aliases: Vec<&'static str>,
    hash_budget: u64,
    index: OnceLock<Result<Index, String>>,
    cache: Mutex<HashMap<PathBuf, (Version, Provenance)>>,
}

/// (device, inode, mtime s, mtime ns, size) of the file, and inode of the path itself (a link).
type Version = (u64, u64, i64, i64, u64, u64);

impl Dpkg {
    /// The database at `<root>/var/lib/dpkg`; nothing is read until the first query but the
    /// merged-`/usr` links of `root`.
    pub fn new(root: &Path) -> Self {
        let aliases = MERGED_DIRS
            .iter()
            .copied()
            .filter(|d| {
                fs::read_link(root.join(d))
                    .is_ok_and(|t| t == Path::new("usr").join(d) || t == Path::new("/usr").join(d))
            })
            .collect();
        Dpkg {
            root: root.to_owned(),
            admin: root.join("var/lib/dpkg"),
            aliases,
            hash_budget: crate::engine::enrich::elf::DEFAULT_HASH_BUDGET,
            index: OnceLock::new(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `root` has a dpkg database.
    pub fn present(root: &Path) -> bool {
        root.join("var/lib/dpkg/info").is_dir()
    }

    /// Files over `budget` bytes are not hashed (`checksum_skipped`).
    pub fn with_hash_budget(mut self, budget: u64) -> Self {
        self.hash_budget = budget;
        self
    }

    /// The index, built on first use.
    fn index(&self) -> io::Result<&Index> {
        self.index
            .get_or_init(|| {
                let started = std::time::Instant::now();
                let index = Index::build(&self.admin, &|p| self.normalise(p).into_owned());
                // Building reads every package's file list (megabytes) that the index no longer
                // needs: hand the freed heap back rather than keep it in the daemon's RSS.
                // SAFETY: malloc_trim only releases free memory of glibc's allocator.
                unsafe { libc::malloc_trim(0) };
                if let Ok(i) = &index {
                    log::info!(
                        "package index of {}: {} files of {} packages, {} KiB, built in {:.1} ms",
                        self.admin.display(),
                        i.len(),
                        i.packages.len(),
                        i.heap_bytes() / 1024,
                        started.elapsed().as_secs_f64() * 1e3
                    );
                }
                index
            })
            .as_ref()
            .map_err(|e| io::Error::other(e.clone()))
    }

    /// `path` with a merged-`/usr` alias prefix (`/lib/...`) replaced by its target (`/usr/lib/...`).
    fn normalise<'a>(&self, path: &'a str) -> Cow<'a, str> {
        for d in &self.aliases {
            if let Some(rest) = path.strip_prefix('/').and_then(|p| p.strip_prefix(d)) {
                if rest.is_empty() || rest.starts_with('/') {
                    return Cow::Owned(format!("/usr/{d}{rest}"));
                }
            }
        }
        Cow::Borrowed(path)
    }

    /// Provenance of `path` (inside the root); the checksum is taken of the bytes at `bytes`
    /// when given (a file the daemon reads through `/proc/<pid>/map_files`), else of the file.
    fn answer(&self, path: &Path, bytes: Option<&Path>) -> io::Result<Provenance> {
        let rel = path
            .strip_prefix("/")
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "the path is not absolute"))?;
        let full = self.root.join(rel);
        let meta = fs::metadata(bytes.unwrap_or(&full))?;
        let link_meta = fs::symlink_metadata(&full)?;
        let version = (
            meta.dev(),
            meta.ino(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.size(),
            link_meta.ino(),
        );
        if let Some((v, p)) = self.cache.lock().unwrap().get(&full) {
            if *v == version {
                return Ok(p.clone());
            }
        }
        // Resolved as a process with that root resolves it (the root may be another mount
        // namespace's, which `fs::canonicalize` would leave for the daemon's).
        let inside = path
            .to_str()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path is not UTF-8"))?;
        let target = super::resolve_in(&self.root, inside, false)?;
        let target = self.normalise(&target).into_owned();
        // The path with its directories resolved but not its last component: the link itself.
        let link = link_meta
            .file_type()
            .is_symlink()
            .then(|| super::resolve_in(&self.root, inside, true).ok())
            .flatten()
            .map(|l| self.normalise(&l).into_owned());
        let index = self.index()?;
        let read_at = match bytes {
            Some(b) => b.to_owned(),
            None => self.root.join(&target[1..]),
        };
        let mut p = self.check(index, &target, &read_at)?;
        if let Some(link) = link.filter(|l| *l != target) {
            p.symlink_package = self
                .owners_at(index, &link)
                .first()
                .map(|(pkg, _)| pkg.to_string());
            if p.symlink_package.is_none() {
                p.verified = false;
                p.reasons.push(SYMLINK_NOT_FROM_PACKAGE);
            }
        }
        let mut cache = self.cache.lock().unwrap();
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(full, (version, p.clone()));
        Ok(p)
    }

    /// The packages whose file is the one at `path` (normalised), each with the path it lists
    /// for it: diversions move a package's file from the path it lists to another.
    fn owners_at<'i>(&self, index: &'i Index, path: &str) -> Vec<(&'i str, String)> {
        if let Some(d) = index.diversions.iter().find(|d| d.to == path) {
            // The diverted file: any package's but the diverter's.
            return index
                .owners(&d.from)
                .into_iter()
                .filter(|p| d.by.as_deref() != Some(*p))
                .map(|p| (p, d.from.clone()))
                .collect();
        }
        if let Some(d) = index.diversions.iter().find(|d| d.from == path) {
            // Only the diverting package installs at the diverted path.
            return index
                .owners(path)
                .into_iter()
                .filter(|p| d.by.as_deref() == Some(*p))
                .map(|p| (p, path.to_owned()))
                .collect();
        }
        index
            .owners(path)
            .into_iter()
            .map(|p| (p, path.to_owned()))
            .collect()
    }

    /// Provenance of the file at `path` (normalised, no links), read at `full`.
    fn check(&self, index: &Index, path: &str, full: &Path) -> io::Result<Provenance> {
        let owners = self.owners_at(index, path);
        if owners.is_empty() {
            return Ok(Provenance {
                reasons: vec![NOT_FROM_PACKAGE],
                ..Default::default()
            });
        }
        let mut sum: Option<Option<String>> = None;
        let mut first: Option<Provenance> = None;
        for (pkg, listed) in &owners {
            let (expected, conffile) = match self.md5sum(pkg, listed) {
                Some(m) => (Some(m), false),
                None => (self.conffile_md5sum(pkg, listed), true),
            };
            let reason = match expected {
                None => Some(NO_PACKAGE_CHECKSUM),
                Some(expected) => {
                    let actual = match &sum {
                        Some(s) => s.clone(),
                        None => sum.insert(md5_file(full, self.hash_budget)?).clone(),
                    };
                    match actual {
                        None => Some(CHECKSUM_SKIPPED),
                        Some(a) if a == expected => None,
                        Some(_) if conffile => Some(CONFFILE_MODIFIED),
                        Some(_) => Some(MODIFIED_SINCE_PACKAGE),
                    }
                }
            };
            let p = Provenance {
                package: Some(pkg.to_string()),
                verified: reason.is_none(),
                reasons: reason.into_iter().collect(),
                symlink_package: None,
            };
            if p.verified {
                return Ok(p);
            }
            first.get_or_insert(p);
        }
        Ok(first.expect("at least one owner"))
    }

    /// The MD5 sum `pkg`'s md5sums file records for `path` (normalised).
    fn md5sum(&self, pkg: &str, path: &str) -> Option<String> {
        let text = fs::read_to_string(self.admin.join(format!("info/{pkg}.md5sums"))).ok()?;
        text.lines().find_map(|l| {
            let (sum, p) = l.split_once(' ')?;
            let p = p.trim_start_matches(' ');
            let p = format!("/{}", p.trim_start_matches('/'));
            (self.normalise(&p) == path).then(|| sum.to_ascii_lowercase())
        })
    }

    /// The MD5 sum `status` records for `path` when it is one of `pkg`'s configuration files.
    fn conffile_md5sum(&self, pkg: &str, path: &str) -> Option<String> {
        let conffiles =
            fs::read_to_string(self.admin.join(format!("info/{pkg}.conffiles"))).ok()?;
        // Lines may carry flags after the path ("remove-on-upgrade /etc/x").
        if !conffiles
            .lines()
            .any(|l| l.split(' ').any(|w| self.normalise(w) == path))
        {
            return None;
        }
        let status = fs::read_to_string(self.admin.join("status")).ok()?;
        let (name, arch) = match pkg.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (pkg, None),
        };
        for stanza in status.split("\n\n") {
            let field = |f: &str| {
                stanza
                    .lines()
                    .find_map(|l| l.strip_prefix(f)?.strip_prefix(": "))
            };
            if field("Package") != Some(name) {
                continue;
            }
            if let (Some(a), Some(sa)) = (arch, field("Architecture")) {
                if a != sa {
                    continue;
                }
            }
            let found = stanza
                .lines()
                .skip_while(|l| !l.starts_with("Conffiles:"))
                .skip(1)
                .take_while(|l| l.starts_with(' '))
                .find_map(|l| {
                    let mut w = l.split_whitespace();
                    let (p, sum) = (w.next()?, w.next()?);
                    (self.normalise(p) == path).then(|| sum.to_owned())
                });
            // "newconffile" marks a conffile not yet installed: no sum.
            return found.filter(|s| s.len() == 32);
        }
        None
    }
}

impl PackageDb for Dpkg {
    fn provenance(&self, path: &Path) -> io::Result<Provenance> {
        self.answer(path, None)
    }

    fn provenance_of_bytes(&self, path: &Path, bytes: &Path) -> io::Result<Provenance> {
        self.answer(path, Some(bytes))
    }

    fn warm(&self) {
        if let Err(e) = self.index() {
            log::warn!("{}: package index: {e}", self.admin.display());
        }
    }
}

/// MD5 of the file's bytes; `None` when there are more than `budget`.
fn md5_file(path: &Path, budget: u64) -> io::Result<Option<String>> {
    super::digest_file::<Md5>(path, budget)
}

/// A diversion, its paths normalised; `by` is `None` for the administrator's (`:`).
#[derive(Debug)]
struct Diversion {
    from: String,
    to: String,
    by: Option<String>,
}

/// Every path the packages list, with the packages that list it.
struct Index {
    packages: Vec<Box<str>>,
    dirs: HashMap<Box<str>, u32>,
    /// File names, each followed by '\n' (a .list line cannot hold one).
    names: String,
    /// Sorted by (directory, name).
    entries: Vec<Entry>,
    diversions: Vec<Diversion>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    dir: u32,
    name: u32,
    package: u32,
}

impl Index {
    fn build(admin: &Path, normalise: &dyn Fn(&str) -> String) -> Result<Index, String> {
        let info = admin.join("info");
        let read = |p: &Path| fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
        let mut lists: Vec<(String, PathBuf)> = fs::read_dir(&info)
            .map_err(|e| format!("{}: {e}", info.display()))?
            .filter_map(|e| {
                let e = e.ok()?;
                let name = e.file_name().into_string().ok()?;
                Some((name.strip_suffix(".list")?.to_owned(), e.path()))
            })
            .collect();
        lists.sort();
        let mut index = Index {
            packages: Vec::with_capacity(lists.len()),
            dirs: HashMap::new(),
            names: String::new(),
            entries: Vec::new(),
            diversions: Vec::new(),
        };
        // Each distinct file name gets an id while reading; `name` holds ids until the names are
        // laid out in sorted order, then offsets, so that comparing offsets compares names.
        let mut name_ids: HashMap<Box<str>, u32> = HashMap::new();
        let mut name_list: Vec<Box<str>> = Vec::new();
        for (package, path) in lists {
            let text = read(&path)?;
            let pkg = index.packages.len() as u32;
            index.packages.push(package.into_boxed_str());
            for line in text.lines() {
                if !line.starts_with('/') || line == "/." {
                    continue;
                }
                let line = normalise(line);
                let Some((dir, name)) = split(&line) else {
                    continue;
                };
                let dir = match index.dirs.get(dir) {
                    Some(&d) => d,
                    None => {
                        let d = index.dirs.len() as u32;
                        index.dirs.insert(dir.into(), d);
                        d
                    }
                };
                let name = match name_ids.get(name) {
                    Some(&n) => n,
                    None => {
                        let n = name_list.len() as u32;
                        name_list.push(name.into());
                        name_ids.insert(name.into(), n);
                        n
                    }
                };
                index.entries.push(Entry {
                    dir,
                    name,
                    package: pkg,
                });
            }
        }
        drop(name_ids);
        // Directories: a listed path that is the directory of another.
        let mut full = String::new();
        let dir_names: Vec<&str> = {
            let mut v = vec![""; index.dirs.len()];
            for (d, &i) in &index.dirs {
                v[i as usize] = d;
            }
            v
        };
        index.entries.retain(|e| {
            full.clear();
            full.push_str(dir_names[e.dir as usize]);
            if !full.ends_with('/') {
                full.push('/');
            }
            full.push_str(&name_list[e.name as usize]);
            !index.dirs.contains_key(full.as_str())
        });
        drop(dir_names);
        let mut used = vec![false; name_list.len()];
        for e in &index.entries {
            used[e.name as usize] = true;
        }
        let mut order: Vec<u32> = (0..name_list.len() as u32)
            .filter(|&n| used[n as usize])
            .collect();
        order.sort_unstable_by(|&a, &b| name_list[a as usize].cmp(&name_list[b as usize]));
        let mut offset = vec![0u32; name_list.len()];
        for n in order {
            offset[n as usize] = index.names.len() as u32;
            index.names.push_str(&name_list[n as usize]);
            index.names.push('\n');
        }
        drop(name_list);
        for e in &mut index.entries {
            e.name = offset[e.name as usize];
        }
        index
            .entries
            .sort_unstable_by_key(|e| (e.dir, e.name, e.package));
        index.entries.shrink_to_fit();
        index.names.shrink_to_fit();
        index.dirs.shrink_to_fit();
        let diversions = admin.join("diversions");
        if diversions.exists() {
            let text = read(&diversions)?;
            let lines: Vec<&str> = text.lines().collect();
            for d in lines.chunks_exact(3) {
                index.diversions.push(Diversion {
                    from: normalise(d[0]),
                    to: normalise(d[1]),
                    by: (d[2] != ":").then(|| d[2].to_owned()),
                });
            }
        }
        Ok(index)
    }

    /// The packages that list `path` (normalised).
    fn owners(&self, path: &str) -> Vec<&str> {
        let Some((dir, name)) = split(path) else {
            return Vec::new();
        };
        let Some(&dir) = self.dirs.get(dir) else {
            return Vec::new();
        };
        let key = |e: &Entry| (e.dir, name_at(&self.names, e.name));
        let start = self.entries.partition_point(|e| key(e) < (dir, name));
        self.entries[start..]
            .iter()
            .take_while(|e| key(e) == (dir, name))
            .map(|e| &*self.packages[e.package as usize])
            .collect()
    }

    /// Listed files (directories left out).
    fn len(&self) -> usize {
        self.entries.len()
    }

    /// Approximate heap bytes the index holds.
    fn heap_bytes(&self) -> usize {
        let packages: usize = self
            .packages
            .iter()
            .map(|p| p.len() + size_of::<Box<str>>())
            .sum();
        // hashbrown: one control byte and one slot per bucket.
        let dirs: usize = self.dirs.keys().map(|d| d.len()).sum::<usize>()
            + self.dirs.capacity() * (size_of::<(Box<str>, u32)>() + 1);
        let diversions: usize = self
            .diversions
            .iter()
            .map(|d| {
                size_of::<Diversion>()
                    + d.from.len()
                    + d.to.len()
                    + d.by.as_ref().map_or(0, |b| b.len())
            })
            .sum();
        packages
            + dirs
            + self.names.capacity()
            + self.entries.capacity() * size_of::<Entry>()
            + diversions
    }
}

fn name_at(names: &str, at: u32) -> &str {
    let rest = &names[at as usize..];
    &rest[..rest.find('\n').unwrap_or(rest.len())]
}

/// `/a/b/c` → (`/a/b`, `c`); `/a` → (`/`, `a`).
fn split(path: &str) -> Option<(&str, &str)> {
    let (dir, name) = path.rsplit_once('/')?;
    if name.is_empty() {
        return None;
    }
    Some((if dir.is_empty() { "/" } else { dir }, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::Digest as _;
    use std::os::unix::fs::symlink;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A filesystem root with a dpkg database, removed on drop.
    struct FakeRoot(PathBuf);

    impl FakeRoot {
        fn new() -> Self {
            static N: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "detector-provenance-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(dir.join("var/lib/dpkg/info")).unwrap();
            fs::create_dir_all(dir.join("usr/lib")).unwrap();
            fs::create_dir_all(dir.join("usr/bin")).unwrap();
            FakeRoot(dir)
        }

        fn write(&self, path: &str, contents: &str) {
            let p = self.0.join(path.trim_start_matches('/'));
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, contents).unwrap();
        }

        /// A package listing `files` (with their directories) with the sums of `sums`
        /// ((path, contents) pairs).
        fn package(&self, name: &str, files: &[&str], sums: &[(&str, &str)]) {
            let mut list = String::from("/.\n");
            for f in files {
                let mut dir = String::new();
                for part in f.trim_start_matches('/').split('/').collect::<Vec<_>>()
                    [..f.matches('/').count() - 1]
                    .iter()
                {
                    dir.push('/');
                    dir.push_str(part);
                    list.push_str(&format!("{dir}\n"));
                }
                list.push_str(&format!("{f}\n"));
            }
            self.write(&format!("var/lib/dpkg/info/{name}.list"), &list);
            let md5: String = sums
                .iter()
                .map(|(p, c)| {
                    format!(
                        "{}  {}\n",
                        hex(&Md5::digest(c.as_bytes())),
                        p.trim_start_matches('/')
                    )
                })
                .collect();
            self.write(&format!("var/lib/dpkg/info/{name}.md5sums"), &md5);
        }

        fn dpkg(&self) -> Dpkg {
            Dpkg::new(&self.0)
        }
    }

    impl Drop for FakeRoot {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn ask(db: &Dpkg, path: &str) -> Provenance {
        db.provenance(Path::new(path)).unwrap()
    }

    fn verified(pkg: &str) -> Provenance {
        Provenance {
            package: Some(pkg.into()),
            verified: true,
            ..Default::default()
        }
    }

    fn not_verified(pkg: Option<&str>, reasons: &[&'static str]) -> Provenance {
        Provenance {
            package: pkg.map(Into::into),
            verified: false,
            reasons: reasons.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn provenance_owned_matching_and_modified() {
        let root = FakeRoot::new();
        root.write("/usr/lib/libfoo.so.1", "foo");
        root.write("/usr/lib/libbar.so.1", "trojaned");
        root.package(
            "libfoo1:amd64",
            &["/usr/lib/libfoo.so.1", "/usr/lib/libbar.so.1"],
            &[
                ("/usr/lib/libfoo.so.1", "foo"),
                ("/usr/lib/libbar.so.1", "bar"),
            ],
        );
        let db = root.dpkg();
        assert_eq!(ask(&db, "/usr/lib/libfoo.so.1"), verified("libfoo1:amd64"));
        assert_eq!(
            ask(&db, "/usr/lib/libbar.so.1"),
            not_verified(Some("libfoo1:amd64"), &[MODIFIED_SINCE_PACKAGE])
        );
        // Directories are not indexed as files.
        assert_eq!(db.index().unwrap().len(), 2);
    }

    #[test]
    fn provenance_unowned() {
        let root = FakeRoot::new();
        root.write("/usr/lib/libfoo.so.1", "foo");
        root.write("/usr/lib/libevil.so", "evil");
        root.package(
            "libfoo1",
            &["/usr/lib/libfoo.so.1"],
            &[("/usr/lib/libfoo.so.1", "foo")],
        );
        let db = root.dpkg();
        assert_eq!(
            ask(&db, "/usr/lib/libevil.so"),
            not_verified(None, &[NOT_FROM_PACKAGE])
        );
        // A listed directory is not a package's file.
        assert_eq!(
            ask(&db, "/usr/lib"),
            not_verified(None, &[NOT_FROM_PACKAGE])
        );
        assert!(db.provenance(Path::new("/usr/lib/missing.so")).is_err());
        assert!(db.provenance(Path::new("usr/lib/libfoo.so.1")).is_err());
    }

    #[test]
    fn provenance_diverted() {
        let root = FakeRoot::new();
        root.write("/usr/bin/tool", "wrapper");
        root.write("/usr/bin/tool.distrib", "original");
        root.package("tool", &["/usr/bin/tool"], &[("/usr/bin/tool", "original")]);
        root.package(
            "tool-wrapper",
            &["/usr/bin/tool"],
            &[("/usr/bin/tool", "wrapper")],
        );
        root.write(
            "/var/lib/dpkg/diversions",
            "/usr/bin/tool\n/usr/bin/tool.distrib\ntool-wrapper\n/usr/bin/other\n/usr/bin/other.orig\n:\n",
        );
        root.write("/usr/bin/other", "admin's");
        let db = root.dpkg();
        assert_eq!(ask(&db, "/usr/bin/tool.distrib"), verified("tool"));
        assert_eq!(ask(&db, "/usr/bin/tool"), verified("tool-wrapper"));
        // The administrator diverted it: whatever is there now, no package put it there.
        assert_eq!(
            ask(&db, "/usr/bin/other"),
            not_verified(None, &[NOT_FROM_PACKAGE])
        );
    }

    #[test]
    fn provenance_merged_usr_alias() {
        let root = FakeRoot::new();
        symlink("usr/lib", root.0.join("lib")).unwrap();
        root.write("/usr/lib/x/libc.so.6", "libc");
        root.package(
            "libc6:amd64",
            &["/lib/x/libc.so.6"],
            &[("/lib/x/libc.so.6", "libc")],
        );
        let db = root.dpkg();
        assert_eq!(ask(&db, "/usr/lib/x/libc.so.6"), verified("libc6:amd64"));
        assert_eq!(ask(&db, "/lib/x/libc.so.6"), verified("libc6:amd64"));
    }

    #[test]
    fn provenance_no_alias_without_the_link() {
        let root = FakeRoot::new();
        root.write("/usr/lib/x/libc.so.6", "libc");
        root.package(
            "libc6",
            &["/lib/x/libc.so.6"],
            &[("/lib/x/libc.so.6", "libc")],
        );
        let db = root.dpkg();
        assert_eq!(
            ask(&db, "/usr/lib/x/libc.so.6"),
            not_verified(None, &[NOT_FROM_PACKAGE])
        );
    }

    #[test]
    fn provenance_symlink() {
        let root = FakeRoot::new();
        root.write("/usr/lib/libkeyutils.so.1.10", "keyutils");
        symlink(
            "libkeyutils.so.1.10",
            root.0.join("usr/lib/libkeyutils.so.1"),
        )
        .unwrap();
        symlink(
            "libkeyutils.so.1.10",
            root.0.join("usr/lib/libkeyutils.so.9"),
        )
        .unwrap();
        root.package(
            "libkeyutils1",
            &["/usr/lib/libkeyutils.so.1.10", "/usr/lib/libkeyutils.so.1"],
            &[("/usr/lib/libkeyutils.so.1.10", "keyutils")],
        );
        let db = root.dpkg();
        assert_eq!(
            ask(&db, "/usr/lib/libkeyutils.so.1"),
            Provenance {
                symlink_package: Some("libkeyutils1".into()),
                ..verified("libkeyutils1")
            }
        );
        assert_eq!(
            ask(&db, "/usr/lib/libkeyutils.so.9"),
            not_verified(Some("libkeyutils1"), &[SYMLINK_NOT_FROM_PACKAGE])
        );
        // A listed link now pointing at a file no package has.
        root.write("/usr/lib/libkeyutils.so.evil", "evil");
        fs::remove_file(root.0.join("usr/lib/libkeyutils.so.1")).unwrap();
        symlink(
            "libkeyutils.so.evil",
            root.0.join("usr/lib/libkeyutils.so.1"),
        )
        .unwrap();
        assert_eq!(
            ask(&db, "/usr/lib/libkeyutils.so.1"),
            Provenance {
                symlink_package: Some("libkeyutils1".into()),
                ..not_verified(None, &[NOT_FROM_PACKAGE])
            }
        );
    }

    #[test]
    fn provenance_no_checksum_and_conffiles() {
        let root = FakeRoot::new();
        root.write("/usr/lib/libnosum.so", "x");
        root.write("/etc/pam.d/sshd", "edited");
        root.write("/etc/pam.d/login", "login");
        root.package(
            "pkg:amd64",
            &[
                "/usr/lib/libnosum.so",
                "/etc/pam.d/sshd",
                "/etc/pam.d/login",
            ],
            &[],
        );
        root.write(
            "/var/lib/dpkg/info/pkg:amd64.conffiles",
            "/etc/pam.d/sshd\n/etc/pam.d/login\n",
        );
        root.write(
            "/var/lib/dpkg/status",
            &format!(
                "Package: other\nArchitecture: amd64\nConffiles:\n /etc/pam.d/login 0123\n\n\
                 Package: pkg\nStatus: install ok installed\nArchitecture: amd64\nConffiles:\n \
                 /etc/pam.d/sshd {}\n /etc/pam.d/login {}\nDescription: x\n\n",
                hex(&Md5::digest(b"packaged")),
                hex(&Md5::digest(b"login")),
            ),
        );
        let db = root.dpkg();
        assert_eq!(
            ask(&db, "/usr/lib/libnosum.so"),
            not_verified(Some("pkg:amd64"), &[NO_PACKAGE_CHECKSUM])
        );
        assert_eq!(
            ask(&db, "/etc/pam.d/sshd"),
            not_verified(Some("pkg:amd64"), &[CONFFILE_MODIFIED])
        );
        assert_eq!(ask(&db, "/etc/pam.d/login"), verified("pkg:amd64"));
    }

    #[test]
    fn provenance_cache_follows_the_file_version() {
        let root = FakeRoot::new();
        root.write("/usr/lib/libfoo.so.1", "foo");
        root.package(
            "libfoo1",
            &["/usr/lib/libfoo.so.1"],
            &[("/usr/lib/libfoo.so.1", "foo")],
        );
        let db = root.dpkg().with_hash_budget(8);
        assert_eq!(ask(&db, "/usr/lib/libfoo.so.1"), verified("libfoo1"));
        root.write("/usr/lib/libfoo.so.1", "foo, then more");
        assert_eq!(
            ask(&db, "/usr/lib/libfoo.so.1"),
            not_verified(Some("libfoo1"), &[CHECKSUM_SKIPPED])
        );
        root.write("/usr/lib/libfoo.so.1", "fo0");
        assert_eq!(
            ask(&db, "/usr/lib/libfoo.so.1"),
            not_verified(Some("libfoo1"), &[MODIFIED_SINCE_PACKAGE])
        );
    }

    #[test]
    fn provenance_of_this_machine() {
        if !Dpkg::present(Path::new("/")) {
            eprintln!("no dpkg database here; skipped");
            return;
        }
        let db = Dpkg::new(Path::new("/"));
        for libc in [
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "/lib/x86_64-linux-gnu/libc.so.6",
        ] {
            let p = ask(&db, libc);
            assert!(p.verified, "{libc}: {p:?}");
            assert_eq!(
                p.package.as_deref().and_then(|p| p.split(':').next()),
                Some("libc6"),
                "{libc}: {p:?}"
            );
        }
        let tmp =
            std::env::temp_dir().join(format!("detector-provenance-{}.so", std::process::id()));
        fs::write(&tmp, "not packaged").unwrap();
        let p = db.provenance(&tmp);
        let _ = fs::remove_file(&tmp);
        assert_eq!(p.unwrap(), not_verified(None, &[NOT_FROM_PACKAGE]));
    }

    /// `cargo test -p detector provenance_measure -- --ignored --nocapture`: the index's size
    /// and the first lookup's time on this machine's database.
    #[test]
    #[ignore]
    fn provenance_measure() {
        let db = Dpkg::new(Path::new("/"));
        let t = std::time::Instant::now();
        let p = ask(&db, "/usr/lib/x86_64-linux-gnu/libc.so.6");
        let first = t.elapsed();
        let t = std::time::Instant::now();
        let again = ask(&db, "/usr/lib/x86_64-linux-gnu/libc.so.6");
        let cached = t.elapsed();
        assert_eq!(p, again);
        let index = db.index().unwrap();
        eprintln!(
            "{p:?}\nfirst lookup {first:?} (index build + md5), cached {cached:?}; index: {} \
             files, {} packages, {} directories, about {} bytes",
            index.len(),
            index.packages.len(),
            index.dirs.len(),
            index.heap_bytes()
        );
    }
}
