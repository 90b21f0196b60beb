#!/usr/bin/env bash
# Fuzz smoke run for CI: builds the targets, replays the saved crash inputs
# (fuzz/regressions/<target>/), the committed seeds (fuzz/seeds/<target>/) and
# the seed corpus (fuzz/corpus/<target>/, made by seed.py when missing), then
# fuzzes each target for SECONDS (default 10). Exits non-zero on the first
# crash, hang (over 10 s per input) or allocation over 2 GiB.
#
# Toolchain: only stable is needed. cargo-fuzz asks for nightly-only flags
# (-Zsanitizer is not used: `-s none`); RUSTC_BOOTSTRAP=1 lets stable accept the
# rest. cargo-fuzz itself is installed when missing (`cargo install --locked`).
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-10}
targets=(decode reassembly tls quic_initial capture pipeline mdm_files plist config
         dns dhcp mdm_api mdm_webhook state webhook identity)
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
[ -d corpus ] || python3 seed.py >/dev/null
cargo fuzz build -s none -a
for t in "${targets[@]}"; do
    dirs=()
    for d in "corpus/$t" "seeds/$t" "regressions/$t"; do
        [ -d "$d" ] && dirs+=("$d")
    done
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
