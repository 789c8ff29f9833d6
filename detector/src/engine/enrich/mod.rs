//! Enrichment: what the file an alert names holds — SHA-256, interposed credential APIs,
//! constructors — read off the reader's path. The daemon runs it on a [`pool::Pool`] of threads
//! with a lane of its own for credential processes; `detector scan` runs it inline.
pub mod elf;
pub mod pool;

use crate::capture::names;
use std::path::PathBuf;

use serde::Serialize;

use crate::engine::{
    library::{Library, PROVENANCE_REASONS},
    provenance::{verifier::Verifier, Provenance, NOT_FROM_PACKAGE},
    rules::Finding,
};
use crate::output::alert::Detection;
use elf::{ElfCache, ElfFacts, DEFAULT_CACHE_CAPACITY};

/// Something the enrichment of an alert's file did not do, and why (`library.enrichment_skipped`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Skipped {
    /// What is missing from the alert: `hash` or `analysis` (hash, hooks and constructors).
    pub what: &'static str,
    pub why: String,
}

/// The file to read for a finding's library, if any: where its bytes can still be read.
pub fn source(f: &Finding) -> Option<PathBuf> {
    source_of(f.library.as_ref()?)
}

/// Where `lib`'s bytes can still be read, if anywhere.
pub fn source_of(lib: &Library) -> Option<PathBuf> {
    match &lib.read_from {
        Some(p) => Some(names::path(p)),
        None if lib.exists && lib.path.starts_with('/') => Some(names::path(&lib.path)),
        None => None,
    }
}

/// Puts what the file analysis found into the finding; a library that defines credential APIs
/// and is not a system library gets `credential_hooks`.
pub fn apply(f: &mut Finding, facts: &ElfFacts) {
    let Some(lib) = &mut f.library else { return };
    if facts.error.is_none() {
        lib.constructors = Some(facts.constructors);
    }
    lib.sha256 = facts.sha256.clone();
    lib.hooks = facts.hooks.clone();
    if let Some(why) = &facts.hash_skipped {
        let skipped = Skipped {
            what: "hash",
            why: why.clone(),
        };
        if !lib.enrichment_skipped.contains(&skipped) {
            lib.enrichment_skipped.push(skipped);
        }
    }
    if !lib.hooks.is_empty() && !lib.is_system() {
        f.detections.insert(Detection::CredentialHooks);
    }
}

/// Puts the package database's answer into the finding: `library.package`, `library.verified`,
/// and, when it does not vouch for the file, `not_from_package` or `modified_since_package` in
/// `library.unsafe_reasons`. When it vouches for the file, the detections that asked for it
/// (`unverified_object`, `unverified_loader`) are taken off. An answer that decides nothing (no
/// database, no checksum to compare, the file over the hashing budget) leaves `verified` absent
/// and says why in `enrichment_skipped`. Applying an answer again replaces the previous one.
pub fn apply_provenance(f: &mut Finding, p: &Provenance) {
    let Some(lib) = &mut f.library else { return };
    lib.unsafe_reasons
        .retain(|r| !PROVENANCE_REASONS.contains(r));
    lib.enrichment_skipped.retain(|s| s.what != "provenance");
    lib.package = p.package.clone();
    if p.verified {
        lib.verified = Some(true);
        f.detections.remove(&Detection::UnverifiedObject);
        f.detections.remove(&Detection::UnverifiedLoader);
        return;
    }
    let decisive: Vec<&'static str> = p
        .reasons
        .iter()
        .copied()
        .filter(|r| PROVENANCE_REASONS.contains(r))
        .collect();
    if decisive.is_empty() {
        lib.verified = None;
        lib.enrichment_skipped.push(Skipped {
            what: "provenance",
            why: p.reasons.join(","),
        });
        return;
    }
    lib.verified = Some(false);
    // Listed by no package: whatever package a link to it names is not its own.
    if decisive.contains(&NOT_FROM_PACKAGE) {
        lib.package = None;
    }
    lib.unsafe_reasons.extend(decisive);
}

/// Records on the finding that its file was not analysed, and why.
pub fn skip(f: &mut Finding, why: String) {
    if let Some(lib) = &mut f.library {
        lib.enrichment_skipped.push(Skipped {
            what: "analysis",
            why,
        });
    }
}

/// Whether the finding is only a question to the package database: every detection it has goes
/// once the database vouches for the file.
pub fn verify_only(f: &Finding) -> bool {
    f.verify
        && f.detections
            .iter()
            .all(|d| matches!(d, Detection::UnverifiedObject | Detection::UnverifiedLoader))
}

/// Inline enrichment with a cache, for one-shot sweeps.
pub struct Enricher {
    cache: ElfCache,
    verifier: Verifier,
}

impl Enricher {
    pub fn new(hash_budget: u64) -> Self {
        Enricher {
            cache: ElfCache::new(DEFAULT_CACHE_CAPACITY, hash_budget),
            verifier: Verifier::new(hash_budget),
        }
    }

    /// Verifies the finding's file when it asks for it, then analyses it (unless the package
    /// database vouched for it and nothing else is left to say).
    pub fn enrich(&mut self, f: &mut Finding) {
        let Some(path) = source(f) else { return };
        if let Some(lib) = f.library.as_ref().filter(|_| f.verify) {
            let p = self.verifier.verify(lib.root.as_deref(), &lib.path, &path);
            apply_provenance(f, &p);
            if p.verified && f.detections.is_empty() {
                return;
            }
        }
        let facts = self.cache.get(&path);
        apply(f, &facts);
    }
}
