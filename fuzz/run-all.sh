#!/usr/bin/env bash
# Runs every fuzz target in turn for SECONDS (default 120) each, one at a time,
# from the seed corpus in fuzz/corpus/<target> (build it with fuzz/seed.py).
# Every listed target is built first and its binary copied aside, so that the
# runs use the code as it was at the start even if the tree changes meanwhile.
# Logs go to fuzz/logs/<target>.log; the last libFuzzer status line of each is
# printed (the figures in fuzz/README.md come from these lines).
set -uo pipefail
cd "$(dirname "$0")"
secs=${1:-120}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(decode reassembly tls quic_initial capture pipeline mdm_files plist config
                                       dns dhcp mdm_api mdm_webhook state webhook identity)
export RUSTC_BOOTSTRAP=1
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
for t in "${targets[@]}"; do
    cargo fuzz build -s none -a "$t" || exit 1
    cp "target/x86_64-unknown-linux-gnu/release/$t" "$bin/$t"
done
mkdir -p logs artifacts
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    "$bin/$t" -artifact_prefix="artifacts/$t/" "corpus/$t" \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"logs/$t.log" 2>&1
    echo "$t (exit $?): $(grep -E '^#[0-9]+' "logs/$t.log" | tail -1)"
done
