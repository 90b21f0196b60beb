//! The record types nightjar writes, built field by field in the documented
//! schema (docs/schema.md): `nightjar.flow`, `nightjar.dns`, `nightjar.stats`.

use super::record::{hex16, mac, tcp_flags, transport_name, ts, Record};
use crate::correlate::identity::Identity;
use crate::correlate::FlowContext;
use crate::flow::inspect::AppSummary;
use crate::observation::{DnsObservation, FlowSummary};
use crate::proto::dns::DnsSummary;
use crate::proto::tls::{self, ClientHello, ServerHandshake};
use serde_json::{json, Value};

fn hex16_list(v: &[u16]) -> Vec<String> {
    v.iter().map(|&x| hex16(x)).collect()
}

/// IANA name of a cipher suite, or its hex code point when unknown.
fn cipher_name(id: u16) -> String {
    tls_parser::TlsCipherSuite::from_id(id).map_or_else(|| hex16(id), |c| c.name.to_string())
}

pub fn flow_record(f: &FlowSummary, ctx: &FlowContext) -> Record {
    let mut r = Record::new("nightjar.flow", f.end_ns);
    r.put("event.kind", "event");
    r.put("event.category", json!(["network"]));
    if f.interim {
        r.put("event.type", json!(["connection", "info"]));
        r.put("event.action", "flow_interim");
    } else {
        r.put("event.type", json!(["connection", "end"]));
        r.put("event.action", "flow_end");
    }
    r.put("event.start", ts(f.start_ns));
    r.put("event.end", ts(f.end_ns));
    r.put("event.duration", f.end_ns.saturating_sub(f.start_ns));

    for (paths, ip, port, d) in [
        (
            [
                "source.ip",
                "source.port",
                "source.mac",
                "source.packets",
                "source.bytes",
            ],
            f.client_ip,
            f.client_port,
            &f.client,
        ),
        (
            [
                "destination.ip",
                "destination.port",
                "destination.mac",
                "destination.packets",
                "destination.bytes",
            ],
            f.server_ip,
            f.server_port,
            &f.server,
        ),
    ] {
        let [ip_path, port_path, mac_path, packets_path, bytes_path] = paths;
        r.put(ip_path, ip.to_string());
        if matches!(f.proto, 6 | 17 | 132) {
            r.put(port_path, port);
        }
        r.put_opt(mac_path, d.mac.as_ref().map(mac));
        r.put(packets_path, d.packets);
        r.put(bytes_path, d.ip_bytes);
    }
    r.put_opt("destination.domain", ctx.domain.clone());
    if let Some(id) = &ctx.identity {
        put_identity(&mut r, id);
    }
    if let Some(b) = ctx.blind_spot {
        r.put("nightjar.flow.blind_spot", b.as_str());
    }

    r.put("network.transport", transport_name(f.proto));
    r.put(
        "network.type",
        if f.client_ip.is_ipv6() {
            "ipv6"
        } else {
            "ipv4"
        },
    );
    r.put_opt("network.protocol", f.app.protocol);
    if let Some(&outer) = f.vlans.first() {
        r.put("network.vlan.id", outer.to_string());
    }
    if let Some(&inner) = f.vlans.get(1) {
        r.put("network.inner.vlan.id", inner.to_string());
    }
    r.put("network.community_id", f.community_id.clone());
    r.put("network.packets", f.client.packets + f.server.packets);
    r.put("network.bytes", f.client.ip_bytes + f.server.ip_bytes);

    r.put("nightjar.flow.id", format!("{:016x}", f.id));
    r.put_ser("nightjar.flow.termination", &f.termination);
    r.put_ser("nightjar.flow.client_reason", &f.client_reason);
    r.put("nightjar.flow.payload_bytes.client", f.client.payload_bytes);
    r.put("nightjar.flow.payload_bytes.server", f.server.payload_bytes);
    if f.proto == 6 {
        r.put(
            "nightjar.flow.tcp_flags.client",
            tcp_flags(f.client.tcp_flags),
        );
        r.put(
            "nightjar.flow.tcp_flags.server",
            tcp_flags(f.server.tcp_flags),
        );
    }
    if !f.encap.is_empty() {
        r.put("nightjar.flow.encapsulation", json!(f.encap));
    }
    if f.truncated_packets > 0 {
        r.put("nightjar.flow.truncated_packets", f.truncated_packets);
    }
    if f.fragments > 0 {
        r.put("nightjar.flow.fragments", f.fragments);
    }
    let p = &f.profile;
    r.put(
        "nightjar.flow.profile.lengths",
        p.lengths.iter().copied().collect::<Value>(),
    );
    r.put(
        "nightjar.flow.profile.iat_us",
        p.iat_us.iter().copied().collect::<Value>(),
    );
    r.put("nightjar.flow.profile.bursts", p.bursts);
    r.put(
        "nightjar.flow.profile.max_burst_bytes",
        p.max_burst_bytes.iter().copied().collect::<Value>(),
    );
    r.put("nightjar.flow.profile.idle_gaps", p.idle_gaps);
    r.put("nightjar.flow.profile.idle_gap_max_us", p.idle_gap_max_us);
    r.put(
        "nightjar.flow.profile.idle_gap_total_us",
        p.idle_gap_total_us,
    );
    if let Some(src) = ctx.domain_source {
        r.put("nightjar.flow.domain_source", src);
    }
    if !ctx.dns_names.is_empty() {
        let names: Vec<Value> = ctx
            .dns_names
            .iter()
            .map(|n| json!({"name": n.name, "canonical": n.canonical, "seen": ts(n.seen_ns), "method": "dns"}))
            .collect();
        r.put("nightjar.dns.names", names);
    }
    put_app(&mut r, &f.app);
    r
}

/// `device.id`, `nightjar.device.*` and `user.name` from the client's identity.
fn put_identity(r: &mut Record, id: &Identity) {
    r.put_opt("device.id", id.device_id.clone());
    r.put("nightjar.device.identity.method", id.method.as_str());
    r.put(
        "nightjar.device.identity.confidence",
        id.confidence.as_str(),
    );
    r.put("nightjar.device.identity.matched_on", json!(id.matched_on));
    r.put_opt("nightjar.device.identity.mac", id.mac.as_ref().map(mac));
    if id.private_mac {
        r.put("nightjar.device.identity.private_mac", true);
    }
    r.put_opt(
        "nightjar.device.identity.feed_source",
        id.feed_source.clone(),
    );
    r.put_opt("user.name", id.user.clone());
    if let Some(d) = &id.dhcp {
        r.put_opt("nightjar.device.dhcp.hostname", d.hostname.clone());
        r.put_opt("nightjar.device.dhcp.vendor_class", d.vendor_class.clone());
        if !d.parameter_request_list.is_empty() {
            r.put(
                "nightjar.device.dhcp.parameter_request_list",
                json!(d.parameter_request_list),
            );
        }
        r.put_opt("nightjar.device.dhcp.client_id", d.client_id.clone());
    }
}

fn put_app(r: &mut Record, app: &AppSummary) {
    if let Some(ch) = &app.client_hello {
        put_client_hello(r, ch);
    }
    if let Some(sh) = &app.server {
        put_server(r, sh, app.client_hello.as_deref());
    }
    if app.tls_truncated {
        r.put("nightjar.tls.truncated", true);
    }
    if let Some(q) = &app.quic {
        r.put("nightjar.quic.version", format!("0x{:08x}", q.version));
        r.put("nightjar.quic.decrypted", q.decrypted);
        r.put("nightjar.quic.initial_packets", q.initial_packets);
        if q.retry {
            r.put("nightjar.quic.retry", true);
        }
        if q.version_negotiation {
            r.put("nightjar.quic.version_negotiation", true);
        }
    }
    if let Some(d) = &app.dns {
        put_dns(r, d);
    }
}

fn put_client_hello(r: &mut Record, ch: &ClientHello) {
    r.put_opt("tls.client.server_name", ch.sni.clone());
    if !ch.alpn.is_empty() {
        r.put("tls.client.alpn", json!(ch.alpn));
    }
    if ch.transport != tls::Transport::Quic {
        r.put("tls.client.ja3", ch.ja3.clone());
        r.put("tls.client.ja3_string", ch.ja3_string.clone());
    }
    r.put("tls.client.ja4", ch.ja4.clone());
    r.put("tls.client.ja4_r", ch.ja4_r.clone());
    r.put(
        "tls.client.supported_ciphers",
        ch.ciphers
            .iter()
            .map(|&c| cipher_name(c))
            .collect::<Vec<_>>(),
    );
    r.put(
        "nightjar.tls.client.legacy_version",
        hex16(ch.legacy_version),
    );
    if !ch.supported_versions.is_empty() {
        r.put(
            "nightjar.tls.client.supported_versions",
            hex16_list(&ch.supported_versions),
        );
    }
    r.put("nightjar.tls.client.extensions", hex16_list(&ch.extensions));
    r.put(
        "nightjar.tls.client.supported_groups",
        hex16_list(&ch.groups),
    );
    r.put(
        "nightjar.tls.client.signature_algorithms",
        hex16_list(&ch.sig_algs),
    );
    r.put(
        "nightjar.tls.client.key_share_groups",
        hex16_list(&ch.key_share_groups),
    );
    r.put("nightjar.tls.client.ech", ch.ech);
    r.put("nightjar.tls.client.pq_hybrid", ch.pq_hybrid);
    r.put("nightjar.tls.client.grease", ch.grease);
    r.put("nightjar.tls.client.psk_offered", ch.psk_offered);
    if !ch.malformed_extensions.is_empty() {
        r.put(
            "nightjar.tls.client.malformed_extensions",
            hex16_list(&ch.malformed_extensions),
        );
    }
}

fn put_server(r: &mut Record, sh: &ServerHandshake, ch: Option<&ClientHello>) {
    if let Some(h) = &sh.hello {
        let v = h.negotiated_version();
        match tls::version_name(v) {
            Some("ssl3") => {
                r.put("tls.version", "3.0");
                r.put("tls.version_protocol", "ssl");
            }
            Some(name) => {
                r.put("tls.version", name);
                r.put("tls.version_protocol", "tls");
            }
            None => r.put("tls.version", hex16(v)),
        }
        r.put("tls.cipher", cipher_name(h.cipher));
        r.put_opt("tls.next_protocol", h.alpn.clone());
        if let Some(resumed) = ch.and_then(|c| tls::session_resumed(c, h)) {
            r.put("tls.resumed", resumed);
        }
        if ch.map(|c| c.transport) != Some(tls::Transport::Quic) {
            r.put("tls.server.ja3s", h.ja3s.clone());
            r.put("tls.server.ja3s_string", h.ja3s_string.clone());
        }
        r.put("nightjar.tls.server.extensions", hex16_list(&h.extensions));
        if h.hello_retry_request {
            r.put("nightjar.tls.hello_retry_request", true);
        }
    }
    if let Some(c) = &sh.certificate {
        r.put(
            "tls.server.x509.subject.distinguished_name",
            c.subject.clone(),
        );
        r.put(
            "tls.server.x509.issuer.distinguished_name",
            c.issuer.clone(),
        );
        if !c.san_dns.is_empty() {
            r.put("tls.server.x509.alternative_names", json!(c.san_dns));
        }
        r.put("tls.server.x509.not_before", c.not_before.clone());
        r.put("tls.server.x509.not_after", c.not_after.clone());
        r.put("tls.server.x509.serial_number", c.serial.clone());
        r.put("tls.server.hash.sha256", c.sha256.clone());
        r.put("nightjar.tls.server.chain_length", c.chain_len);
    }
}

fn put_dns(r: &mut Record, d: &DnsSummary) {
    r.put("dns.id", d.id);
    r.put("dns.type", if d.is_response { "answer" } else { "query" });
    r.put("dns.op_code", d.op_code.clone());
    r.put("dns.header_flags", json!(d.header_flags));
    if let Some(q) = &d.question {
        r.put("dns.question.name", q.name.clone());
        r.put("dns.question.type", q.qtype.clone());
        r.put("dns.question.class", q.class.clone());
    }
    if d.is_response {
        r.put("dns.response_code", d.response_code.clone());
        let answers: Vec<Value> = d
            .answers
            .iter()
            .map(|a| {
                let mut v = json!({"name": a.name, "type": a.rtype, "class": a.class, "ttl": a.ttl, "data": a.data});
                if let Some(s) = &a.svcb {
                    v["svcb"] = serde_json::to_value(s).unwrap_or(Value::Null);
                }
                v
            })
            .collect();
        r.put("dns.answers", answers);
        let ips: Vec<String> = d.resolved_ips.iter().map(|x| x.ip.to_string()).collect();
        if !ips.is_empty() {
            r.put("dns.resolved_ip", ips);
        }
    }
}

pub fn dns_record(d: &DnsObservation) -> Record {
    let mut r = Record::new("nightjar.dns", d.ts_ns);
    r.put("event.kind", "event");
    r.put("event.category", json!(["network"]));
    r.put("event.type", json!(["protocol", "info"]));
    r.put("source.ip", d.client_ip.to_string());
    r.put("source.port", d.client_port);
    r.put("destination.ip", d.server_ip.to_string());
    r.put("destination.port", d.server_port);
    r.put("network.transport", transport_name(d.proto));
    r.put("network.protocol", "dns");
    r.put("network.community_id", d.community_id.clone());
    r.put("nightjar.flow.id", format!("{:016x}", d.flow_id));
    put_dns(&mut r, &d.message);
    r
}
