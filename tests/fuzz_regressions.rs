//! Replays the fuzzers' saved inputs through the fuzz targets' own checks.
//!
//! `fuzz/checks.rs` holds one `check_*` function per cargo-fuzz target; it is compiled
//! here too, so `cargo test` (stable, no cargo-fuzz) re-runs every crash input kept in
//! `fuzz/regressions/<target>/` and the seed corpora in `fuzz/corpus/<target>/`.
//! To keep a new crash: copy `fuzz/artifacts/<target>/crash-*` to
//! `fuzz/regressions/<target>/` under a name that says what it found.

#[path = "../fuzz/checks.rs"]
mod checks;

use std::path::{Path, PathBuf};

fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `check` on every file of `fuzz/<kind>/<target>/`; returns how many it ran.
/// Failing files are all reported (each check prints its own panic message) before the
/// test fails.
fn replay(kind: &str, target: &str, check: fn(&[u8])) -> usize {
    let files = inputs(kind, target);
    let failed: Vec<String> = files
        .iter()
        .filter(|file| {
            let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            std::panic::catch_unwind(|| check(&data)).is_err()
        })
        .map(|file| file.display().to_string())
        .collect();
    assert!(failed.is_empty(), "inputs failing their check: {failed:#?}");
    files.len()
}

#[test]
fn regressions_pass_their_checks() {
    for (target, check) in checks::TARGETS {
        replay("regressions", target, check);
    }
    // Parser crashes are also replayed against every provider x endpoint x streamed.
    replay(
        "regressions",
        "usage_parsers",
        checks::check_usage_parsers_all_combos,
    );
}

#[test]
fn seed_corpora_pass_their_checks() {
    for (target, check) in checks::TARGETS {
        let n = replay("corpus", target, check);
        assert!(n > 0, "fuzz/corpus/{target} has no seeds");
    }
}

#[test]
fn every_target_is_in_the_fuzz_manifest() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/Cargo.toml"))
            .unwrap_or_default();
    for (target, _) in checks::TARGETS {
        assert!(
            manifest.contains(&format!("name = \"{target}\"")),
            "{target} is missing from fuzz/Cargo.toml"
        );
    }
}
