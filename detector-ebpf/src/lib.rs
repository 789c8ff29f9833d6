//! Only here so that `detector` can name this crate as a build dependency (aya-template does
//! the same); the programs are the binary target, `src/main.rs`.
#![no_std]
