#!/usr/bin/env bash
# More golden captures from real stacks, beside those of make-captures.sh (which this
# script leaves alone): QUIC from headless Chromium and from aioquic, and TLS from Java and
# rustls (the small client in rustls-client/, built here with cargo).
#
# Two network namespaces made here and removed on exit (same layout as make-captures.sh,
# other names and subnet so both can run): njmore-srv 10.79.0.1/24 runs an aioquic HTTP/3
# server on udp/443 and openssl s_server TLS 1.3 on tcp/443; njmore-cli 10.79.0.2/24 runs
# the clients. MTU 1500, offloads off, tcpdump on the client-side veth. No traffic leaves
# the namespaces.
#
# Usage (root): bash pcaps/make-more-captures.sh [OUTDIR]   (OUTDIR defaults to this folder)
# Writes OUTDIR/quic-clients.pcap, OUTDIR/java-tls.pcap and OUTDIR/rustls-tls.pcap with their
# .expected.jsonl
# (make-expected.py) and OUTDIR/more.TOOL-VERSIONS.txt. Needs chromium, java, tcpdump,
# tshark and the aioquic Python package (pip install aioquic).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${1:-$HERE}"
NS_S=njmore-srv
NS_C=njmore-cli
SRV=10.79.0.1
CLI=10.79.0.2
NAME=app.example.test
WORK="$(mktemp -d /tmp/njmore.XXXXXX)"
LOG_TAG=make-more-captures
# shellcheck source=netns-lib.sh
. "$HERE/netns-lib.sh"
require_root
for t in chromium java cargo tcpdump tshark openssl; do
    command -v "$t" >/dev/null || { log "$t not found"; exit 1; }
done
python3 -c 'import aioquic' 2>/dev/null || { log "python3 lacks aioquic (pip install aioquic)"; exit 1; }

RUSTLS_TARGET="${CARGO_TARGET_DIR:-/tmp/nightjar-rustls-client-target}"
cargo build --quiet --release --manifest-path "$HERE/rustls-client/Cargo.toml" --target-dir "$RUSTLS_TARGET"
RUSTLS_CLIENT="$RUSTLS_TARGET/release/nightjar-rustls-capture-client"

netns_start "$NS_S" "$NS_C"
veth_pair "$NS_S" njmore-s0 "$SRV/24" "$NS_C" njmore-c0 "$CLI/24"
C() { ip netns exec "$NS_C" "$@"; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=$NAME" \
    -addext "subjectAltName=DNS:$NAME,DNS:*.example.test" \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
SPKI="$(openssl x509 -in "$WORK/cert.pem" -pubkey -noout | openssl pkey -pubin -outform der |
    openssl dgst -sha256 -binary | base64)"

ip netns exec "$NS_S" openssl s_server -quiet -www -accept 443 -tls1_3 -alpn http/1.1 \
    -cert "$WORK/cert.pem" -key "$WORK/key.pem" </dev/null >"$WORK/s13.log" 2>&1 &
PIDS+=($!)
ip netns exec "$NS_S" python3 - "$SRV" "$WORK/cert.pem" "$WORK/key.pem" <<'PY' >"$WORK/h3.log" 2>&1 &
# Minimal HTTP/3 server: answers every request with a short page.
import asyncio, sys
from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ProtocolNegotiated

class Http3(QuicConnectionProtocol):
    h3 = None
    def quic_event_received(self, event):
        if isinstance(event, ProtocolNegotiated) and event.alpn_protocol in H3_ALPN:
            self.h3 = H3Connection(self._quic)
        if self.h3 is None:
            return
        for e in self.h3.handle_event(event):
            if isinstance(e, HeadersReceived):
                self.h3.send_headers(e.stream_id, [(b":status", b"200"), (b"content-type", b"text/html")])
                self.h3.send_data(e.stream_id, b"<html><body>ok</body></html>", end_stream=True)
        self.transmit()

async def main(host, cert, key):
    cfg = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN)
    cfg.load_cert_chain(cert, key)
    await serve(host, 443, configuration=cfg, create_protocol=Http3)
    await asyncio.Future()

asyncio.run(main(*sys.argv[1:]))
PY
PIDS+=($!)
for _ in $(seq 50); do
    ip netns exec "$NS_S" ss -uln | grep -q ":443 " && ip netns exec "$NS_S" ss -tln | grep -q ":443 " && break
    sleep 0.2
done

capture() {
    CAP_NAME=$1
    ip netns exec "$NS_C" tcpdump -Z root -U -s 0 -i njmore-c0 -w "$WORK/$1.pcap" "$2" 2>"$WORK/tcpdump-$1.log" &
    CAP_PID=$!
    for _ in $(seq 50); do grep -q listening "$WORK/tcpdump-$1.log" 2>/dev/null && break; sleep 0.1; done
}
end_capture() {
    sleep 1
    kill -TERM "$CAP_PID"; wait "$CAP_PID" || true
    cp "$WORK/$CAP_NAME.pcap" "$OUT/$CAP_NAME.pcap"
    log "$CAP_NAME.pcap: $(stat -c %s "$OUT/$CAP_NAME.pcap") bytes"
}

# 1. QUIC: Chromium (BoringSSL, X25519MLKEM768 key share: the ClientHello spans two
#    Initial packets) and aioquic (its own TLS 1.3 in Python), both to the aioquic server.
capture quic-clients "udp port 443"
C timeout 30 chromium --headless --no-sandbox --disable-gpu --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --disable-features=NetworkTimeServiceQuerying,OptimizationHints,MediaRouter \
    --user-data-dir="$WORK/chromium-profile" --enable-quic --origin-to-force-quic-on="$NAME:443" \
    --ignore-certificate-errors-spki-list="$SPKI" --ignore-certificate-errors \
    --host-resolver-rules="MAP $NAME $SRV" --dump-dom "https://$NAME/" >"$WORK/chromium.log" 2>&1 || true
C timeout 15 python3 - "$SRV" <<'PY' || true
import asyncio, ssl, sys
from aioquic.asyncio import connect
from aioquic.quic.configuration import QuicConfiguration

async def main(host):
    cfg = QuicConfiguration(is_client=True, alpn_protocols=["h3"], verify_mode=ssl.CERT_NONE,
                            server_name="aioquic.example.test")
    async with connect(host, 443, configuration=cfg) as client:
        await client.ping()

asyncio.run(main(sys.argv[1]))
PY
end_capture

# 2. Java (JSSE, TLS 1.3) over TCP.
cat >"$WORK/Client.java" <<'JAVA'
import java.io.*;
import java.security.cert.X509Certificate;
import javax.net.ssl.*;

public class Client {
    public static void main(String[] args) throws Exception {
        TrustManager[] all = { new X509TrustManager() {
            public void checkClientTrusted(X509Certificate[] c, String a) {}
            public void checkServerTrusted(X509Certificate[] c, String a) {}
            public X509Certificate[] getAcceptedIssuers() { return new X509Certificate[0]; }
        } };
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(null, all, null);
        try (SSLSocket s = (SSLSocket) ctx.getSocketFactory().createSocket(args[0], 443)) {
            SSLParameters p = s.getSSLParameters();
            p.setServerNames(java.util.List.of(new SNIHostName("java.example.test")));
            p.setApplicationProtocols(new String[] {"h2", "http/1.1"});
            s.setSSLParameters(p);
            s.startHandshake();
            OutputStream out = s.getOutputStream();
            out.write("GET / HTTP/1.0\r\nHost: java.example.test\r\n\r\n".getBytes());
            out.flush();
            InputStream in = s.getInputStream();
            while (in.read(new byte[4096]) >= 0) {}
        }
    }
}
JAVA
capture java-tls "tcp port 443"
C timeout 30 java "$WORK/Client.java" "$SRV" >"$WORK/java.log" 2>&1 || true
end_capture

# At MTU 1500 a datagram carries at most 1472 bytes: a longer ClientHello spans 2+ Initials.
hello=$(tshark -r "$OUT/quic-clients.pcap" -Y "quic && tls.handshake.type == 1" \
    -T fields -e tls.handshake.length 2>/dev/null | head -1)
log "Chromium's QUIC ClientHello: ${hello:-no} bytes"
[[ ${hello:-0} -gt 1472 ]] || { log "the QUIC ClientHello did not span several packets"; exit 1; }

# 3. rustls 0.23 (ring provider) over TCP.
capture rustls-tls "tcp port 443"
C timeout 10 "$RUSTLS_CLIENT" "$SRV" rustls.example.test >"$WORK/rustls.log" 2>&1 || true
end_capture

for f in quic-clients java-tls rustls-tls; do
    python3 "$HERE/make-expected.py" "$OUT/$f.pcap" >"$OUT/$f.expected.jsonl"
done
{
    echo "chromium: $(chromium --version 2>/dev/null)"
    echo "aioquic: $(python3 -c 'import aioquic; print(aioquic.__version__)')"
    echo "java: $(java -version 2>&1 | head -1)"
    echo "rustls: $(cargo tree --quiet --offline --manifest-path "$HERE/rustls-client/Cargo.toml" -e normal -i rustls --depth 0 2>/dev/null | head -1)"
    echo "openssl: $(openssl version)"
    echo "tcpdump: $(tcpdump --version 2>&1 | head -1)"
    echo "tshark: $(tshark --version | head -1)"
    echo "kernel: $(uname -r)"
} >"$OUT/more.TOOL-VERSIONS.txt"
log "done"
