#!/usr/bin/env bash
# Interleaved A/B of two builds of the bench binary, for judging a hot-path change.
#
#   cp target/release/llmobserve-bench /tmp/bench-old    # before the change
#   cargo build --release --bin llmobserve-bench         # after it
#   bench/ab.sh /tmp/bench-old target/release/llmobserve-bench 6 --levels 1,64
#
# Each pair runs both builds back to back (pass-through and LLMObserve, closed loop, one
# round of 3 s per level unless the extra arguments say otherwise), and the pairs
# alternate which build goes first: on a 2-core machine the second run of a pair came out
# ~0.1x lower for JSON at 64 connections (2026-12-06), enough to fake or hide a change.
# Prints each run's LLMObserve/pass-through ratio and CPU a call over the pass-through's
# (both targets of a run share its conditions), then the medians per build.
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 OLD_BENCH NEW_BENCH [PAIRS] [extra llmobserve-bench arguments]" >&2
  exit 2
fi
old=$1 new=$2
shift 2
pairs=4
if [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; then
  pairs=$1
  shift
fi
out=$(mktemp -d "${TMPDIR:-/tmp}/llmo-ab.XXXXXX")

run() { # build label index
  local bin=$1 label=$2 i=$3 extra=()
  shift 3
  # Builds from before the nginx target do not know --nginx.
  if "$bin" --help | grep -q -- '--nginx'; then extra+=(--nginx off); fi
  "$bin" --targets pass-through,llmobserve --levels 64 --seconds 3 --rounds 1 \
    --no-memory --no-store --paced-json-rate 0 --paced-stream-rate 0 \
    "${extra[@]}" "$@" --out "$out/$label$i" >"$out/$label$i.log" 2>&1 || {
    # A build finds the test certificate by the path it was built at (--upstream-tls).
    echo "run $label$i of $bin failed; the end of $out/$label$i.log:" >&2
    grep -v '^ \+\(at \|[0-9]\+:\)' "$out/$label$i.log" | tail -n 8 >&2
    return 1
  }
}

for i in $(seq 1 "$pairs"); do
  if [ $((i % 2)) -eq 1 ]; then
    run "$old" A "$i" "$@"; run "$new" B "$i" "$@"
  else
    run "$new" B "$i" "$@"; run "$old" A "$i" "$@"
  fi
  echo "pair $i of $pairs done" >&2
done

python3 - "$out" "$pairs" <<'EOF'
import json, statistics, sys
out, pairs = sys.argv[1], int(sys.argv[2])
rows = {}
for build in "AB":
    for i in range(1, pairs + 1):
        r = json.load(open(f"{out}/{build}{i}/results.json"))
        for scenario, by_c in r["medians"].items():
            for conns, by_t in by_c.items():
                l, p = by_t.get("llmobserve"), by_t.get("pass-through")
                if not (l and p and p["rps"] > 0):
                    continue
                rows.setdefault((scenario, int(conns)), {"A": [], "B": []})[build].append(
                    (l["rps"] / p["rps"], l["cpu_us_per_req"] - p["cpu_us_per_req"]))
print("A = old, B = new; per run: x pass-through / CPU us a call over the pass-through's")
for (scenario, conns), by in sorted(rows.items()):
    for build in "AB":
        runs = by[build]
        each = "  ".join(f"{x:.2f}/{d:+.1f}" for x, d in runs)
        mx = statistics.median(x for x, _ in runs)
        md = statistics.median(d for _, d in runs)
        print(f"{scenario:<7} {conns:>4} {build}  median {mx:.2f}x {md:+.1f} us   [{each}]")
print(f"(runs kept in {out})")
EOF
