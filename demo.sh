#!/usr/bin/env bash
# Runs the nightjar demo: builds the sensor and replays the shipped AN1717
# demo capture with its MDM inventory, lifecycle events and app catalog.
# Building needs libpcap's development package (live capture links libpcap),
# and make, pkg-config, OpenSSL and zlib headers (the Kafka client builds the
# librdkafka it vendors); what is missing is installed with apt-get first,
# saying so.
set -euo pipefail
cd "$(dirname "$0")"
need=()
[ -e /usr/include/pcap/pcap.h ] || need+=(libpcap-dev)
command -v make >/dev/null || need+=(make)
command -v pkg-config >/dev/null || need+=(pkg-config)
[ -e /usr/include/openssl/ssl.h ] || need+=(libssl-dev)
[ -e /usr/include/zlib.h ] || need+=(zlib1g-dev)
if [ ${#need[@]} -gt 0 ]; then
    echo "demo.sh: installing ${need[*]} (needed to build nightjar)" >&2
    sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
    $sudo_ apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "${need[@]}"
fi
cargo build --release --quiet
exec target/release/nightjar replay --quiet --inventory config/demo/inventory.json \
    --events config/demo/events.ndjson --catalog config/demo/catalog.json pcaps/demo-an1717.pcap
