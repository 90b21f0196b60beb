#!/usr/bin/env python3
"""Deterministic out-of-order variant of a capture with a split TLS ClientHello.

Usage: reorder.py IN.pcap OUT.pcap

For every TCP connection whose first client payload segment starts a TLS handshake record
that is longer than the segment (a ClientHello split over segments), the packet data of the
first two client payload segments are swapped in the file. Timestamps stay where they were, so
the second half of the hello arrives first. Everything else is copied byte for byte.
Classic pcap only (either byte order, micro- or nanosecond), Ethernet or raw IPv4 link types.
Standard library only.
"""
import struct
import sys

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101


def read_pcap(path):
    with open(path, "rb") as f:
        data = f.read()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        sys.exit(f"{path}: not a classic pcap file")
    header = data[:24]
    linktype = struct.unpack(endian + "I", data[20:24])[0] & 0x0FFFFFFF
    records, off = [], 24
    while off + 16 <= len(data):
        ts_sec, ts_frac, incl, orig = struct.unpack(endian + "IIII", data[off:off + 16])
        records.append([data[off:off + 16], data[off + 16:off + 16 + incl]])
        off += 16 + incl
    return endian, header, linktype, records


def tcp_segment(linktype, frame):
    """(src, sport, dst, dport, flags, payload) of an IPv4 TCP frame, or None."""
    if linktype == LINKTYPE_ETHERNET:
        if len(frame) < 14 or frame[12:14] != b"\x08\x00":
            return None
        ip = frame[14:]
    elif linktype == LINKTYPE_RAW:
        ip = frame
    else:
        sys.exit(f"unsupported link type {linktype}")
    if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:
        return None
    ihl = (ip[0] & 0x0F) * 4
    total = struct.unpack("!H", ip[2:4])[0]
    tcp = ip[ihl:total]
    if len(tcp) < 20:
        return None
    sport, dport = struct.unpack("!HH", tcp[:4])
    doff = (tcp[12] >> 4) * 4
    return ip[12:16], sport, ip[16:20], dport, tcp[13], tcp[doff:]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    endian, header, linktype, records = read_pcap(sys.argv[1])
    clients = {}  # connection key -> client (addr, port), from the SYN
    payloads = {}  # connection key -> record indexes of client payload segments
    for i, (_, frame) in enumerate(records):
        seg = tcp_segment(linktype, frame)
        if seg is None:
            continue
        src, sport, dst, dport, flags, payload = seg
        key = frozenset([(src, sport), (dst, dport)])
        if flags & 0x12 == 0x02:  # SYN without ACK: this side is the client
            clients[key] = (src, sport)
        if payload and clients.get(key) == (src, sport):
            payloads.setdefault(key, []).append(i)
    swapped = 0
    for key, idx in payloads.items():
        if len(idx) < 2:
            continue
        first = tcp_segment(linktype, records[idx[0]][1])[5]
        is_hello = len(first) >= 6 and first[0] == 0x16 and first[5] == 0x01
        record_len = struct.unpack("!H", first[3:5])[0] + 5 if len(first) >= 5 else 0
        if is_hello and record_len > len(first):
            a, b = idx[0], idx[1]
            # Swap the whole records except the timestamp fields, so lengths stay consistent.
            (ha, fa), (hb, fb) = records[a], records[b]
            records[a] = [ha[:8] + hb[8:], fb]
            records[b] = [hb[:8] + ha[8:], fa]
            swapped += 1
    if not swapped:
        sys.exit("no split ClientHello found")
    with open(sys.argv[2], "wb") as f:
        f.write(header)
        for rec_header, frame in records:
            f.write(rec_header)
            f.write(frame)
    print(f"swapped the split ClientHello segments of {swapped} connection(s)", file=sys.stderr)


if __name__ == "__main__":
    main()
