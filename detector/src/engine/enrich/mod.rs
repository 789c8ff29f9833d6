//! Enrichment: what a library file holds (SHA-256, interposed credential APIs, constructors).
pub mod elf;
