#!/usr/bin/env python3
"""Golden expectations for one capture, from tshark's view of it (not from nightjar).

Usage: make-expected.py FILE.pcap > FILE.expected.jsonl

One JSON line per TCP/UDP flow, keys are dotted paths into nightjar's flow record:
the 5-tuple (client = sender of the SYN, or of the first UDP datagram), packets and IP-layer
bytes per direction, and for TLS flows the SNI, offered ALPN, JA3 and JA3S (tshark's own),
JA4 (computed here from tshark's ClientHello fields: tshark 4.0 has no JA4), the negotiated
version, suite and ALPN, the leaf certificate (SHA-256, serial, SANs) when it is in clear (QUIC
hellos, which tshark decrypts from the Initials: JA4 with "q", no JA3/JA3S, the QUIC version); for
DNS flows the question and A answers; destination.domain with its source (SNI, else the name whose DNS A answer
earlier in the capture gave the server address). A null value means "absent or null".
TCP reassembly of out-of-order segments is switched on so reordered hellos are read too.
Standard library only; needs tshark on PATH.
"""
import hashlib
import json
import subprocess
import sys

TSHARK_OPTS = ["-o", "tcp.reassemble_out_of_order:TRUE", "-o", "tcp.desegment_tcp_streams:TRUE"]
# Extensions whose signature-scheme lists tshark reports in the shared sig_hash_alg field.
SIG_LIST_EXTS = (13, 34, 50)
TLS_VERSIONS = {0x0304: "1.3", 0x0303: "1.2", 0x0302: "1.1", 0x0301: "1.0"}
# IANA names of the suites these captures negotiate (tshark 4.0 prints only the number).
CIPHER_NAMES = {
    0x1301: "TLS_AES_128_GCM_SHA256", 0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
    0xC02B: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    0xC02C: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    0xC02F: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    0xC030: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    0xCCA8: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
}
DNS_TYPES = {1: "A", 5: "CNAME", 28: "AAAA"}
JA4_VERSIONS = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3"}


def tshark(pcap, display_filter, fields):
    cmd = ["tshark", "-r", pcap, *TSHARK_OPTS, "-T", "fields", "-E", "separator=|",
           "-E", "occurrence=a", "-E", "aggregator=,"]
    if display_filter:
        cmd += ["-Y", display_filter]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        cols = line.split("|")
        rows.append({f: (cols[i] if i < len(cols) else "") for i, f in enumerate(fields)})
    return rows


def split(value):
    return [v for v in value.split(",") if v != ""]


def ints(value):
    return [int(v, 0) for v in split(value)]


def is_grease(v):
    return v & 0x0F0F == 0x0A0A and v >> 8 == v & 0xFF


def ja4(hello, prefix="t"):
    ciphers = [c for c in ints(hello["tls.handshake.ciphersuite"]) if not is_grease(c)]
    exts = [e for e in ints(hello["tls.handshake.extension.type"]) if not is_grease(e)]
    versions = [v for v in ints(hello["tls.handshake.extensions.supported_version"])
                if not is_grease(v)]
    version = max(versions) if versions else int(hello["tls.handshake.version"], 0)
    sni = "d" if 0 in exts else "i"
    alpns = split(hello["tls.handshake.extensions_alpn_str"])
    alpn = (alpns[0][0] + alpns[0][-1]) if alpns and alpns[0] else "00"
    if not alpn.isascii() or not alpn.isalnum():
        raw = alpns[0].encode()
        alpn = raw[:1].hex()[0] + raw[-1:].hex()[-1]
    # Signature algorithms of the signature_algorithms extension (13) only, GREASE removed.
    sig_algs, values = [], ints(hello["tls.handshake.sig_hash_alg"])
    lens = ints(hello["tls.handshake.sig_hash_alg_len"])
    for ext in (e for e in exts if e in SIG_LIST_EXTS):
        n = lens.pop(0) // 2 if lens else 0
        chunk, values = values[:n], values[n:]
        if ext == 13:
            sig_algs = [v for v in chunk if not is_grease(v)]  # as FoxIO's reference does
    a = "%s%s%s%02d%02d%s" % (prefix, JA4_VERSIONS.get(version, "00"), sni, min(len(ciphers), 99),
                             min(len(exts), 99), alpn)
    b = ",".join(sorted("%04x" % c for c in ciphers))
    c = ",".join(sorted("%04x" % e for e in exts if e not in (0, 16)))
    if sig_algs:
        c += "_" + ",".join("%04x" % s for s in sig_algs)
    h = lambda s: hashlib.sha256(s.encode()).hexdigest()[:12] if s else "000000000000"
    return "%s_%s_%s" % (a, h(b), h(c))


def main():
    pcap = sys.argv[1]
    pkts = tshark(pcap, "ip", ["frame.time_epoch", "ip.src", "ip.dst", "ip.len", "tcp.srcport",
                               "tcp.dstport", "tcp.flags.syn", "tcp.flags.ack", "udp.srcport",
                               "udp.dstport"])
    flows, order = {}, []
    for p in pkts:
        proto = "tcp" if p["tcp.srcport"] else "udp" if p["udp.srcport"] else None
        if proto is None:
            continue
        sport = int(p[proto + ".srcport"])
        dport = int(p[proto + ".dstport"])
        a, b = (p["ip.src"], sport), (p["ip.dst"], dport)
        key = (proto, frozenset([a, b]))
        if key not in flows:
            if proto == "tcp" and not (p["tcp.flags.syn"] in ("1", "True") and
                                       p["tcp.flags.ack"] in ("0", "False")):
                sys.exit(f"{pcap}: TCP flow {a}->{b} does not start with a SYN")
            flows[key] = {"client": a, "server": b, "start": float(p["frame.time_epoch"]),
                          "c": [0, 0], "s": [0, 0]}
            order.append(key)
        f = flows[key]
        side = f["c"] if a == f["client"] else f["s"]
        side[0] += 1
        side[1] += int(p["ip.len"])

    def flow_of(row):
        src, dst = row["ip.src"], row["ip.dst"]
        proto = "tcp" if row.get("tcp.srcport") else "udp"
        k = (proto, frozenset([(src, int(row[proto + ".srcport"])),
                               (dst, int(row[proto + ".dstport"]))]))
        return flows[k]

    ports = ["ip.src", "ip.dst", "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport",
             "quic.version"]
    for h in tshark(pcap, "tls.handshake.type == 1",
                    ports + ["tls.handshake.extensions_server_name", "tls.handshake.ja3",
                             "tls.handshake.ciphersuite", "tls.handshake.extension.type",
                             "tls.handshake.sig_hash_alg", "tls.handshake.sig_hash_alg_len",
                             "tls.handshake.extensions_alpn_str", "tls.handshake.version",
                             "tls.handshake.extensions.supported_version"]):
        f = flow_of(h)
        quic = split(h["quic.version"])
        f["sni"] = h["tls.handshake.extensions_server_name"] or None
        f["alpn"] = split(h["tls.handshake.extensions_alpn_str"]) or None
        # No JA3 for QUIC (JA3 is defined for TLS over TCP); JA4 says "q".
        f["ja3"] = None if quic else h["tls.handshake.ja3"]
        f["ja4"] = ja4(h, "q" if quic else "t")
        if quic:
            f["quic_version"] = "0x%08x" % int(quic[0], 0)
    for h in tshark(pcap, "tls.handshake.type == 2",
                    ports + ["tls.handshake.ja3s", "tls.handshake.version", "tls.handshake.ciphersuite",
                             "tls.handshake.extensions.supported_version",
                             "tls.handshake.extensions_alpn_str"]):
        f = flow_of(h)
        selected = ints(h["tls.handshake.extensions.supported_version"])
        version = selected[0] if selected else int(h["tls.handshake.version"], 0)
        f["ja3s"] = None if h["quic.version"] else h["tls.handshake.ja3s"]
        f["version"] = TLS_VERSIONS.get(version, "0x%04x" % version)
        f["next_protocol"] = h["tls.handshake.extensions_alpn_str"] or None
        f["cipher"] = CIPHER_NAMES.get(int(h["tls.handshake.ciphersuite"], 0))
    # Server certificate (visible up to TLS 1.2): the leaf is the first one listed.
    for h in tshark(pcap, "tls.handshake.type == 11",
                    ports + ["tls.handshake.certificate", "x509af.serialNumber",
                             "x509ce.dNSName"]):
        f = flow_of(h)
        leaf = split(h["tls.handshake.certificate"])[0].replace(":", "")
        f["cert"] = {
            "tls.server.hash.sha256": hashlib.sha256(bytes.fromhex(leaf)).hexdigest(),
            "tls.server.x509.serial_number": split(h["x509af.serialNumber"])[0].replace(":", ""),
            "tls.server.x509.alternative_names": split(h["x509ce.dNSName"]) or None,
        }
    # DNS: the question of the flow's first query; its answers when the flow holds one
    # transaction (which transaction a multi-query flow reports is the sensor's choice).
    udp = ["ip.src", "ip.dst", "udp.srcport", "udp.dstport"]
    for q in tshark(pcap, "dns.flags.response == 0", udp + ["dns.qry.name", "dns.qry.type"]):
        f = flow_of(q)
        f["dns_queries"] = f.get("dns_queries", 0) + 1
        if "dns_question" not in f:
            qtype = int(q["dns.qry.type"] or 0)
            f["dns_question"] = (q["dns.qry.name"], DNS_TYPES.get(qtype, str(qtype)))
    for r in tshark(pcap, "dns.flags.response == 1",
                    udp + ["dns.resp.name", "dns.resp.type", "dns.a", "dns.resp.ttl"]):
        f = flow_of(r)
        if "dns_answers" in f:
            continue
        names, types = split(r["dns.resp.name"]), ints(r["dns.resp.type"])
        addrs, ttls = split(r["dns.a"]), ints(r["dns.resp.ttl"])
        answers = []
        for name, rtype, ttl in zip(names, types, ttls):
            if rtype == 1 and addrs:  # this responder only answers A records
                answers.append({"name": name, "type": "A", "data": addrs.pop(0), "ttl": ttl})
        f["dns_answers"] = answers
    # DNS A answers: (client, address) -> name, valid for flows that start afterwards.
    answers = []
    for r in tshark(pcap, "dns.flags.response == 1 && dns.a",
                    ["frame.time_epoch", "ip.dst", "dns.qry.name", "dns.a"]):
        for addr in split(r["dns.a"]):
            answers.append((float(r["frame.time_epoch"]), r["ip.dst"], addr, r["dns.qry.name"]))

    for key in order:
        f = flows[key]
        (cip, cport), (sip, sport) = f["client"], f["server"]
        out = {
            "source.ip": cip, "source.port": cport,
            "destination.ip": sip, "destination.port": sport,
            "network.transport": key[0],
            "source.packets": f["c"][0], "source.bytes": f["c"][1],
            "destination.packets": f["s"][0], "destination.bytes": f["s"][1],
        }
        if "dns_question" in f:
            out["network.protocol"] = "dns"
            out["dns.question.name"], out["dns.question.type"] = f["dns_question"]
            if f["dns_queries"] == 1:
                out["dns.answers"] = f.get("dns_answers") or None
        if "ja3" in f:
            domain, source = f["sni"], "sni" if f["sni"] else None
            if domain is None:
                names = [n for (t, c, a, n) in answers if c == cip and a == sip and t <= f["start"]]
                if names:
                    domain, source = names[-1], "dns"
            out.update({
                "network.protocol": "quic" if "quic_version" in f else "tls",
                "tls.client.server_name": f["sni"],
                "tls.client.alpn": f["alpn"],
                "tls.client.ja3": f["ja3"],
                "tls.client.ja4": f["ja4"],
                "tls.server.ja3s": f.get("ja3s"),
                "tls.version": f.get("version"),
                "tls.next_protocol": f.get("next_protocol"),
                "tls.cipher": f.get("cipher"),
                "destination.domain": domain,
                "nightjar.flow.domain_source": source,
            })
            out.update(f.get("cert", {}))
            if "quic_version" in f:
                out["nightjar.quic.version"] = f["quic_version"]
        print(json.dumps(out, sort_keys=False))


if __name__ == "__main__":
    main()
