#!/usr/bin/env bash
# Live capture benchmark on the veth path. Two network namespaces made here,
# joined by a veth pair (no addresses); tcpreplay pushes the corpus's Ethernet
# captures (looped) into one end at each rate given, `nightjar run` captures on
# the other with 1 and 2 workers (PACKET_FANOUT). For every run it prints the
# rate tcpreplay achieved, the frames nightjar counted, and the drops (kernel
# ring, interface, correlator queue). A run is "no drops" when nightjar counted
# every frame sent and every drop counter is 0; quote the highest such rate.
# IMMEDIATE=true runs with capture.immediate_mode (TPACKET_V2: one ring slot
# per snaplen, far fewer frames in the same buffer). Needs root, iproute2, tcpreplay.
# Usage: [CORPUS=DIR] bench/live.sh [LOOPS [RATE...]]   RATE: packets/s for --pps, or "top"
set -euo pipefail
cd "$(dirname "$0")/.."
loops=${1:-20}
shift || true
rates=("$@")
[ ${#rates[@]} -gt 0 ] || rates=(50000 100000 200000 400000 top)
corpus=${CORPUS:-../shared/corpus}
cargo build --release --quiet
bin=$PWD/target/release/nightjar

files=("$PWD/pcaps/demo.pcap")
if [ -f "$corpus/PROVENANCE.tsv" ]; then
    while IFS=$'\t' read -r f _ _ lt _; do
        [ "$lt" = ether ] && files+=("$corpus/$f")
    done < <(tail -n +2 "$corpus/PROVENANCE.tsv")
fi

tag=b$$
tx=njbt-$tag rx=njbr-$tag txif=bt$tag rxif=br$tag
dir=$(mktemp -d /tmp/nightjar-bench.XXXXXX)
cleanup() {
    [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true
    ip netns del "$tx" 2>/dev/null || true
    ip netns del "$rx" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
for ns in "$tx" "$rx"; do
    ip netns add "$ns"
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n "$ns" link set lo up
done
ip link add "$txif" netns "$tx" type veth peer name "$rxif" netns "$rx"
ip -n "$tx" link set "$txif" mtu 65535 up
ip -n "$rx" link set "$rxif" mtu 65535 up

scrape() { # metric name (with labels) → value
    ip netns exec "$rx" bash -c "exec 3<>/dev/tcp/127.0.0.1/9464 && printf 'GET /metrics HTTP/1.1\r\n\r\n' >&3 && cat <&3" |
        awk -v k="$1" '$1 == k { print $2 }'
}

echo "inputs: ${#files[@]} Ethernet captures x $loops loops; immediate_mode=${IMMEDIATE:-false}; cpus: $(nproc); load: $(cut -d" " -f1-3 /proc/loadavg)"
for w in 1 2; do
    for rate in "${rates[@]}"; do
        cat >"$dir/n.toml" <<EOF
[capture]
interfaces = ["$rxif"]
workers = $w
immediate_mode = ${IMMEDIATE:-false}
[output]
path = "$dir/out.json"
[state]
dir = "$dir"
[metrics]
listen = "127.0.0.1:9464"
EOF
        rm -f "$dir/out.json"
        ip netns exec "$rx" "$bin" run --config "$dir/n.toml" 2>"$dir/err" &
        pid=$!
        for _ in $(seq 100); do grep -q "nightjar: ready" "$dir/err" && break; sleep 0.1; done
        if [ "$rate" = top ]; then flag=(--topspeed); else flag=(--pps "$rate"); fi
        out=$(ip netns exec "$tx" tcpreplay -i "$txif" --preload-pcap --loop "$loops" "${flag[@]}" "${files[@]}" 2>&1)
        sent=$(sed -n 's/^Actual: \([0-9]*\) packets.*/\1/p' <<<"$out")
        achieved=$(sed -n 's/.*Rated: .* Bps, .* Mbps, \([0-9.]*\) pps.*/\1/p' <<<"$out")
        # Wait until nightjar has published every frame (or stopped moving).
        got=0 prev=-1
        for _ in $(seq 50); do
            got=$(scrape "nightjar_packets_total{interface=\"$rxif\"}")
            [ "$got" = "$sent" ] && break
            [ "$got" = "$prev" ] && break
            prev=$got
            sleep 0.3
        done
        kd=$(scrape "nightjar_kernel_drops_total{interface=\"$rxif\"}")
        id=$(scrape "nightjar_interface_drops_total{interface=\"$rxif\"}")
        qd=$(scrape 'nightjar_queue_drops_total{stage="correlator"}')
        kill -TERM "$pid"
        wait "$pid" || true
        pid=
        verdict=DROPS
        [ "$got" = "$sent" ] && [ "$kd" = 0 ] && [ "$id" = 0 ] && [ "$qd" = 0 ] && verdict="no drops"
        printf 'workers=%s tcpreplay=%s sent=%s achieved_pps=%s captured=%s kernel_drops=%s interface_drops=%s queue_drops=%s => %s\n' \
            "$w" "${flag[*]}" "$sent" "$achieved" "$got" "$kd" "$id" "$qd" "$verdict"
    done
done
