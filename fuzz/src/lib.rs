//! Fuzz targets for LLMObserve's pure input handling. The properties live in
//! `fuzz/checks.rs`, shared with the main crate's `tests/fuzz_regressions.rs`.

#[path = "../checks.rs"]
pub mod checks;
