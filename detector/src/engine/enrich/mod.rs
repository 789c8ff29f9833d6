//! Enrichment: what the file an alert names holds — SHA-256, interposed credential APIs,
//! constructors — read off the reader's path. The daemon runs it on a [`pool::Pool`] of threads
//! with a lane of its own for credential processes; `detector scan` runs it inline.
pub mod elf;
pub mod pool;

use std::path::PathBuf;

use serde::Serialize;

use crate::engine::{library::Library, rules::Finding};
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
        Some(p) => Some(PathBuf::from(p)),
        None if lib.exists && lib.path.starts_with('/') => Some(PathBuf::from(&lib.path)),
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
        lib.enrichment_skipped.push(Skipped {
            what: "hash",
            why: why.clone(),
        });
    }
    if !lib.hooks.is_empty() && !lib.is_system() {
        f.detections.insert(Detection::CredentialHooks);
    }
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

/// Inline enrichment with a cache, for one-shot sweeps.
pub struct Enricher {
    cache: ElfCache,
}

impl Enricher {
    pub fn new(hash_budget: u64) -> Self {
        Enricher {
            cache: ElfCache::new(DEFAULT_CACHE_CAPACITY, hash_budget),
        }
    }

    pub fn enrich(&mut self, f: &mut Finding) {
        if let Some(path) = source(f) {
            let facts = self.cache.get(&path);
            apply(f, &facts);
        }
    }
}
