#!/usr/bin/env bash
# Instruction counts per packet after the handshake: a TLS flow (handshake
# inspected) against a plain TCP flow, the same data segments and ACKs through
# decode and the shard (benches/post_handshake.rs). Callgrind counts only the
# measured loop, so the figures are deterministic under any machine load.
# Usage: bench/post_handshake.sh [PACKETS]   (needs valgrind)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
bin=$(cargo bench --bench post_handshake --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\)).*/\1/p' | tail -n 1)
[ -x "$bin" ] || { echo "bench/post_handshake.sh: bench binary not found" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
declare -A ir
for kind in tls plain; do
    valgrind --tool=callgrind --toggle-collect='*post_handshake_packets*' \
        --callgrind-out-file="$work/$kind.out" "$bin" "$kind" "$n" > /dev/null 2> "$work/$kind.err"
    ir[$kind]=$(sed -n 's/^summary: //p' "$work/$kind.out")
done
python3 - "$n" "${ir[tls]}" "${ir[plain]}" <<'PY'
import sys
n, tls, plain = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
print(f"packets per flow: {n}")
print(f"tls flow:   {tls / n:8.1f} instructions/packet")
print(f"plain flow: {plain / n:8.1f} instructions/packet")
print(f"tls / plain: {tls / plain:.4f}")
PY
