#!/usr/bin/env bash
# Compare nightjar's TLS/QUIC handshake fields with Suricata 7's on the captures here.
#
# Usage: bash pcaps/compare-suricata.sh [PCAP...]
#   (default: every pcaps/*.pcap; NIGHTJAR=path/to/nightjar, default target/release/nightjar)
#
# Suricata runs with JA3 and JA4 switched on (a config written to a temporary directory,
# no rules, checksums not checked). For each TLS or QUIC flow, keyed by its 5-tuple, the
# script compares ja3, ja3s, ja4, sni, tls_version (TLS over TCP), and for QUIC sni, ja4,
# alpn and quic_version. Suricata 7 logs no ALPN for TLS over TCP and no JA3 for QUIC in
# nightjar's sense (nightjar gives none for QUIC), so those are not compared.
# Prints per field: compared, agree, disagree, known Suricata deviation from the JA4 spec
# (its JA4 recomputed from nightjar's raw JA4 with Suricata's rule matches), only one side;
# then each difference. Exit status 1 if any field disagrees otherwise, 0 if not. Needs suricata (7.0.10 from
# bookworm-backports has JA4) and python3.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NIGHTJAR="${NIGHTJAR:-$HERE/../target/release/nightjar}"
command -v suricata >/dev/null || { echo "suricata not found (apt-get install -t bookworm-backports suricata)" >&2; exit 2; }
[[ -x $NIGHTJAR ]] || { echo "$NIGHTJAR not built (cargo build --release)" >&2; exit 2; }
if (($# == 0)); then set -- "$HERE"/*.pcap; fi

WORK="$(mktemp -d /tmp/njsuri.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
cat >"$WORK/suricata.yaml" <<'EOF'
%YAML 1.1
---
outputs:
  - eve-log:
      enabled: yes
      filetype: regular
      filename: eve.json
      types:
        - tls:
            extended: yes
            ja4: on
        - quic:
            ja4: on
app-layer:
  protocols:
    tls:
      enabled: yes
      detection-ports:
        dp: 443
      ja3-fingerprints: yes
      ja4-fingerprints: yes
    quic:
      enabled: yes
stream:
  midstream: false
EOF

for pcap in "$@"; do
    name="$(basename "$pcap" .pcap)"
    mkdir -p "$WORK/$name"
    suricata -c "$WORK/suricata.yaml" -S /dev/null -k none --runmode single \
        -l "$WORK/$name" -r "$pcap" >"$WORK/$name/suricata.log" 2>&1 ||
        { echo "suricata failed on $pcap:" >&2; tail -5 "$WORK/$name/suricata.log" >&2; exit 2; }
    "$NIGHTJAR" replay --quiet "$pcap" >"$WORK/$name/nightjar.jsonl"
    echo "$name" >>"$WORK/names"
done
echo "$(suricata -V | head -1); nightjar $("$NIGHTJAR" --version | awk '{print $2}')"

python3 - "$WORK" <<'PY'
import collections, hashlib, ipaddress, json, os, sys

work = sys.argv[1]
FIELDS = ["sni", "ja3", "ja3s", "ja4", "tls_version", "alpn", "quic_version"]


def key(t, a, ap, b, bp):
    ip = lambda x: str(ipaddress.ip_address(x))  # suricata writes IPv6 uncompressed
    return (t, ip(a), int(ap), ip(b), int(bp))


def suricata(path):
    """5-tuple -> {field: value} from suricata's tls and quic events."""
    out = collections.defaultdict(dict)
    for line in open(path):
        e = json.loads(line)
        kind = e.get("event_type")
        if kind == "tls":
            t = e["tls"]
            f = out[key("tcp", e["src_ip"], e["src_port"], e["dest_ip"], e["dest_port"])]
            for k, v in (("sni", t.get("sni")), ("ja3", t.get("ja3", {}).get("hash")),
                         ("ja3s", t.get("ja3s", {}).get("hash")), ("ja4", t.get("ja4"))):
                if v:
                    f[k] = v
            # "TLS 1.2", "TLSv1" (1.0), "UNDETERMINED" (no ServerHello parsed)
            v = {"TLSv1": "1.0"}.get(t.get("version"), t.get("version", ""))
            if v.startswith("TLS "):
                v = v[4:]
            if v[:2] == "1.":
                f["tls_version"] = v
        elif kind == "quic":
            q = e["quic"]
            if "ja4" not in q and "sni" not in q:
                continue  # a server packet: only the version
            f = out[key("udp", e["src_ip"], e["src_port"], e["dest_ip"], e["dest_port"])]
            f.setdefault("quic_version", "0x" + q["version"].lower().rjust(8, "0"))
            for k in ("sni", "ja4"):
                if q.get(k):
                    f.setdefault(k, q[k])
            for x in q.get("extensions", []):
                if x.get("type") == 16 and "values" in x:
                    f.setdefault("alpn", x["values"])
    return out


def nightjar(path):
    out = {}
    for line in open(path):
        r = json.loads(line)
        if r.get("event", {}).get("dataset") != "nightjar.flow":
            continue
        tls, quic = r.get("tls", {}), r.get("nightjar", {}).get("quic", {})
        if not tls and not quic:
            continue
        s, d = r["source"], r["destination"]
        t = r["network"]["transport"]
        c = tls.get("client", {})
        f = {"sni": c.get("server_name"), "ja4": c.get("ja4"), "ja4_r": c.get("ja4_r")}
        if t == "tcp":
            f.update(ja3=c.get("ja3"), ja3s=tls.get("server", {}).get("ja3s"),
                     tls_version=tls.get("version"))
        else:
            f.update(alpn=c.get("alpn"), quic_version=quic.get("version"))
        out[key(t, s["ip"], s["port"], d["ip"], d["port"])] = {k: v for k, v in f.items() if v}
    return out


def suricata_ja4_rule(ja4_r):
    """JA4 as Suricata 7.0 computes it from nightjar's raw JA4: it appends '_' to the
    extension list even when there are no signature algorithms (the FoxIO spec,
    technical_details/JA4.md: no signature algorithms, no trailing underscore)."""
    a, ciphers, rest = ja4_r.split("_", 2)
    if "_" not in rest:
        rest += "_"
    h = lambda x: hashlib.sha256(x.encode()).hexdigest()[:12]
    return f"{a}_{h(ciphers) if ciphers else '000000000000'}_{h(rest)}"


stats = {f: collections.Counter() for f in FIELDS}
problems = []
for name in open(os.path.join(work, "names")).read().split():
    su = suricata(os.path.join(work, name, "eve.json")) if os.path.exists(
        os.path.join(work, name, "eve.json")) else {}
    nj = nightjar(os.path.join(work, name, "nightjar.jsonl"))
    for k in sorted(set(su) | set(nj), key=str):
        a, b = su.get(k, {}), nj.get(k, {})
        flow = f"{name} {k[1]}:{k[2]}->{k[3]}:{k[4]}/{k[0]}"
        for f in FIELDS:
            if f not in a and f not in b:
                continue
            if k[0] == "tcp" and f in ("alpn", "quic_version"):
                continue
            if f not in a:
                stats[f]["nightjar only"] += 1
                problems.append(f"{flow} {f}: suricata none, nightjar {b[f]}")
            elif f not in b:
                stats[f]["suricata only"] += 1
                problems.append(f"{flow} {f}: suricata {a[f]}, nightjar none")
            elif a[f] == b[f]:
                stats[f]["agree"] += 1
            elif f == "ja4" and b.get("ja4_r") and a[f] == suricata_ja4_rule(b["ja4_r"]):
                stats[f]["suricata deviation"] += 1
                problems.append(f"{flow} ja4: suricata {a[f]}, nightjar {b[f]} (suricata's "
                                "deviation from the spec: '_' kept without signature algorithms)")
            else:
                stats[f]["disagree"] += 1
                problems.append(f"{flow} {f}: suricata {a[f]}, nightjar {b[f]}")

print(f"{'field':<14}{'compared':>9}{'agree':>7}{'disagree':>9}{'suricata deviation':>20}"
      f"{'suricata only':>15}{'nightjar only':>15}")
for f in FIELDS:
    s = stats[f]
    n = sum(s.values())
    print(f"{f:<14}{n:>9}{s['agree']:>7}{s['disagree']:>9}{s['suricata deviation']:>20}"
          f"{s['suricata only']:>15}{s['nightjar only']:>15}")
for p in problems:
    print("  " + p)
sys.exit(1 if any(stats[f]["disagree"] for f in FIELDS) else 0)
PY
