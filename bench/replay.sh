#!/usr/bin/env bash
# Whole-run replay benchmark: packets per second of `nightjar replay` over a
# capture built by concatenating the shared corpus N times (default 20), with
# 1 and 2 workers. Prints the figures from nightjar's own stats record.
# Usage: bench/replay.sh [REPEAT]
set -euo pipefail
cd "$(dirname "$0")/.."
repeat=${1:-20}
corpus=../shared/corpus
[ -d "$corpus" ] || { echo "bench/replay.sh: $corpus not found" >&2; exit 1; }
cargo build --release --quiet
bin=target/release/nightjar
files=()
while IFS=$'\t' read -r f _; do files+=("$corpus/$f"); done < <(tail -n +2 "$corpus/PROVENANCE.tsv")
inputs=()
for _ in $(seq "$repeat"); do inputs+=("${files[@]}"); done
for w in 1 2; do
    /usr/bin/time -f "%M" -o /tmp/nightjar-bench-rss "$bin" replay --quiet --workers "$w" "${inputs[@]}" \
        | tail -n 1 | python3 -c "
import json, sys
s = json.loads(sys.stdin.read())['nightjar']['stats']
rss = open('/tmp/nightjar-bench-rss').read().strip()
print(f\"workers=$w packets={s['packets']} bytes={s['bytes']} seconds={s['elapsed_seconds']:.3f} \"
      f\"packets_per_second={s['packets_per_second']:.0f} gbit_per_second={s['bytes']*8/s['elapsed_seconds']/1e9:.3f} peak_rss_kib={rss}\")"
done
