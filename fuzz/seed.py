#!/usr/bin/env python3
"""Builds the fuzz seed corpora in fuzz/corpus/<target>/ from the captures in
pcaps/ and ../shared/corpus (when present) and the example files in config/
and tests/data/. Python standard library only.

Usage: fuzz/seed.py   (from anywhere; existing corpus files are kept)
"""
import hashlib
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CORPUS = os.path.join(HERE, "corpus")
# Index of each link type in nightjar::decode::SUPPORTED_LINK_TYPES (first byte of a `decode` input).
LINK_INDEX = {0: 0, 1: 1, 9: 2, 12: 3, 50: 4, 101: 5, 108: 6, 113: 7, 228: 8,
              229: 9, 239: 10, 258: 11, 276: 12}
MAX_CAPTURE_SEED = 64 * 1024
FRAMES_PER_FILE = 40
STREAM_BYTES = 16 * 1024


def put(target, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def frames(blob):
    """Yields (linktype, frame bytes) of a pcap or pcapng file; stops at damage."""
    if len(blob) < 24:
        return
    magic = blob[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = "<" if magic[0] in (0xd4, 0x4d) else ">"
        lt = struct.unpack(e + "I", blob[20:24])[0] & 0xffff
        pos = 24
        while pos + 16 <= len(blob):
            incl = struct.unpack(e + "I", blob[pos + 8:pos + 12])[0]
            pos += 16
            if pos + incl > len(blob):
                return
            yield lt, blob[pos:pos + incl]
            pos += incl
    elif magic == b"\x0a\x0d\x0d\x0a":
        e = "<"
        links = []
        pos = 0
        while pos + 12 <= len(blob):
            btype = struct.unpack(e + "I", blob[pos:pos + 4])[0]
            if btype == 0x0A0D0D0A:
                e = "<" if blob[pos + 8:pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
                links = []
            blen = struct.unpack(e + "I", blob[pos + 4:pos + 8])[0]
            if blen < 12 or pos + blen > len(blob):
                return
            body = blob[pos + 8:pos + blen - 4]
            if btype == 1 and len(body) >= 2:
                links.append(struct.unpack(e + "H", body[:2])[0])
            elif btype == 6 and len(body) >= 20:
                iface, _, _, cap, _ = struct.unpack(e + "IIIII", body[:20])
                if iface < len(links):
                    yield links[iface], body[20:20 + cap]
            elif btype == 3 and len(body) >= 4 and links:
                yield links[0], body[4:]
            pos += blen


def l3(lt, f):
    """Strips the link layer; returns IP bytes or None."""
    if lt == 1:
        off, et = 14, f[12:14] if len(f) >= 14 else b""
        while et in (b"\x81\x00", b"\x88\xa8") and len(f) >= off + 4:
            et, off = f[off + 2:off + 4], off + 4
        return f[off:] if et in (b"\x08\x00", b"\x86\xdd") else None
    if lt in (101, 12, 228, 229):
        return f
    if lt in (0, 108):
        return f[4:]
    if lt == 113:
        return f[16:]
    if lt == 276:
        return f[20:]
    return None


def l4(ip):
    """Returns (proto, src, dst, sport, dport, payload) or None."""
    if len(ip) < 20:
        return None
    v = ip[0] >> 4
    if v == 4:
        ihl = (ip[0] & 15) * 4
        proto, src, dst, rest = ip[9], ip[12:16], ip[16:20], ip[ihl:]
    elif v == 6 and len(ip) >= 40:
        proto, src, dst, rest = ip[6], ip[8:24], ip[24:40], ip[40:]
    else:
        return None
    if proto == 6 and len(rest) >= 20:
        doff = (rest[12] >> 4) * 4
        sp, dp = struct.unpack(">HH", rest[:4])
        return proto, src, dst, sp, dp, rest[doff:]
    if proto == 17 and len(rest) >= 8:
        sp, dp = struct.unpack(">HH", rest[:4])
        return proto, src, dst, sp, dp, rest[8:]
    return None


def records_to_messages(stream):
    out, pos = b"", 0
    while pos + 5 <= len(stream) and stream[pos] == 22:
        n = struct.unpack(">H", stream[pos + 3:pos + 5])[0]
        out += stream[pos + 5:pos + 5 + n]
        pos += 5 + n
    return out


def varint(n):
    if n < 64:
        return bytes([n])
    if n < 16384:
        return struct.pack(">H", 0x4000 | n)
    return struct.pack(">I", 0x80000000 | n)


def quic_seed(client, msgs):
    frame = b"\x06\x00" + varint(len(msgs)) + msgs
    packets = b""
    for i in range(0, len(frame), 1100):
        part = frame[i:i + 1100]
        packets += struct.pack("<H", len(part)) + part
    return bytes([0x07 if client else 0x06]) + packets


def capture_files():
    roots = [os.path.join(REPO, "pcaps"), os.environ.get("NIGHTJAR_CORPUS", "")]
    roots += [os.path.join(REPO, *[".."] * up, "shared", "corpus") for up in (1, 2)]
    for root in roots:
        for dirpath, _, names in os.walk(root):
            for n in sorted(names):
                if n.endswith((".pcap", ".pcapng", ".cap")):
                    yield os.path.join(dirpath, n)


WEBHOOK_SECRET = "fuzz-webhook-secret"  # harness::WEBHOOK_SECRET

INFO_PLIST = {"CommandUUID": "c1", "Status": "Acknowledged", "UDID": "U1",
              "QueryResponses": {"IsSupervised": True, "OSVersion": "17.4.1",
                                 "ProductName": "iPhone15,2", "SerialNumber": "F2LXK0AAPLJM",
                                 "WiFiMAC": "a4:83:e7:12:34:56"}}
APPS_PLIST = {"CommandUUID": "c2", "Status": "Acknowledged", "UDID": "U1",
              "InstalledApplicationList": [
                  {"Identifier": "com.a.b", "Name": "x", "ShortVersion": "1", "BundleSize": 1024},
                  {"Identifier": "com.c.d", "Name": "y", "Version": "2"}]}


def jamf_device(n, apps):
    """The Jamf Pro detail shape of tests/mdm_adapters.rs (jamf_device)."""
    return {"mobileDeviceId": str(n), "deviceType": "iOS",
            "general": {"udid": "00008110-00000000000000%02d" % n, "displayName": "Phone %d" % n,
                        "osVersion": "17.4.1", "supervised": n % 2 == 1, "managed": True,
                        "deviceOwnershipType": "Institutional" if n % 2 else "UserEnrollment",
                        "lastInventoryUpdateDate": "2024-05-01T10:00:00Z"},
            "hardware": {"serialNumber": "F2LXK0AAPL%02d" % n, "wifiMacAddress": "a4:83:e7:00:00:%02x" % n,
                         "model": "iPhone 15", "modelIdentifier": "iPhone15,4", "capacityMb": 128000},
            "applications": [{"identifier": i, "name": i, "version": "100", "shortVersion": v,
                              "managementStatus": st, "validationStatus": True, "bundleSize": "1024"}
                             for i, v, st in apps]}


def graph_device(gid, serial, udid, os_name, mac):
    """The Graph managedDevice shape of tests/mdm_adapters.rs (graph_server)."""
    return {"id": gid, "deviceName": "d", "operatingSystem": os_name, "osVersion": "17.5",
            "serialNumber": serial, "udid": udid, "wiFiMacAddress": mac, "model": "iPhone 14",
            "isSupervised": True, "managedDeviceOwnerType": "company",
            "userPrincipalName": "ana@example.com", "complianceState": "compliant"}


def http_request(path, body, auth, extra=""):
    head = "POST %s HTTP/1.1\r\nHost: sensor\r\n" % path
    if auth:
        head += "Authorization: %s\r\n" % auth
    head += extra
    head += "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    return head.encode() + body


def mdm_seeds():
    """Seeds for mdm_api, mdm_webhook, state and webhook: the shapes the tests use."""
    import base64
    import json
    import plistlib
    j = lambda v: json.dumps(v).encode()
    # mdm_api: 0 token, 1 Jamf detail page, 2 Graph managedDevices, 3 Graph detectedApps.
    for tok in [{"access_token": "jamf-token-1", "scope": "api-role:1", "token_type": "Bearer", "expires_in": 299},
                {"token_type": "Bearer", "expires_in": "3599", "ext_expires_in": 10, "access_token": "graph-token-1"},
                {"access_token": "t"}]:
        put("mdm_api", b"\x00" + j(tok))
    apps = [("com.tinyspeck.chatlyio", "24.05.10", "Managed"), ("net.whatsapp.WhatsApp", "24.9.78", "Unmanaged")]
    put("mdm_api", b"\x01" + j({"totalCount": 5, "results": [jamf_device(n, apps[: n % 3]) for n in range(1, 4)]}))
    put("mdm_api", b"\x01" + j({"totalCount": 0, "results": []}))
    put("mdm_api", b"\x01" + j({"totalCount": 2, "results": [{"general": {"udid": ""}}, 7, jamf_device(9, [])]}))
    nxt = "https://graph.microsoft.com/v1.0/deviceManagement/managedDevices?$skiptoken=page2"
    put("mdm_api", b"\x02" + j({"@odata.context": "x", "@odata.count": 2, "@odata.nextLink": nxt, "value": [
        graph_device("11111111-aaaa-4bbb-8ccc-000000000001", "SER1", "UDID-1", "iOS", "6C4A8513A6A1"),
        graph_device("11111111-aaaa-4bbb-8ccc-000000000002", "SER2", "", "iOS", ""),
        graph_device("../x", "SER3", "UDID-3", "iPadOS", "not-a-mac")]}))
    put("mdm_api", b"\x03" + j({"value": [
        {"id": "a1", "displayName": "com.microsoft.Office.Outlook", "version": "4.21", "sizeInByte": 1,
         "deviceCount": 3, "publisher": "Microsoft", "platform": "ios"},
        {"id": "a2", "displayName": "Calculator", "version": "1", "platform": "ios"}]}))
    # mdm_webhook: 0 Jamf, 1 MicroMDM envelope, 2 raw plist answer.
    hooks = []
    for ev in ["MobileDeviceCheckIn", "MobileDeviceInventoryCompleted", "MobileDeviceEnrolled",
               "MobileDeviceUnEnrolled", "MobileDevicePushSent", "ComputerAdded"]:
        hooks.append(j({"webhook": {"id": 1, "name": "nightjar", "webhookEvent": ev, "eventTimestamp": 1714550400000},
                        "event": {"jssID": 4, "udid": "00008110-0000000000000004", "serialNumber": "F2LXK0AAPL04",
                                  "deviceName": "Phone 4", "model": "iPhone 15", "osVersion": "17.4.1"}}))
    for h in hooks:
        put("mdm_webhook", b"\x00" + h)
    plists = [plistlib.dumps(INFO_PLIST), plistlib.dumps(APPS_PLIST),
              plistlib.dumps(INFO_PLIST, fmt=plistlib.FMT_BINARY),
              plistlib.dumps(APPS_PLIST, fmt=plistlib.FMT_BINARY)]
    envelopes = []
    for pl in plists[:2]:
        envelopes.append(j({"topic": "mdm.Connect", "event_id": "5b9e7c1a-0000-4000-8000-000000000001",
                            "created_at": "2024-05-02T08:00:00Z",
                            "acknowledge_event": {"udid": "U1", "status": "Acknowledged", "command_uuid": "c1",
                                                  "raw_payload": base64.b64encode(pl).decode()}}))
    envelopes.append(j({"topic": "mdm.CheckOut", "checkin_event": {"udid": "U1", "raw_payload": ""}}))
    envelopes.append(j({"topic": "mdm.Connect", "acknowledge_event": {"udid": "U", "status": "NotNow"}}))
    for e in envelopes:
        put("mdm_webhook", b"\x01" + e)
    for pl in plists:
        put("mdm_webhook", b"\x02" + pl)
    # state: 0 last good inventory, 1 poll cursor, 2 baselines.
    for name in ["config/inventory.example.json", "config/demo/inventory.json", "tests/data/identity/inventory.json"]:
        path = os.path.join(REPO, name)
        if os.path.exists(path):
            put("state", b"\x00" + open(path, "rb").read())
    put("state", b"\x01" + j({"last_success": "2024-05-01T08:00:00Z", "fingerprint": "9f2c", "devices": 5}))
    put("state", b"\x01" + j({"last_success": "2024-05-01T08:00:00.123456789+02:00", "fingerprint": "", "devices": 0}))
    sketch = {"as_of_ns": 1714550400000000000, "zero": 1.0, "buckets": {"120": 1.5, "121": 2.0, "-3": 0.25}}
    put("state", b"\x02" + j({"version": 1, "half_life_seconds": 604800,
                               "scopes": {"app:com.a.b": {"bytes": sketch, "gap": sketch},
                                          "category:chat": {"bytes": sketch}},
                               "apps": {"com.a.b": {"first_seen": {"d:example.com": 1714550400000000000,
                                                                   "j:t13d1516h2_8daaf6152771_02713d6af862": 1}}},
                               "refused": 0}))
    put("state", b"\x02" + j({"version": 1, "half_life_seconds": 0, "scopes": {}}))
    # webhook: flags byte, then raw HTTP/1.1 on one connection.
    bearer = "Bearer " + WEBHOOK_SECRET
    basic = "Basic " + base64.b64encode(("micromdm:" + WEBHOOK_SECRET).encode()).decode()
    reqs = [http_request("/webhook/jamf", hooks[0], bearer),
            http_request("/webhook/micromdm", envelopes[0], basic),
            http_request("/webhook/nanomdm", envelopes[1], basic, "Expect: 100-continue\r\n"),
            http_request("/webhook/jamf", hooks[1], None),
            http_request("/webhook/jamf", b"{" * 300, bearer),
            http_request("/other", b"", bearer),
            b"GET /webhook/jamf HTTP/1.1\r\nHost: sensor\r\n\r\n"]
    chunked = (("POST /webhook/jamf HTTP/1.1\r\nAuthorization: %s\r\nTransfer-Encoding: chunked\r\n\r\n" % bearer).encode()
               + b"%x\r\n" % len(hooks[2]) + hooks[2] + b"\r\n0\r\n\r\n")
    reqs.append(chunked)
    reqs.append(http_request("/webhook/jamf", hooks[0][:20], bearer)[:-5])  # cut short
    for r in reqs:
        put("webhook", b"\x00" + r)
    put("webhook", b"\x00" + b"".join(reqs[:3]))  # pipelined
    put("webhook", b"\x03" + b"".join(reqs[:4]))  # small bounds
    # Signed with X-Nightjar-Signature: bits 2-3 of byte 0 pick "hmac" (4) or "either" (8).
    import hmac as hmac_
    sig = lambda body: "X-Nightjar-Signature: sha256=%s\r\n" % hmac_.new(
        WEBHOOK_SECRET.encode(), body, "sha256").hexdigest()
    signed = [http_request("/webhook/jamf", hooks[0], None, sig(hooks[0])),
              http_request("/webhook/micromdm", envelopes[0], None, sig(envelopes[0])),
              http_request("/webhook/jamf", hooks[1], None, sig(hooks[0]))]  # another body's
    for r in signed:
        put("webhook", b"\x04" + r)
        put("webhook", b"\x08" + r)
    put("webhook", b"\x08" + reqs[0] + signed[0])


def identity_seeds():
    """Seeds for identity: byte 0 is the socket queue's capacity pick, then a feed."""
    docs = os.path.join(REPO, "docs/identity.md")
    lines = []
    if os.path.exists(docs):
        lines += [l for l in open(docs).read().splitlines() if l.startswith('{"ts"')]
    lines += [
        '{"ts":1714557600.5,"ip":"fd00::6","mac":"3C-06-30-AA-BB-01","source":"wg"}',
        '{"ts":"1714557601","ip":"10.8.0.7","serial":"DMPXK1ABCDEF","source":"radius","event":"assign"}',
        '{"ts":"2024-05-01T10:00:00.123456789+02:00","ip":"10.8.0.7","mac":"f01898010203","source":"radius"}',
        '{"ts":1714557602,"ip":"10.8.0.7","device_id":"dev-x","user":"bob","source":"strongswan"}',
        '{"ts":1714557603,"ip":"10.8.0.7","source":"strongswan","event":"release"}',
        '{"ts":1714557603,"ip":"10.8.0.8","source":"s","event":"up"}',
        '{"ts":true,"ip":"10.0.0.1","source":"s"}',
    ]
    path = os.path.join(REPO, "tests/data/identity/feed.ndjson")
    if os.path.exists(path):
        feed = open(path, "rb").read()
        put("identity", b"\x03" + feed)
        put("identity", b"\x01" + feed)
    for l in lines:
        put("identity", b"\x03" + l.encode() + b"\n")
    put("identity", b"\x03" + "\n".join(["# comment", ""] + lines[:6]).encode())
    put("identity", b"\x02" + "\r\n".join(lines).encode() + b"\r\n")
    put("identity", b"\x03" + lines[0].encode() + b"\n" + b"x" * 5000 + b"\n" + lines[1].encode())


def main():
    streams = {}
    nfiles = 0
    for path in capture_files():
        blob = open(path, "rb").read()
        nfiles += 1
        if len(blob) <= MAX_CAPTURE_SEED:
            put("capture", blob)
            put("pipeline", blob)
        for i, (lt, f) in enumerate(frames(blob)):
            if i < FRAMES_PER_FILE and lt in LINK_INDEX:
                put("decode", bytes([LINK_INDEX[lt]]) + f)
            ip = l3(lt, f)
            t = l4(ip) if ip else None
            if not t or not t[5]:
                continue
            proto, src, dst, sp, dp, pl = t
            if proto == 17 and pl[:2] == b"\x16\xfe":
                put("tls", b"\x04" + pl)
            if proto == 6:
                k = (path, src, dst, sp, dp)
                if len(streams.get(k, b"")) < STREAM_BYTES:
                    streams[k] = streams.get(k, b"") + pl
    for s in streams.values():
        s = s[:STREAM_BYTES]
        if len(s) < 6 or s[0] != 22:
            continue
        client = s[5] == 1
        put("tls", (b"\x00" if client else b"\x02") + s)
        msgs = records_to_messages(s)
        if msgs:
            put("tls", (b"\x01" if client else b"\x03") + msgs)
            put("quic_initial", quic_seed(client, msgs[:4000]))
            # The same stream as reassembly operations: 3 pieces, out of order.
            third = max(1, len(s) // 3)
            ops = b""
            for off in (third, 0, 2 * third):
                piece = s[off:off + min(third, 255)]
                ops += struct.pack("<HB", off, len(piece)) + piece
            put("reassembly", b"\x20" + ops)
    for name, target, prefix in [
        ("config/inventory.example.json", "mdm_files", b"\x00"),
        ("config/events.example.ndjson", "mdm_files", b"\x01"),
        ("config/catalog/apps.toml", "mdm_files", b"\x03"),
        ("config/catalog/shared_sdks.toml", "mdm_files", b"\x03"),
        ("config/catalog/system.toml", "mdm_files", b"\x03"),
        ("tests/data/mdm/App_Privacy_Report_v4_2024-05-02T09_12_44.ndjson", "mdm_files", b"\x04"),
        ("tests/data/mdm/FieldNotes-Info.plist", "plist", b""),
        ("tests/data/mdm/FieldNotes-entitlements.plist", "plist", b""),
        ("config/nightjar.example.toml", "config", b""),
    ]:
        p = os.path.join(REPO, name)
        if os.path.exists(p):
            put(target, prefix + open(p, "rb").read())
    mdm_seeds()
    identity_seeds()
    for d in sorted(os.listdir(CORPUS)):
        print(f"{d}: {len(os.listdir(os.path.join(CORPUS, d)))} seeds")
    print(f"from {nfiles} capture files", file=sys.stderr)


if __name__ == "__main__":
    main()
