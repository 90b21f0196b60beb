//! Device identity and names on flows, over pcaps/dhcp-dns-tls.pcap (made by
//! pcaps/make-dhcp-capture.sh: dnsmasq hands leases to two busybox udhcpc clients on
//! one bridge; client A, whose MAC is in tests/data/identity/inventory.json, looks up
//! app.example.test and opens TLS without SNI to the answer, then TLS with SNI; client B
//! has a private MAC and talks to mask.icloud.com and to port 853).

mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);
const CAPTURE: &str = "pcaps/dhcp-dns-tls.pcap";
const INVENTORY: &str = "tests/data/identity/inventory.json";
const FEED: &str = "tests/data/identity/feed.ndjson";
const CLIENT_A: &str = "10.78.0.108";
const CLIENT_B: &str = "10.78.0.141";

fn path(rel: &str) -> String {
    repo().join(rel).display().to_string()
}

fn replay(extra: &[&str]) -> Vec<Value> {
    let capture = path(CAPTURE);
    let mut args = vec!["replay", "--quiet"];
    args.extend_from_slice(extra);
    args.push(&capture);
    let out = run(&args, LIMIT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    records(&out)
}

fn flows<'a>(recs: &'a [Value], client: &str, port: u64) -> Vec<&'a Value> {
    let mut v: Vec<&Value> = recs
        .iter()
        .filter(|r| dataset(r) == "nightjar.flow")
        .filter(|r| r["source"]["ip"] == client && r["destination"]["port"] == port)
        .collect();
    v.sort_by_key(|r| r["event"]["start"].as_str().unwrap_or("").to_string());
    v
}

fn stats(recs: &[Value]) -> &Value {
    recs.iter()
        .find(|r| dataset(r) == "nightjar.stats")
        .map(|r| &r["nightjar"]["stats"])
        .expect("stats record")
}

#[test]
fn dhcp_then_tls_shows_the_device_on_its_flows() {
    let inv = path(INVENTORY);
    for workers in ["1", "2"] {
        let recs = replay(&["--inventory", &inv, "--workers", workers]);
        let tls = flows(&recs, CLIENT_A, 443);
        assert_eq!(tls.len(), 2, "two TLS flows from client A");
        for f in &tls {
            assert_eq!(f["device"]["id"], "ipad-janes", "{f}");
            assert_eq!(f["source"]["mac"], "3C-06-30-AA-BB-01");
            let id = &f["nightjar"]["device"]["identity"];
            assert_eq!(id["method"], "dhcp");
            assert_eq!(id["confidence"], "high");
            assert_eq!(
                id["matched_on"],
                serde_json::json!(["ip", "mac", "lease_mac", "wifi_mac"])
            );
            assert!(id.get("private_mac").is_none());
            let dhcp = &f["nightjar"]["device"]["dhcp"];
            assert_eq!(dhcp["hostname"], "Janes-iPad");
            assert_eq!(dhcp["vendor_class"], "Apple-iPad");
            assert_eq!(dhcp["client_id"], "013c0630aabb01");
            assert!(dhcp["parameter_request_list"]
                .as_array()
                .is_some_and(|l| !l.is_empty()));
        }

        // Client B: a private MAC in no inventory; leased, but no device.
        let b = flows(&recs, CLIENT_B, 443);
        assert_eq!(b.len(), 1);
        let f = b[0];
        assert!(f.get("device").is_none(), "{f}");
        assert_eq!(f["source"]["mac"], "6A-1F-22-33-44-55");
        let id = &f["nightjar"]["device"]["identity"];
        assert_eq!(id["private_mac"], true);
        assert_eq!(id["method"], "dhcp");
        assert_eq!(id["confidence"], "none");
        assert_eq!(f["nightjar"]["device"]["dhcp"]["hostname"], "iPhone");
        assert_eq!(f["nightjar"]["flow"]["blind_spot"], "private_relay");
        let dot = flows(&recs, CLIENT_B, 853);
        assert_eq!(dot[0]["nightjar"]["flow"]["blind_spot"], "dot");

        let s = stats(&recs);
        let ident = &s["identity"];
        assert_eq!(ident["dhcp_leases"], 3, "{ident}");
        assert_eq!(ident["dhcp_releases"], 1);
        assert_eq!(ident["dhcp_addresses"], 2);
        assert_eq!(ident["inventory_devices"], 2);
        assert_eq!(ident["flows_by_method"]["dhcp"], 3, "{ident}");
        // Client B and the DHCP server's bridge (also a random local MAC).
        assert_eq!(ident["unknown_devices"], 2);
        assert_eq!(
            s["blind_spots"]["6A-1F-22-33-44-55"],
            serde_json::json!({"dot": 1, "private_relay": 1})
        );
    }
}

#[test]
fn without_inventory_the_lease_still_gives_the_mac_but_no_device() {
    let recs = replay(&[]);
    for f in flows(&recs, CLIENT_A, 443) {
        assert!(f.get("device").is_none());
        let id = &f["nightjar"]["device"]["identity"];
        assert_eq!(id["method"], "dhcp");
        assert_eq!(id["mac"], "3C-06-30-AA-BB-01");
        assert!(
            id.get("private_mac").is_none(),
            "a universal MAC is not private"
        );
    }
    assert_eq!(stats(&recs)["identity"]["flows_by_method"]["none"], 8);
}

#[test]
fn a_feed_line_changes_the_mapping_from_its_ts_on() {
    let (inv, feed) = (path(INVENTORY), path(FEED));
    for workers in ["1", "2"] {
        let recs = replay(&[
            "--inventory",
            &inv,
            "--identity",
            &feed,
            "--workers",
            workers,
        ]);
        let tls = flows(&recs, CLIENT_A, 443);
        // The first flow started before the feed line's ts (07:31:04): still the lease.
        assert!(tls[0]["event"]["start"].as_str().unwrap() < "2026-11-28T07:31:04.000000000Z");
        assert_eq!(tls[0]["device"]["id"], "ipad-janes");
        assert_eq!(tls[0]["nightjar"]["device"]["identity"]["method"], "dhcp");
        assert!(tls[0].get("user").is_none());
        // The second started after it: the feed's device, named by its udid.
        assert!(tls[1]["event"]["start"].as_str().unwrap() > "2026-11-28T07:31:04.000000000Z");
        assert_eq!(tls[1]["device"]["id"], "iphone-vpn-7", "{}", tls[1]);
        let id = &tls[1]["nightjar"]["device"]["identity"];
        assert_eq!(id["method"], "feed");
        assert_eq!(id["confidence"], "high");
        assert_eq!(id["matched_on"], serde_json::json!(["ip", "udid"]));
        assert_eq!(id["feed_source"], "openvpn");
        assert_eq!(id["mac"], "F0-18-98-01-02-03");
        assert_eq!(tls[1]["user"]["name"], "vpn-user@example.test");
        let s = &stats(&recs)["identity"];
        assert_eq!(s["feed_lines"], 2);
        assert_eq!(s["feed_releases"], 1);
    }
}

#[test]
fn a_flow_without_sni_is_named_from_the_earlier_dns_answer() {
    let recs = replay(&[]);
    let tls = flows(&recs, CLIENT_A, 443);
    let first = tls[0];
    assert!(
        first["tls"]["client"].get("server_name").is_none(),
        "{first}"
    );
    assert_eq!(first["destination"]["domain"], "app.example.test");
    assert_eq!(first["nightjar"]["flow"]["domain_source"], "dns");
    assert_eq!(
        first["nightjar"]["dns"]["names"][0]["name"],
        "app.example.test"
    );
    // The second flow has SNI, which wins.
    assert_eq!(tls[1]["destination"]["domain"], "api.example.test");
    assert_eq!(tls[1]["nightjar"]["flow"]["domain_source"], "sni");
}

#[test]
fn static_mappings_from_config_are_the_last_resort() {
    let dir = std::env::temp_dir().join(format!("nightjar-identity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("static.toml");
    std::fs::write(
        &cfg,
        format!(
            "[mdm]\ninventory = {:?}\n[identity]\nstatic = [{{ ip = \"{CLIENT_B}\", device_id = \"lab-phone\" }}, {{ ip = \"{CLIENT_A}\", device_id = \"never-used\" }}]\n",
            path(INVENTORY)
        ),
    )
    .unwrap();
    let recs = replay(&["--config", cfg.to_str().unwrap()]);
    let b = flows(&recs, CLIENT_B, 443)[0];
    assert_eq!(b["device"]["id"], "lab-phone");
    let id = &b["nightjar"]["device"]["identity"];
    assert_eq!(id["method"], "static");
    assert_eq!(id["confidence"], "medium");
    assert_eq!(id["private_mac"], true, "the MAC stays reported as private");
    // Client A's lease and inventory outrank its static mapping.
    assert_eq!(flows(&recs, CLIENT_A, 443)[0]["device"]["id"], "ipad-janes");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_feed_line_is_one_error_naming_the_line() {
    let dir = std::env::temp_dir().join(format!("nightjar-badfeed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let feed = dir.join("feed.ndjson");
    std::fs::write(
        &feed,
        "{\"ts\":1,\"ip\":\"10.0.0.1\",\"source\":\"s\"}\n{\"ts\":2,\"ip\":\"10.0.0.999\",\"source\":\"s\"}\n",
    )
    .unwrap();
    let capture = path(CAPTURE);
    let out = run(
        &[
            "replay",
            "--quiet",
            "--identity",
            feed.to_str().unwrap(),
            &capture,
        ],
        LIMIT,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("feed.ndjson:2: ip \"10.0.0.999\""), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
