#!/usr/bin/env bash
# Make pcaps/dhcp-dns-tls.pcap: two clients get DHCP leases from dnsmasq, resolve a
# name through it and open TLS connections, on one bridged segment.
#
# Three network namespaces made here and removed on exit:
#   njdh-srv   bridge njdh-br 10.78.0.1/24: dnsmasq (DHCP 10.78.0.100-150, DNS answering
#              *.example.test -> 10.78.0.1), openssl s_server on 443 and 853
#   njdh-a     client A, MAC 3c:06:30:aa:bb:01 (universally administered, the kind an
#              MDM reports as the hardware Wi-Fi address)
#   njdh-b     client B, MAC 6a:1f:22:33:44:55 (locally administered: a private address)
# Both clients run busybox udhcpc (host name and vendor class set), then:
#   A: DNS lookup of app.example.test; TLS without SNI to the answer; one second later,
#      TLS with SNI api.example.test; then releases its lease (DHCPRELEASE).
#   B: TLS with SNI mask.icloud.com (an iCloud Private Relay ingress name) and TLS to
#      port 853 (DNS over TLS).
# tcpdump runs on the bridge. No traffic leaves the namespaces: they have no other route.
#
# Usage (root): bash pcaps/make-dhcp-capture.sh [OUTDIR]   (OUTDIR defaults to this folder)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${1:-$HERE}"
NS_S=njdh-srv
NS_A=njdh-a
NS_B=njdh-b
BR=njdh-br
SRV=10.78.0.1
MAC_A=3c:06:30:aa:bb:01
MAC_B=6a:1f:22:33:44:55
mkdir -p "$OUT"
WORK="$(mktemp -d /tmp/njdh.XXXXXX)"
LOG_TAG=make-dhcp-capture
# shellcheck source=netns-lib.sh
. "$HERE/netns-lib.sh"
require_root
install_missing tcpdump:tcpdump openssl:openssl dnsmasq:dnsmasq-base busybox:busybox \
    ip:iproute2 ethtool:ethtool

# ---------------------------------------------------------------- network
netns_start "$NS_S" "$NS_A" "$NS_B"
ip -n "$NS_S" link add "$BR" type bridge
for spec in "$NS_A,njdh-a0,njdh-pa,$MAC_A" "$NS_B,njdh-b0,njdh-pb,$MAC_B"; do
    IFS=, read -r ns dev peer mac <<<"$spec"
    ip link add "$dev" netns "$ns" address "$mac" type veth peer name "$peer" netns "$NS_S"
    wire_iface "$ns" "$dev"
    ip -n "$NS_S" link set "$peer" master "$BR"
    wire_iface "$NS_S" "$peer"
    use_resolver "$ns" "$SRV"
done
ip -n "$NS_S" addr add "$SRV/24" dev "$BR"
ip -n "$NS_S" link set "$BR" up
S() { ip netns exec "$NS_S" "$@"; }
A() { ip netns exec "$NS_A" "$@"; }
B() { ip netns exec "$NS_B" "$@"; }

# udhcpc calls this on lease events: configure the address (no default route).
cat >"$WORK/udhcpc.script" <<'SH'
#!/bin/sh
case "$1" in
    deconfig) ip addr flush dev "$interface" ;;
    bound|renew) ip addr flush dev "$interface"; ip addr add "$ip/${mask:-24}" dev "$interface" ;;
esac
exit 0
SH
chmod +x "$WORK/udhcpc.script"

# ---------------------------------------------------------------- servers
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=app.example.test" \
    -addext "subjectAltName=DNS:app.example.test,DNS:*.example.test" \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
S dnsmasq --no-daemon --conf-file=/dev/null --no-resolv --no-hosts --bind-interfaces \
    --interface="$BR" --listen-address="$SRV" --dhcp-range=10.78.0.100,10.78.0.150,255.255.255.0,1h \
    --address=/example.test/"$SRV" --dhcp-leasefile="$WORK/leases" --log-facility=- \
    >"$WORK/dnsmasq.log" 2>&1 &
PIDS+=($!)
for port in 443 853; do
    S openssl s_server -quiet -www -accept "$SRV:$port" -cert "$WORK/cert.pem" -key "$WORK/key.pem" \
        </dev/null >"$WORK/s$port.log" 2>&1 &
    PIDS+=($!)
done
for _ in $(seq 50); do
    if S ss -tln | grep -q ":443 " && S ss -tln | grep -q ":853 " && S ss -uln | grep -q ":67 "; then break; fi
    sleep 0.1
done

# ---------------------------------------------------------------- capture
ip netns exec "$NS_S" tcpdump -Z root -U -s 0 -i "$BR" -w "$WORK/cap.pcap" "udp port 67 or udp port 68 or udp port 53 or tcp port 443 or tcp port 853" \
    2>"$WORK/tcpdump.log" &
CAP_PID=$!
for _ in $(seq 50); do grep -q listening "$WORK/tcpdump.log" 2>/dev/null && break; sleep 0.1; done

GET="GET / HTTP/1.0\r\nHost: x\r\n\r\n"
tls() { # ns args...
    local ns=$1; shift
    printf "$GET" | ip netns exec "$ns" timeout 10 openssl s_client -quiet -ign_eof "$@" >/dev/null 2>&1 || true
}

A busybox udhcpc -f -q -n -t 5 -T 1 -i njdh-a0 -s "$WORK/udhcpc.script" \
    -x hostname:Janes-iPad -V "Apple-iPad" >"$WORK/udhcpc-a.log" 2>&1
IP_A="$(A ip -4 -o addr show dev njdh-a0 | awk '{print $4}' | cut -d/ -f1)"
log "client A leased $IP_A"
IP="$(A getent ahostsv4 app.example.test | awk 'NR==1{print $1}')"
[[ $IP == "$SRV" ]] || { log "DNS lookup gave '$IP'"; exit 1; }
tls "$NS_A" -connect "$IP:443" -noservername
sleep 1
tls "$NS_A" -connect "$SRV:443" -servername api.example.test

B busybox udhcpc -f -q -n -t 5 -T 1 -i njdh-b0 -s "$WORK/udhcpc.script" \
    -x hostname:iPhone -V "Apple-iPhone" >"$WORK/udhcpc-b.log" 2>&1
IP_B="$(B ip -4 -o addr show dev njdh-b0 | awk '{print $4}' | cut -d/ -f1)"
log "client B leased $IP_B"
tls "$NS_B" -connect "$SRV:443" -servername mask.icloud.com
tls "$NS_B" -connect "$SRV:853" -servername dns.example.test

# Client A renews, then gives its address back: a DHCPRELEASE when udhcpc -R exits.
ip netns exec "$NS_A" busybox udhcpc -f -R -t 5 -T 1 -i njdh-a0 -s "$WORK/udhcpc.script" \
    -x hostname:Janes-iPad -V "Apple-iPad" >>"$WORK/udhcpc-a.log" 2>&1 &
DHCP_A=$!
for _ in $(seq 100); do grep -q "lease of" "$WORK/udhcpc-a.log" 2>/dev/null && [[ $(grep -c "lease of" "$WORK/udhcpc-a.log") -ge 2 ]] && break; sleep 0.1; done
kill -TERM "$DHCP_A"; wait "$DHCP_A" || true

sleep 1
# A background job of a script ignores SIGINT: stop tcpdump with SIGTERM (it flushes).
kill -TERM "$CAP_PID"; wait "$CAP_PID" || true
cp "$WORK/cap.pcap" "$OUT/dhcp-dns-tls.pcap"
log "dhcp-dns-tls.pcap: $(stat -c %s "$OUT/dhcp-dns-tls.pcap") bytes, A=$IP_A B=$IP_B"
{
    echo "dnsmasq: $(dnsmasq --version | head -1)"
    echo "busybox: $(busybox | head -1)"
    echo "openssl: $(openssl version)"
    echo "tcpdump: $(tcpdump --version 2>&1 | head -1)"
    echo "kernel: $(uname -r)"
} >"$OUT/dhcp-dns-tls.TOOL-VERSIONS.txt"
