#!/usr/bin/env bash
# Fuzz smoke run for CI: builds the targets, replays the saved crash inputs
# (fuzz/regressions/<target>/) and the seed corpus when present, then fuzzes
# each target for SECONDS (default 10). Exits non-zero on the first crash,
# hang (over 10 s per input) or allocation over 2 GiB.
# Needs cargo-fuzz; RUSTC_BOOTSTRAP=1 lets the stable toolchain build it.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-10}
targets=(decode reassembly tls quic_initial capture pipeline mdm_files plist config)
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
cargo fuzz build -s none -a
for t in "${targets[@]}"; do
    dirs=()
    [ -d "corpus/$t" ] && dirs+=("corpus/$t")
    [ -d "regressions/$t" ] && dirs+=("regressions/$t")
    tmp=$(mktemp -d)
    # New inputs go to a scratch directory, the seed corpus is not modified.
    if ! cargo fuzz run -s none -a "$t" "$tmp" "${dirs[@]}" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 >"$tmp.log" 2>&1; then
        tail -n 40 "$tmp.log"
        echo "fuzz smoke: $t failed (crash input under fuzz/artifacts/$t/)"
        exit 1
    fi
    echo "$t: $(grep -E '^#[0-9]+' "$tmp.log" | tail -n 1)"
    rm -rf "$tmp" "$tmp.log"
done
echo "fuzz smoke: ${#targets[@]} targets, ${secs}s each: ok"
