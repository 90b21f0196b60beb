#!/usr/bin/env bash
# Runs the nightjar demo: builds the sensor and replays the shipped AN1717
# demo capture with its MDM inventory, lifecycle events and app catalog. Building needs libpcap's development package (live capture links
# libpcap); if it is missing, this installs it with apt-get first, saying so.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -e /usr/include/pcap/pcap.h ]; then
    echo "demo.sh: installing libpcap-dev (needed to build nightjar)" >&2
    sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
    $sudo_ apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq libpcap-dev
fi
cargo build --release --quiet
exec target/release/nightjar replay --quiet --inventory config/demo/inventory.json \
    --events config/demo/events.ndjson --catalog config/demo/catalog.json pcaps/demo-an1717.pcap
