#!/usr/bin/env bash
# Whole-run comparison on one capture: the libpcap floor (read every packet,
# do nothing), nightjar replay with 1 and 2 workers, Suricata (flow/TLS/QUIC/DNS
# eve logging, no rules), tshark (SNI and JA3 fields) and nDPI's ndpiReader.
# Prints packets/s, Gbit/s of captured bytes, peak RSS, and wall time as a ratio
# to the floor and to nightjar (1 worker). Each tool runs once after one warm-up
# read of the file, so the capture is in the page cache for all of them.
#
# Usage: bench/compare.sh [CAPTURE]
#   Without CAPTURE, builds target/bench/bench.pcap with nightjar-benchgen
#   (seed 1, 5M packets, 200k flows) from pcaps/ and ../shared/corpus.
# Tools that are not installed are listed as missing. Needs cc and libpcap-dev.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
cargo build --release --quiet --bins
out=target/bench
mkdir -p "$out"
cap=${1:-}
if [ -z "$cap" ]; then
    cap=$out/bench.pcap
    if [ ! -s "$cap" ]; then
        corpus=../shared/corpus
        [ -d "$corpus" ] || corpus=/work/shared/corpus
        inputs=(pcaps/*.pcap)
        while IFS=$'\t' read -r f _ _ lt _; do
            [ "$lt" = ether ] && inputs+=("$corpus/$f")
        done < <(tail -n +2 "$corpus/PROVENANCE.tsv")
        target/release/nightjar-benchgen --seed 1 --packets 5000000 --flows 200000 \
            --out "$cap" "${inputs[@]}"
    fi
fi
cc -O2 -o "$out/floor" bench/floor.c -lpcap

# Packets and captured bytes of the capture, from the floor itself.
cat "$cap" > /dev/null
read -r packets bytes < <("$out/floor" "$cap")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
declare -A wall rss
run() { # name command...
    local name=$1
    shift
    if ! command -v "$1" > /dev/null; then
        wall[$name]=missing
        return
    fi
    /usr/bin/time -f "%e %M" -o "$work/time" "$@" > "$work/$name.out" 2> "$work/$name.err" || {
        echo "$name failed: $(tail -n 3 "$work/$name.err")" >&2
        wall[$name]=failed
        return
    }
    read -r wall[$name] rss[$name] < "$work/time"
}

run floor "$out/floor" "$cap"
run nightjar-1 target/release/nightjar replay --quiet --workers 1 "$cap"
run nightjar-2 target/release/nightjar replay --quiet --workers 2 "$cap"

# Suricata: no rules, eve with flow, tls (JA3/JA4), quic and dns only; single
# runmode (the autofp runmode did not finish on the benchmark capture here).
cat > "$work/suricata.yaml" <<YAML
%YAML 1.1
---
default-log-dir: $work/suricata
app-layer:
  protocols:
    tls: { enabled: yes, ja3-fingerprints: yes, ja4-fingerprints: yes }
    quic: { enabled: yes }
    dns: { tcp: { enabled: yes }, udp: { enabled: yes } }
outputs:
  - eve-log:
      enabled: yes
      filetype: regular
      filename: eve.json
      types: [ flow, tls, quic, dns ]
logging:
  default-log-level: warning
  outputs: [ { console: { enabled: yes } } ]
YAML
mkdir -p "$work/suricata"
run suricata suricata -c "$work/suricata.yaml" -S /dev/null -k none --runmode single -r "$cap" -l "$work/suricata"
run tshark tshark -n -r "$cap" -Y "tls.handshake.type == 1" -T fields \
    -e tls.handshake.extensions_server_name -e tls.handshake.ja3
run ndpiReader ndpiReader -q -i "$cap"

printf "capture: %s, %s packets, %s bytes (%s bytes/packet); machine: %s cores, %s\n" \
    "$cap" "$packets" "$bytes" "$((bytes / packets))" "$(nproc)" \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
printf "| %-28s | %12s | %8s | %9s | %8s | %8s | %11s |\n" tool "packets/s" "Gbit/s" "peak RSS" "wall s" "÷ floor" "÷ nightjar"
printf "|%s|%s|%s|%s|%s|%s|%s|\n" ------------------------------ -------------- ---------- ----------- ---------- ---------- -------------
label() {
    case $1 in
        floor) echo "libpcap floor (read only)" ;;
        nightjar-1) echo "nightjar replay, 1 worker" ;;
        nightjar-2) echo "nightjar replay, 2 workers" ;;
        suricata) echo "suricata -r, single thread" ;;
        tshark) echo "tshark (SNI, JA3)" ;;
        ndpiReader) echo "ndpiReader (nDPI)" ;;
    esac
}
for t in floor nightjar-1 nightjar-2 suricata tshark ndpiReader; do
    w=${wall[$t]}
    case $w in missing | failed)
        printf "| %-28s | %12s | %8s | %9s | %8s | %8s | %11s |\n" "$(label $t)" "$w" - - - - -
        continue ;;
    esac
    python3 - "$(label $t)" "$w" "${rss[$t]}" "$packets" "$bytes" "${wall[floor]}" "${wall[nightjar-1]}" <<'PY'
import sys
name, w, rss, pk, by, fl, nj = sys.argv[1:]
w = max(float(w), 0.01)
def ratio(x):
    try: return f"{w / max(float(x), 0.01):.2f}"
    except ValueError: return "-"
print(f"| {name:<28} | {int(pk)/w:12,.0f} | {int(by)*8/w/1e9:8.2f} | {int(rss)/1024:6.0f} MB | {w:8.2f} | {ratio(fl):>8} | {ratio(nj):>11} |")
PY
done
