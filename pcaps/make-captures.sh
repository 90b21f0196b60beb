#!/usr/bin/env bash
# Make nightjar's golden captures from real TLS stacks talking across a veth pair.
#
# Two network namespaces made here and removed on exit:
#   njcap-srv  10.77.0.1/24  servers: openssl s_server (TLS 1.3 on 443, TLS 1.2 on 8443),
#                            gnutls-serv (5556), a tiny DNS responder (udp/53)
#   njcap-cli  10.77.0.2/24  clients: openssl s_client, gnutls-cli, curl, python ssl, node tls,
#                            chromium (only when OpenSSL lacks X25519MLKEM768)
# tcpdump runs on the client-side veth. No traffic leaves these namespaces: every client
# targets 10.77.0.1 and the namespaces have no other route.
#
# Usage (root): bash pcaps/make-captures.sh [OUTDIR]   (OUTDIR defaults to this folder)
# Writes OUTDIR/*.pcap, then the reordered variant and OUTDIR/*.expected.jsonl
# (via reorder.py and make-expected.py beside this script). Re-running replaces them.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${1:-$HERE}"
NS_S=njcap-srv
NS_C=njcap-cli
VETH_S=njcap-s0
VETH_C=njcap-c0
SRV=10.77.0.1
CLI=10.77.0.2
NAME=app.example.test
WORK="$(mktemp -d /tmp/njcap.XXXXXX)"
LOG_TAG=make-captures
# shellcheck source=netns-lib.sh
. "$HERE/netns-lib.sh"
require_root

# ---------------------------------------------------------------- tools
install_missing tcpdump:tcpdump openssl:openssl gnutls-cli:gnutls-bin gnutls-serv:gnutls-bin \
    curl:curl python3:python3 ip:iproute2 ethtool:ethtool tshark:tshark

# The split ClientHello needs a post-quantum hybrid key share (about 1.2 KB).
if openssl list -kem-algorithms 2>/dev/null | grep -qi mlkem768; then
    SPLIT_CLIENT=openssl
else
    SPLIT_CLIENT=chromium
    if ! command -v chromium >/dev/null 2>&1; then
        log "OpenSSL $(openssl version | cut -d' ' -f2) has no ML-KEM: installing chromium (BoringSSL sends X25519MLKEM768)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    fi
fi
log "split ClientHello client: $SPLIT_CLIENT"

# ---------------------------------------------------------------- network
netns_start "$NS_S" "$NS_C"
veth_pair "$NS_C" "$VETH_C" "$CLI/24" "$NS_S" "$VETH_S" "$SRV/24"
use_resolver "$NS_C" "$SRV"
# Background processes are started with `ip netns exec` directly (not through these
# functions), so that $! is the process itself and a signal reaches it.
S() { ip netns exec "$NS_S" "$@"; }
C() { ip netns exec "$NS_C" "$@"; }

# ---------------------------------------------------------------- servers
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=$NAME" \
    -addext "subjectAltName=DNS:$NAME,DNS:*.example.test" \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
ip netns exec "$NS_S" openssl s_server -quiet -www -accept 443 -tls1_3 -alpn http/1.1 \
    -cert "$WORK/cert.pem" -key "$WORK/key.pem" </dev/null >"$WORK/s13.log" 2>&1 &
PIDS+=($!)
ip netns exec "$NS_S" openssl s_server -quiet -www -accept 8443 -tls1_2 -alpn http/1.1 \
    -cert "$WORK/cert.pem" -key "$WORK/key.pem" </dev/null >"$WORK/s12.log" 2>&1 &
PIDS+=($!)
ip netns exec "$NS_S" gnutls-serv --http -p 5556 --x509certfile "$WORK/cert.pem" --x509keyfile "$WORK/key.pem" \
    </dev/null >"$WORK/gnutls.log" 2>&1 &
PIDS+=($!)
ip netns exec "$NS_S" python3 - "$SRV" <<'PY' >"$WORK/dns.log" 2>&1 &
# Tiny authoritative responder: A for *.example.test -> 10.77.0.1, NXDOMAIN otherwise.
import socket, struct, sys
addr = sys.argv[1]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((addr, 53))
while True:
    q, peer = s.recvfrom(512)
    if len(q) < 12:
        continue
    tid, flags, qd = struct.unpack("!HHH", q[:6])
    i, labels = 12, []
    while i < len(q) and q[i] != 0:
        labels.append(q[i + 1:i + 1 + q[i]].decode("ascii", "replace"))
        i += 1 + q[i]
    question = q[12:i + 5]
    qtype = struct.unpack("!H", q[i + 1:i + 3])[0]
    name = ".".join(labels).lower()
    ok = name.endswith("example.test")
    answers = b""
    if ok and qtype == 1:
        answers = struct.pack("!HHHIH", 0xC00C, 1, 1, 300, 4) + socket.inet_aton(addr)
    rflags = 0x8400 | (0 if ok else 3) | (flags & 0x0100)
    hdr = struct.pack("!HHHHHH", tid, rflags, 1, 1 if answers else 0, 0, 0)
    s.sendto(hdr + question + answers, peer)
PY
PIDS+=($!)

wait_port() { # proto port
    for _ in $(seq 50); do
        if S ss -"${1}"ln | grep -q ":$2 "; then return 0; fi
        sleep 0.1
    done
    log "server on $1/$2 did not start"; cat "$WORK"/*.log >&2; exit 1
}
wait_port t 443; wait_port t 8443; wait_port t 5556; wait_port u 53

# ---------------------------------------------------------------- capture helpers
capture() { # name filter -- then run clients; stop with end_capture
    CAP_NAME=$1
    ip netns exec "$NS_C" tcpdump -Z root -U -s 0 -i "$VETH_C" -w "$WORK/$1.pcap" "$2" 2>"$WORK/tcpdump-$1.log" &
    CAP_PID=$!
    for _ in $(seq 50); do grep -q listening "$WORK/tcpdump-$1.log" 2>/dev/null && break; sleep 0.1; done
}
end_capture() {
    sleep 1
    kill -TERM "$CAP_PID"; wait "$CAP_PID" || true
    cp "$WORK/$CAP_NAME.pcap" "$OUT/$CAP_NAME.pcap"
    log "$CAP_NAME.pcap: $(stat -c %s "$OUT/$CAP_NAME.pcap") bytes"
}
GET="GET / HTTP/1.0\r\nHost: $NAME\r\n\r\n"
s_client() { printf "$GET" | C timeout 10 openssl s_client -quiet -ign_eof "$@" >/dev/null 2>&1; }

# ---------------------------------------------------------------- captures
# 1. TLS 1.3 ClientHello carrying an X25519MLKEM768 key share: larger than one segment.
capture tls13-split-hello "tcp port 443"
if [[ $SPLIT_CLIENT == openssl ]]; then
    s_client -connect "$SRV:443" -servername "$NAME" -groups X25519MLKEM768:X25519
else
    C timeout 30 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --disable-features=NetworkTimeServiceQuerying,OptimizationHints,MediaRouter \
        --user-data-dir="$WORK/chromium-profile" --ignore-certificate-errors \
        --host-resolver-rules="MAP $NAME $SRV" --dump-dom "https://$NAME/" >/dev/null 2>&1 || true
fi
end_capture

# 2. TLS 1.2: the server certificate crosses the wire in clear.
capture tls12-cert "tcp port 8443"
s_client -connect "$SRV:8443" -servername "$NAME" -tls1_2
printf "$GET" | C timeout 10 gnutls-cli --insecure --logfile=/dev/null -p 8443 \
    --priority "NORMAL:-VERS-ALL:+VERS-TLS1.2" --alpn http/1.1 --sni-hostname "gnutls12.example.test" "$SRV" >/dev/null 2>&1 || true
end_capture

# 3. A DNS lookup, then TLS to the answer without SNI: the flow is named from DNS only.
capture dns-then-tls-nosni "udp port 53 or tcp port 443"
IP="$(C getent ahostsv4 "$NAME" | awk 'NR==1{print $1}')"
[[ $IP == "$SRV" ]] || { log "DNS lookup of $NAME gave '$IP'"; exit 1; }
s_client -connect "$IP:443" -noservername
end_capture

# 4. Several stacks: gnutls, curl (via DNS and via --resolve), python ssl, node tls.
capture mixed-clients "udp port 53 or tcp port 443 or tcp port 8443 or tcp port 5556"
printf "$GET" | C timeout 10 gnutls-cli --insecure --logfile=/dev/null -p 5556 \
    --sni-hostname "gnutls.example.test" "$SRV" >/dev/null 2>&1 || true
C timeout 10 curl -sk -o /dev/null "https://curl-dns.example.test/" || true
C timeout 10 curl -sk -o /dev/null --resolve "curl.example.test:8443:$SRV" "https://curl.example.test:8443/" || true
C timeout 10 python3 - "$SRV" <<'PY' || true
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["h2", "http/1.1"])
with socket.create_connection((sys.argv[1], 443), timeout=5) as raw:
    with ctx.wrap_socket(raw, server_hostname="python.example.test") as tls:
        tls.sendall(b"GET / HTTP/1.0\r\nHost: python.example.test\r\n\r\n")
        while tls.recv(4096):
            pass
PY
if command -v node >/dev/null 2>&1; then
    C timeout 10 node -e '
const tls = require("tls");
const s = tls.connect({host: process.argv[1], port: 443, servername: "node.example.test",
                       rejectUnauthorized: false, ALPNProtocols: ["http/1.1"]}, () => {
  s.write("GET / HTTP/1.0\r\nHost: node.example.test\r\n\r\n");
});
s.on("data", () => {}); s.on("end", () => s.end()); s.on("error", () => process.exit(0));
' "$SRV" || true
fi
end_capture

# ---------------------------------------------------------------- checks and derived files
segments=$(tshark -r "$OUT/tls13-split-hello.pcap" -Y "tls.handshake.type == 1" \
    -T fields -e tcp.segment.count 2>/dev/null | head -1)
log "split ClientHello spans ${segments:-1} TCP segment(s)"
[[ ${segments:-1} -ge 2 ]] || { log "ClientHello did not split"; exit 1; }

python3 "$HERE/reorder.py" "$OUT/tls13-split-hello.pcap" "$OUT/tls13-split-hello-reordered.pcap"
for f in tls13-split-hello tls13-split-hello-reordered tls12-cert dns-then-tls-nosni mixed-clients; do
    python3 "$HERE/make-expected.py" "$OUT/$f.pcap" >"$OUT/$f.expected.jsonl"
done
{
    echo "openssl: $(openssl version)"
    echo "gnutls: $(gnutls-cli --version 2>/dev/null | head -1)"
    echo "curl: $(curl --version | head -1)"
    echo "python: $(python3 -c 'import ssl,sys; print(sys.version.split()[0], ssl.OPENSSL_VERSION)')"
    command -v node >/dev/null && echo "node: $(node --version) openssl $(node -p process.versions.openssl)"
    [[ $SPLIT_CLIENT == chromium ]] && echo "chromium: $(chromium --version 2>/dev/null)"
    echo "tcpdump: $(tcpdump --version 2>&1 | head -1)"
    echo "tshark: $(tshark --version | head -1)"
    echo "kernel: $(uname -r)"
} >"$OUT/TOOL-VERSIONS.txt"
log "done: $(ls "$OUT"/*.pcap | wc -l) captures in $OUT"
