#!/usr/bin/env bash
# Runs every fuzz target for a few seconds and fails if any of them finds a crash.
#
#   bash fuzz/run.sh [seconds]          # default 10 s per target
#   FUZZ_TARGETS="route api_key" bash fuzz/run.sh 60
#   FUZZ_SANITIZER=address bash fuzz/run.sh   # ASan, needs a nightly toolchain
#   FUZZ_JOBS=1 bash fuzz/run.sh        # targets one at a time (default: one per core)
#
# Installs cargo-fuzz if it is missing. Works on stable with `-s none` (no sanitizer:
# the product forbids unsafe code, so ASan mostly guards the C parts of dependencies).
# Builds into fuzz/target; the corpus grown by a run stays in fuzz/target/corpus/<target>
# (fuzz/corpus/<target> holds the checked-in seeds and is only read). A crash input lands
# in fuzz/artifacts/<target>/: fix the bug, then copy the input to
# fuzz/regressions/<target>/ so that `cargo test --test fuzz_regressions` replays it.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-10}"
# libFuzzer reads -max_total_time=0 as "no limit".
if ! [[ "$secs" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: bash fuzz/run.sh [seconds per target, at least 1]" >&2
  exit 2
fi
all_targets=(sse_decoder usage_parsers chunk_filter content_decoder api_key request route json_reader)
read -r -a targets <<<"${FUZZ_TARGETS:-${all_targets[*]}}"

log() { printf '== fuzz: %s\n' "$*"; }
started=$SECONDS

if ! cargo fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

toolchain=()
sanitizer=none
if [ "${FUZZ_SANITIZER:-none}" = address ]; then
  if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    toolchain=(+nightly)
    sanitizer=address
  else
    log "FUZZ_SANITIZER=address needs a nightly toolchain; none is installed, so no ASan"
  fi
fi
# --no-cfg-fuzzing: dependencies must behave as in production (miniz_oxide, for one, skips
# its Adler-32 check under cfg(fuzzing)), so that a crash replays in plain `cargo test`.
# 16 codegen units: the build is most of the time this script takes, and the checks run
# about as fast as with cargo-fuzz's default of one.
build=(-s "$sanitizer" --no-cfg-fuzzing --codegen-units 16)
if [ "$sanitizer" != none ]; then
  # Another toolchain and flags: keep its build apart so neither invalidates the other.
  build+=(--target-dir "fuzz/target/$sanitizer")
fi

log "building the fuzz targets (sanitizer: $sanitizer)"
build_started=$SECONDS
cargo "${toolchain[@]}" fuzz build "${build[@]}"
log "build took $((SECONDS - build_started)) s"

# Each target is one single-threaded libFuzzer process: run one per core at a time.
jobs="${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}"
logs=fuzz/target/logs
mkdir -p "$logs"
run_target() {
  local t=$1
  mkdir -p "fuzz/target/corpus/$t"
  rm -f "$logs/$t.rc"
  set +e
  cargo "${toolchain[@]}" fuzz run "${build[@]}" "$t" "fuzz/target/corpus/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$secs" -seed="${FUZZ_SEED:-1}" -timeout=10 -print_final_stats=1 \
    >"$logs/$t.log" 2>&1
  echo $? >"$logs/$t.rc"
}
log "running each target for $secs s, $jobs at a time"
for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
    wait -n || true
  done
  run_target "$t" &
done
wait

failed=()
for t in "${targets[@]}"; do
  out="$logs/$t.log"
  if [ "$(cat "$logs/$t.rc" 2>/dev/null)" = 0 ]; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out")
    log "$t: ok, ${runs:-?} runs, ${rate:-?} exec/s"
  else
    failed+=("$t")
    log "$t: FAILED (log: $out)"
    grep -E -A4 "panicked at|ERROR: libFuzzer|SUMMARY" "$out" | head -n 20 || true
    grep -E "Test unit written to" "$out" | head -n 1 || true
  fi
done

log "total $((SECONDS - started)) s"
if [ "${#failed[@]}" -gt 0 ]; then
  log "crashes in: ${failed[*]} (inputs in fuzz/artifacts/; keep them in fuzz/regressions/)"
  exit 1
fi
