//! MDM adapters against local HTTP servers on 127.0.0.1 that speak the vendors'
//! documented shapes: Jamf Pro (`/api/oauth/token`, `/api/v2/mobile-devices/detail`
//! paging over `totalCount`/`results`) and Microsoft Graph (Entra ID token endpoint,
//! `managedDevices` with `@odata.nextLink`, `detectedApps`), with token expiry, 429 with
//! `Retry-After`, 5xx, malformed, huge and slow responses; the webhook receiver; and
//! `nightjar mdm sync` end to end.

mod common;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use nightjar::config::Config;
use nightjar::mdm::adapter::jamf::Jamf;
use nightjar::mdm::adapter::run::{run_jamf, Outputs};
use nightjar::mdm::adapter::webhook::{serve, Routes, WebhookOptions};
use nightjar::mdm::adapter::{
    AdapterError, AdapterStats, HttpOptions, InventoryTracker, RetryPolicy, Secret,
};
use nightjar::mdm::{inventory_to_json, parse_inventory, Confidence, EventKind, Inventory};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

// ---------------------------------------------------------------------------
// A tiny scripted HTTP server (its own thread and runtime)
// ---------------------------------------------------------------------------

struct Req {
    method: String,
    /// Path and query, as sent.
    target: String,
    auth: Option<String>,
    body: String,
}

struct Resp {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    delay: Duration,
}

fn json_resp(status: u16, v: &Value) -> Resp {
    Resp {
        status,
        headers: vec![("content-type", "application/json".into())],
        body: v.to_string().into_bytes(),
        delay: Duration::ZERO,
    }
}

type Handler = Arc<dyn Fn(&Req) -> Resp + Send + Sync>;

/// Starts a server on 127.0.0.1:0 answering with `handler`; returns its address.
fn start_server(handler: Handler) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let handler = Arc::clone(&handler);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let handler = Arc::clone(&handler);
                            async move {
                                let method = req.method().to_string();
                                let target = req
                                    .uri()
                                    .path_and_query()
                                    .map(|p| p.to_string())
                                    .unwrap_or_default();
                                let auth = req
                                    .headers()
                                    .get("authorization")
                                    .and_then(|v| v.to_str().ok())
                                    .map(str::to_string);
                                let body = req.into_body().collect().await.unwrap().to_bytes();
                                let r = Req {
                                    method,
                                    target,
                                    auth,
                                    body: String::from_utf8_lossy(&body).into_owned(),
                                };
                                let resp = handler(&r);
                                if !resp.delay.is_zero() {
                                    tokio::time::sleep(resp.delay).await;
                                }
                                let mut out =
                                    hyper::Response::new(Full::new(Bytes::from(resp.body)));
                                *out.status_mut() =
                                    hyper::StatusCode::from_u16(resp.status).unwrap();
                                for (k, v) in resp.headers {
                                    out.headers_mut().insert(k, v.parse().unwrap());
                                }
                                Ok::<_, std::convert::Infallible>(out)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    });
    rx.recv().unwrap()
}

fn form(body: &str) -> HashMap<String, String> {
    body.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            (
                k.to_string(),
                v.replace("%3A", ":")
                    .replace("%2F", "/")
                    .replace("%2E", "."),
            )
        })
        .collect()
}

fn query(target: &str, key: &str) -> Option<String> {
    let q = target.split_once('?')?.1;
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_string())
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nj-mdm-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Fast retries for library-level tests (the binary uses the defaults).
fn fast() -> HttpOptions {
    HttpOptions {
        timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        max_body: 1 << 20,
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
            max_retry_after: Duration::from_secs(2),
        },
    }
}

// ---------------------------------------------------------------------------
// A Jamf Pro server
// ---------------------------------------------------------------------------

fn jamf_device(n: u32, apps: &[(&str, &str, &str)]) -> Value {
    json!({
        "mobileDeviceId": n.to_string(),
        "deviceType": "iOS",
        "general": {"udid": format!("00008110-00000000000000{n:02}"), "displayName": format!("Phone {n}"),
                    "osVersion": "17.4.1", "supervised": n % 2 == 1, "managed": true,
                    "deviceOwnershipType": if n % 2 == 1 { "Institutional" } else { "UserEnrollment" },
                    "lastInventoryUpdateDate": "2024-05-01T10:00:00Z"},
        "hardware": {"serialNumber": format!("F2LXK0AAPL{n:02}"), "wifiMacAddress": format!("a4:83:e7:00:00:{n:02x}"),
                     "model": "iPhone 15", "modelIdentifier": "iPhone15,4", "capacityMb": 128000},
        "applications": apps.iter().map(|(id, v, status)| json!({
            "identifier": id, "name": id, "version": "100", "shortVersion": v,
            "managementStatus": status, "validationStatus": true, "bundleSize": "1024", "dynamicSize": "0"
        })).collect::<Vec<_>>()
    })
}

struct JamfState {
    devices: Vec<Value>,
    tokens_issued: u32,
    /// Requests seen, in order: "token" or the detail query's page.
    log: Vec<String>,
    /// Behaviours still to play, keyed by page: "401" (token expired), "429", "500", "bad", "huge", "slow".
    script: HashMap<String, Vec<&'static str>>,
}

fn jamf_server(state: Arc<Mutex<JamfState>>) -> SocketAddr {
    start_server(Arc::new(move |r: &Req| {
        let mut s = state.lock().unwrap();
        if r.target == "/api/oauth/token" {
            let f = form(&r.body);
            let ok = r.method == "POST"
                && f.get("grant_type").map(String::as_str) == Some("client_credentials")
                && f.get("client_id").map(String::as_str) == Some("nj-client")
                && f.get("client_secret").map(String::as_str) == Some("jamf-secret");
            if !ok {
                return json_resp(401, &json!({"error": "invalid_client"}));
            }
            s.tokens_issued += 1;
            s.log.push("token".into());
            let t = s.tokens_issued;
            return json_resp(
                200,
                &json!({"access_token": format!("jamf-token-{t}"), "scope": "api-role:1",
                                          "token_type": "Bearer", "expires_in": 1199}),
            );
        }
        if !r.target.starts_with("/api/v2/mobile-devices/detail?") {
            return json_resp(404, &json!({"httpStatus": 404}));
        }
        assert_eq!(r.target.matches("section=").count(), 3, "{}", r.target);
        let want = format!("Bearer jamf-token-{}", s.tokens_issued);
        if r.auth.as_deref() != Some(&want) {
            return json_resp(401, &json!({"httpStatus": 401, "errors": []}));
        }
        let page: usize = query(&r.target, "page").unwrap().parse().unwrap();
        // Like a server with a maximum page size: at most two devices per page.
        let size: usize = query(&r.target, "page-size")
            .unwrap()
            .parse::<usize>()
            .unwrap()
            .min(2);
        let key = match query(&r.target, "filter") {
            Some(f) => format!("filter {f}"),
            None => format!("page {page}"),
        };
        s.log.push(key.clone());
        if let Some(step) = s
            .script
            .get_mut(&key)
            .and_then(|v| (!v.is_empty()).then(|| v.remove(0)))
        {
            match step {
                "401" => {
                    // The token expired: the client must fetch a new one.
                    s.tokens_issued += 1;
                    return json_resp(401, &json!({"httpStatus": 401}));
                }
                "429" => {
                    let mut r = json_resp(429, &json!({"httpStatus": 429}));
                    r.headers.push(("retry-after", "1".into()));
                    return r;
                }
                "500" => return json_resp(500, &json!({"httpStatus": 500})),
                "bad" => {
                    return Resp {
                        status: 200,
                        headers: vec![],
                        body: b"{\"totalCount\": 5, \"results\": [".to_vec(),
                        delay: Duration::ZERO,
                    }
                }
                "huge" => {
                    return Resp {
                        status: 200,
                        headers: vec![],
                        body: vec![b' '; 2 << 20],
                        delay: Duration::ZERO,
                    }
                }
                "slow" => {
                    let mut r = json_resp(200, &json!({"totalCount": 0, "results": []}));
                    r.delay = Duration::from_secs(3);
                    return r;
                }
                other => panic!("unknown step {other}"),
            }
        }
        let selected: Vec<Value> = match query(&r.target, "filter") {
            Some(f) => {
                let id = f.trim_start_matches("mobileDeviceId%3D%3D").to_string();
                s.devices
                    .iter()
                    .filter(|d| d["mobileDeviceId"] == json!(id))
                    .cloned()
                    .collect()
            }
            None => s.devices.clone(),
        };
        let results: Vec<Value> = selected
            .iter()
            .skip(page * size)
            .take(size)
            .cloned()
            .collect();
        json_resp(
            200,
            &json!({"totalCount": selected.len(), "results": results}),
        )
    }))
}

fn five_devices() -> Vec<Value> {
    (1..=5)
        .map(|n| {
            jamf_device(
                n,
                &[
                    ("com.tinyspeck.chatlyio", "24.05.10", "Managed"),
                    ("net.whatsapp.WhatsApp", "24.9.78", "Unmanaged"),
                ],
            )
        })
        .collect()
}

fn jamf_state(script: &[(&str, &[&'static str])]) -> Arc<Mutex<JamfState>> {
    Arc::new(Mutex::new(JamfState {
        devices: five_devices(),
        tokens_issued: 0,
        log: Vec::new(),
        script: script
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect(),
    }))
}

fn write_secret(dir: &Path, name: &str, value: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("{value}\n")).unwrap();
    p
}

fn jamf_config(dir: &Path, addr: SocketAddr) -> Config {
    let secret = write_secret(dir, "jamf-secret", "jamf-secret");
    let text = format!(
        "[mdm.jamf]\nurl = \"http://{addr}\"\nclient_id = \"nj-client\"\nclient_secret_file = \"{}\"\n",
        secret.display()
    );
    std::fs::write(dir.join("nightjar.toml"), &text).unwrap();
    Config::parse(&text, "t").unwrap()
}

fn expected_jamf_inventory() -> Inventory {
    let devices: Vec<Value> = (1..=5u32)
        .map(|n| {
            json!({
                "id": format!("00008110-00000000000000{n:02}"),
                "udid": format!("00008110-00000000000000{n:02}"),
                "serial": format!("F2LXK0AAPL{n:02}"),
                "mdm_ids": {"jamf": n.to_string()},
                "wifi_mac": format!("a4:83:e7:00:00:{n:02x}"),
                "model": "iPhone15,4",
                "os_version": "17.4.1",
                "supervised": n % 2 == 1,
                "ownership": if n % 2 == 1 { "corporate" } else { "personal" },
                "apps": [
                    {"bundle_id": "com.tinyspeck.chatlyio", "version": "24.05.10", "managed": true},
                    {"bundle_id": "net.whatsapp.WhatsApp", "version": "24.9.78", "managed": false}
                ]
            })
        })
        .collect();
    parse_inventory(&json!({"devices": devices}).to_string(), "expected").unwrap()
}

// ---------------------------------------------------------------------------
// Jamf
// ---------------------------------------------------------------------------

#[test]
fn mdm_sync_jamf_through_paging_token_refresh_and_429() {
    let dir = temp_dir("sync-jamf");
    let state = jamf_state(&[("page 1", &["401"]), ("page 2", &["429"])]);
    let addr = jamf_server(Arc::clone(&state));
    jamf_config(&dir, addr);
    let out = dir.join("inventory.json");
    let cfg = dir.join("nightjar.toml");
    let o = common::run(
        &[
            "mdm",
            "sync",
            "--config",
            cfg.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("nightjar: mdm sync: 5 devices, 10 apps"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("jamf-secret") && !stderr.contains("jamf-token"),
        "{stderr}"
    );
    assert!(stderr.contains("1 throttled"), "{stderr}");
    let log = state.lock().unwrap().log.clone();
    assert_eq!(
        log,
        ["token", "page 0", "page 1", "token", "page 1", "page 2", "page 2"]
    );
    let got = std::fs::read_to_string(&out).unwrap();
    assert_eq!(got, inventory_to_json(&expected_jamf_inventory()));
    // The output reads back through the --inventory loader.
    nightjar::mdm::load_inventory(&out).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn jamf_pages_refreshes_a_token_mid_sync_and_honors_429() {
    let dir = temp_dir("jamf-lib");
    let state = jamf_state(&[("page 1", &["401"]), ("page 2", &["429"])]);
    let addr = jamf_server(Arc::clone(&state));
    let cfg = jamf_config(&dir, addr);
    let stats = Arc::new(AdapterStats::default());
    let jamf = Jamf::new(cfg.mdm.jamf.as_ref().unwrap(), fast(), Arc::clone(&stats))
        .unwrap()
        .with_page_size(2);
    let inv = runtime().block_on(jamf.pull()).unwrap();
    assert_eq!(
        inventory_to_json(&inv),
        inventory_to_json(&expected_jamf_inventory())
    );
    let log = state.lock().unwrap().log.clone();
    assert_eq!(
        log,
        ["token", "page 0", "page 1", "token", "page 1", "page 2", "page 2"],
        "three pages of two, a new token after the 401, page 2 again after the 429"
    );
    let s = stats.snapshot(0);
    assert_eq!(
        (s.token_fetches, s.token_rejected, s.throttled, s.retries),
        (2, 1, 1, 1)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_responses_keep_the_last_good_inventory() {
    let dir = temp_dir("jamf-bad");
    let state = jamf_state(&[(
        "page 0",
        &["500", "500", "500", "bad", "huge", "slow", "slow", "slow"],
    )]);
    let addr = jamf_server(Arc::clone(&state));
    let cfg = jamf_config(&dir, addr);
    let stats = Arc::new(AdapterStats::default());
    let mut opts = fast();
    opts.timeout = Duration::from_millis(500);
    opts.retry.max_attempts = 3;
    let jamf = Jamf::new(cfg.mdm.jamf.as_ref().unwrap(), opts, Arc::clone(&stats)).unwrap();
    let rt = runtime();
    let state_dir = dir.join("state");
    std::fs::create_dir_all(&state_dir).unwrap();
    let mut tracker = InventoryTracker::open("jamf", Some(&state_dir), Arc::clone(&stats));
    tracker.apply(expected_jamf_inventory(), 1);
    let good = tracker.current().fingerprint();

    let mut errors = Vec::new();
    for _ in 0..4 {
        let e = rt.block_on(jamf.pull()).unwrap_err();
        tracker.fail(&e, 2);
        errors.push(e);
    }
    // 5xx, retried to the bound.
    assert!(
        matches!(errors[0], AdapterError::Status { status: 500, .. }),
        "{}",
        errors[0]
    );
    assert!(
        errors[0].to_string().starts_with("jamf: GET http://"),
        "{}",
        errors[0]
    );
    // Malformed JSON.
    assert!(
        matches!(errors[1], AdapterError::Malformed { .. }),
        "{}",
        errors[1]
    );
    // Larger than the bound.
    assert!(
        errors[2]
            .to_string()
            .contains("response larger than 1048576 bytes"),
        "{}",
        errors[2]
    );
    // Slow: the timeout fires (and the retries too).
    assert!(errors[3].to_string().contains("timed out"), "{}", errors[3]);
    for e in &errors {
        assert!(!e.to_string().contains('\n'));
        assert!(!e.to_string().contains("jamf-secret"));
    }
    assert_eq!(
        tracker.current().fingerprint(),
        good,
        "the last good inventory stays"
    );
    let s = stats.snapshot(3);
    assert_eq!(s.pulls_failed, 4);
    assert_eq!(s.server_errors, 3);
    assert_eq!(s.bad_responses, 2);
    assert!(s.transport_errors >= 1);
    assert!(s.last_error.unwrap().contains("timed out"));
    assert_eq!(s.inventory_age_ns, Some(2));
    // Restart: the persisted inventory is back.
    let t2 = InventoryTracker::open("jamf", Some(&state_dir), Arc::new(AdapterStats::default()));
    assert_eq!(t2.current().fingerprint(), good);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn restart_with_same_inventory_emits_nothing_and_a_removed_app_is_derived() {
    let dir = temp_dir("jamf-restart");
    let state = jamf_state(&[]);
    let addr = jamf_server(Arc::clone(&state));
    let cfg = jamf_config(&dir, addr);
    let state_dir = dir.join("state");
    std::fs::create_dir_all(&state_dir).unwrap();
    let rt = runtime();
    let pull_and_apply = |now: u64| {
        let stats = Arc::new(AdapterStats::default());
        let jamf = Jamf::new(cfg.mdm.jamf.as_ref().unwrap(), fast(), Arc::clone(&stats)).unwrap();
        // A new tracker each time: a restarted daemon.
        let mut tracker = InventoryTracker::open("jamf", Some(&state_dir), stats);
        let inv = rt.block_on(jamf.pull()).unwrap();
        tracker.apply(inv, now)
    };
    assert!(pull_and_apply(1).is_empty(), "first pull: baseline");
    assert!(pull_and_apply(2).is_empty(), "restart, same inventory");
    state.lock().unwrap().devices[2] =
        jamf_device(3, &[("com.tinyspeck.chatlyio", "24.05.10", "Managed")]);
    let ev = pull_and_apply(3);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0].kind, EventKind::AppRemoved);
    assert_eq!(ev[0].bundle_id.as_deref(), Some("net.whatsapp.WhatsApp"));
    assert_eq!(ev[0].device_id, "00008110-0000000000000003");
    assert_eq!(ev[0].confidence, Confidence::Derived);
    assert!(
        pull_and_apply(4).is_empty(),
        "and not again after another restart"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn jamf_webhook_triggers_a_targeted_repull() {
    let dir = temp_dir("jamf-hook");
    let state = jamf_state(&[]);
    let addr = jamf_server(Arc::clone(&state));
    let cfg = jamf_config(&dir, addr);
    let rt = runtime();
    rt.block_on(async {
        let stats = Arc::new(AdapterStats::default());
        let jamf = Jamf::new(cfg.mdm.jamf.as_ref().unwrap(), fast(), Arc::clone(&stats)).unwrap();
        let tracker = InventoryTracker::open("jamf", None, Arc::clone(&stats));
        let (hook_tx, hook_rx) = tokio::sync::mpsc::channel(8);
        let (inv_tx, mut inv_rx) = tokio::sync::watch::channel(Arc::new(Inventory::default()));
        let (ev_tx, mut ev_rx) = tokio::sync::mpsc::channel(64);
        let hook_stats = Arc::new(AdapterStats::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hook_addr = listener.local_addr().unwrap();
        tokio::spawn(serve(
            listener,
            Secret::new("hook-secret".into()),
            WebhookOptions::default(),
            Arc::clone(&hook_stats),
            Routes { jamf: Some(hook_tx), micromdm: None },
        ));
        tokio::spawn(run_jamf(
            jamf,
            tracker,
            Duration::from_secs(3600),
            hook_rx,
            Outputs { inventory: inv_tx, events: ev_tx },
        ));
        // Wait for the first full pull.
        loop {
            inv_rx.changed().await.unwrap();
            if inv_rx.borrow().devices().len() == 5 {
                break;
            }
        }
        // Device 4 loses an app; Jamf says its inventory completed.
        state.lock().unwrap().devices[3] = jamf_device(4, &[("net.whatsapp.WhatsApp", "24.9.78", "Unmanaged")]);
        let body = json!({"webhook": {"id": 1, "name": "nightjar", "webhookEvent": "MobileDeviceInventoryCompleted",
                                      "eventTimestamp": 1_714_550_400_000u64},
                          "event": {"jssID": 4, "udid": "00008110-0000000000000004", "serialNumber": "F2LXK0AAPL04",
                                    "deviceName": "Phone 4", "model": "iPhone 15", "osVersion": "17.4.1"}});
        let client = reqwest::Client::new();
        let url = format!("http://{hook_addr}/webhook/jamf");
        let r = client.post(&url).body(body.to_string()).send().await.unwrap();
        assert_eq!(r.status(), 401);
        let r = client.post(&url).bearer_auth("hook-secret").body(body.to_string()).send().await.unwrap();
        assert_eq!(r.status(), 202);
        let reported = ev_rx.recv().await.unwrap();
        assert_eq!((reported.kind, reported.confidence), (EventKind::InventoryUpdated, Confidence::Reported));
        let derived = ev_rx.recv().await.unwrap();
        assert_eq!((derived.kind, derived.confidence), (EventKind::AppRemoved, Confidence::Derived));
        assert_eq!(derived.bundle_id.as_deref(), Some("com.tinyspeck.chatlyio"));
        assert_eq!(derived.device_id, "00008110-0000000000000004");
        let log = state.lock().unwrap().log.clone();
        assert_eq!(log.iter().filter(|l| l.starts_with("filter")).collect::<Vec<_>>(), ["filter mobileDeviceId%3D%3D4"]);
        assert_eq!(hook_stats.snapshot(0).webhooks_unauthorized, 1);
        assert_eq!(stats.snapshot(0).device_pulls_ok, 1);
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------
// Webhook receiver bounds
// ---------------------------------------------------------------------------

#[test]
fn webhook_receiver_refuses_what_it_must() {
    let rt = runtime();
    rt.block_on(async {
        let stats = Arc::new(AdapterStats::default());
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let opts = WebhookOptions { max_body: 4096, rate_per_sec: 0, burst: 6, ..WebhookOptions::default() };
        tokio::spawn(serve(listener, Secret::new("s".into()), opts, Arc::clone(&stats),
                           Routes { jamf: None, micromdm: Some(tx) }));
        let client = reqwest::Client::new();
        let url = format!("http://{addr}/webhook/micromdm");
        let post = |body: Vec<u8>, user: Option<&str>| {
            let mut b = client.post(&url).body(body);
            if let Some(u) = user {
                b = b.basic_auth(u, Some("s"));
            }
            async move { b.send().await.unwrap().status().as_u16() }
        };
        let info = nightjar::mdm::adapter::micromdm::envelope(
            "mdm.Connect",
            "U1",
            "<?xml version=\"1.0\"?><plist version=\"1.0\"><dict><key>QueryResponses</key><dict><key>SerialNumber</key><string>S1</string></dict><key>Status</key><string>Acknowledged</string></dict></plist>",
        );
        assert_eq!(client.post(format!("http://{addr}/webhook/jamf")).send().await.unwrap().status(), 404);
        assert_eq!(post(info.clone().into_bytes(), None).await, 401);
        assert_eq!(post(vec![b'{'; 5000], Some("micromdm")).await, 413);
        assert_eq!(post(b"{\"topic\": 5}".to_vec(), Some("micromdm")).await, 400);
        assert_eq!(post(b"{\"topic\": \"mdm.Authenticate\"}".to_vec(), Some("micromdm")).await, 200);
        assert_eq!(post(info.clone().into_bytes(), Some("micromdm")).await, 202);
        // The queue holds one: the next is refused until it is drained.
        assert_eq!(post(info.clone().into_bytes(), Some("micromdm")).await, 503);
        assert!(rx.recv().await.is_some());
        // Burst of 6 spent (the 404 is not counted): rate limited.
        assert_eq!(post(info.clone().into_bytes(), Some("micromdm")).await, 429);
        let s = stats.snapshot(0);
        assert_eq!(
            (s.webhooks_unauthorized, s.webhooks_too_large, s.webhooks_malformed, s.webhooks_ignored,
             s.webhooks_accepted, s.webhooks_queue_full, s.webhooks_rate_limited),
            (1, 1, 1, 1, 1, 1, 1)
        );
    });
}

// ---------------------------------------------------------------------------
// Intune (Graph)
// ---------------------------------------------------------------------------

struct GraphState {
    tokens_issued: u32,
    token_uses: HashMap<String, u32>,
    log: Vec<String>,
    throttled_once: bool,
}

fn graph_server(state: Arc<Mutex<GraphState>>, foreign_next_link: bool) -> SocketAddr {
    let addr_cell: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
    let cell = Arc::clone(&addr_cell);
    let addr = start_server(Arc::new(move |r: &Req| {
        let me = cell.lock().unwrap().unwrap();
        let mut s = state.lock().unwrap();
        if r.target == "/tenant-1/oauth2/v2.0/token" {
            let f = form(&r.body);
            assert_eq!(
                f.get("scope").cloned(),
                Some(format!("http://{me}/.default"))
            );
            assert_eq!(
                f.get("client_secret").map(String::as_str),
                Some("graph-secret")
            );
            s.tokens_issued += 1;
            s.log.push("token".into());
            // Shorter than the refresh margin: the client must fetch a new one per request.
            return json_resp(
                200,
                &json!({"token_type": "Bearer", "expires_in": 10, "ext_expires_in": 10,
                                          "access_token": format!("graph-token-{}", s.tokens_issued)}),
            );
        }
        let Some(tok) = r.auth.as_deref().and_then(|a| a.strip_prefix("Bearer ")) else {
            return json_resp(
                401,
                &json!({"error": {"code": "InvalidAuthenticationToken"}}),
            );
        };
        *s.token_uses.entry(tok.to_string()).or_default() += 1;
        let path = r.target.clone();
        s.log.push(path.split('?').next().unwrap().to_string());
        let base = format!("http://{me}/v1.0/deviceManagement/managedDevices");
        let dev = |id: &str, serial: &str, udid: &str, os: &str, mac: &str| {
            json!({
            "id": id, "deviceName": "d", "operatingSystem": os, "osVersion": "17.5", "serialNumber": serial,
            "udid": udid, "wiFiMacAddress": mac, "model": "iPhone 14", "isSupervised": true,
            "managedDeviceOwnerType": "company", "userPrincipalName": "ana@example.com",
            "complianceState": "compliant", "lastSyncDateTime": "2024-05-01T10:00:00Z"})
        };
        if path.starts_with("/v1.0/deviceManagement/managedDevices?$filter=operatingSystem%20eq%20%27iOS%27&$select=") {
            let next = if foreign_next_link {
                "https://graph.example.net/v1.0/deviceManagement/managedDevices?$skiptoken=x".to_string()
            } else {
                format!("{base}?$filter=operatingSystem%20eq%20%27iOS%27&$skiptoken=page2")
            };
            return json_resp(200, &json!({"@odata.context": "x", "@odata.count": 2,
                "value": [dev("11111111-aaaa-4bbb-8ccc-000000000001", "SER1", "UDID-1", "iOS", "6C4A8513A6A1")],
                "@odata.nextLink": next}));
        }
        if path.contains("$skiptoken=page2") {
            return json_resp(
                200,
                &json!({"value": [dev("11111111-aaaa-4bbb-8ccc-000000000002", "SER2", "", "iOS", "")]}),
            );
        }
        if path.starts_with(
            "/v1.0/deviceManagement/managedDevices?$filter=operatingSystem%20eq%20%27iPadOS%27",
        ) {
            return json_resp(
                200,
                &json!({"value": [dev("11111111-aaaa-4bbb-8ccc-000000000003", "SER3", "UDID-3", "iPadOS", "not-a-mac")]}),
            );
        }
        if path.ends_with("/detectedApps") {
            if !s.throttled_once {
                s.throttled_once = true;
                let mut r = json_resp(429, &json!({"error": {"code": "TooManyRequests"}}));
                r.headers.push(("retry-after", "1".into()));
                return r;
            }
            let n = path.split('/').nth(4).unwrap().chars().last().unwrap();
            return json_resp(
                200,
                &json!({"value": [
                    {"id": "a1", "displayName": "com.microsoft.Office.Outlook", "version": format!("4.2{n}"), "sizeInByte": 1, "deviceCount": 3, "publisher": "Microsoft", "platform": "ios"},
                    {"id": "a2", "displayName": "Calculator", "version": "1", "platform": "ios"}
                ]}),
            );
        }
        json_resp(404, &json!({"error": {"code": "ResourceNotFound"}}))
    }));
    *addr_cell.lock().unwrap() = Some(addr);
    addr
}

fn graph_config(dir: &Path, addr: SocketAddr) -> PathBuf {
    let secret = write_secret(dir, "graph-secret", "graph-secret");
    let text = format!(
        "[mdm.intune]\ntenant_id = \"tenant-1\"\nclient_id = \"nj\"\nclient_secret_file = \"{}\"\nlogin_url = \"http://{addr}\"\ngraph_url = \"http://{addr}\"\n",
        secret.display()
    );
    let p = dir.join("nightjar.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn mdm_sync_intune_through_next_links_short_tokens_and_429() {
    let dir = temp_dir("sync-intune");
    let state = Arc::new(Mutex::new(GraphState {
        tokens_issued: 0,
        token_uses: HashMap::new(),
        log: Vec::new(),
        throttled_once: false,
    }));
    let addr = graph_server(Arc::clone(&state), false);
    let cfg = graph_config(&dir, addr);
    let out = dir.join("inventory.json");
    let o = common::run(
        &[
            "mdm",
            "sync",
            "--config",
            cfg.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let expected = parse_inventory(
        &json!({"devices": [
            {"id": "SER2", "serial": "SER2", "mdm_ids": {"intune": "11111111-aaaa-4bbb-8ccc-000000000002"},
             "model": "iPhone 14", "os_version": "17.5", "supervised": true, "ownership": "corporate",
             "user": "ana@example.com",
             "apps": [{"bundle_id": "com.microsoft.Office.Outlook", "version": "4.22"}]},
            {"id": "UDID-1", "udid": "UDID-1", "serial": "SER1", "mdm_ids": {"intune": "11111111-aaaa-4bbb-8ccc-000000000001"},
             "wifi_mac": "6c:4a:85:13:a6:a1", "model": "iPhone 14", "os_version": "17.5", "supervised": true,
             "ownership": "corporate", "user": "ana@example.com",
             "apps": [{"bundle_id": "com.microsoft.Office.Outlook", "version": "4.21"}]},
            {"id": "UDID-3", "udid": "UDID-3", "serial": "SER3", "mdm_ids": {"intune": "11111111-aaaa-4bbb-8ccc-000000000003"},
             "model": "iPhone 14", "os_version": "17.5", "supervised": true, "ownership": "corporate",
             "user": "ana@example.com",
             "apps": [{"bundle_id": "com.microsoft.Office.Outlook", "version": "4.23"}]}
        ]})
        .to_string(),
        "expected",
    )
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        inventory_to_json(&expected)
    );
    assert!(stderr.contains("1 throttled"), "{stderr}");
    assert!(stderr.contains("3 apps skipped"), "{stderr}");
    let s = state.lock().unwrap();
    // Tokens live 10 s, less than the refresh margin: a new one for every call (the
    // retry after the 429 repeats its call's token).
    assert_eq!(s.tokens_issued, 6, "{:?}", s.log);
    assert_eq!(s.token_uses.values().sum::<u32>(), 7);
    assert_eq!(
        s.log
            .iter()
            .filter(|l| l.ends_with("/detectedApps"))
            .count(),
        4,
        "three devices, one 429: {:?}",
        s.log
    );
    drop(s);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn intune_refuses_a_next_link_to_another_host() {
    let dir = temp_dir("intune-foreign");
    let state = Arc::new(Mutex::new(GraphState {
        tokens_issued: 0,
        token_uses: HashMap::new(),
        log: Vec::new(),
        throttled_once: true,
    }));
    let addr = graph_server(Arc::clone(&state), true);
    let cfg = graph_config(&dir, addr);
    let o = common::run(
        &["mdm", "sync", "--config", cfg.to_str().unwrap()],
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert_eq!(o.stdout.len(), 0);
    assert!(
        stderr.contains("mdm sync failed: intune:")
            && stderr.contains("@odata.nextLink points outside graph_url"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------
// replay --events / --catalog
// ---------------------------------------------------------------------------

#[test]
fn replay_loads_events_and_catalog_and_names_bad_lines() {
    let repo = common::repo();
    let pcap = std::fs::read_dir(repo.join("pcaps"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
        .unwrap();
    let events = repo.join("config/events.example.ndjson");
    let catalog = repo.join("config/catalog");
    let o = common::run(
        &[
            "replay",
            "--quiet",
            pcap.to_str().unwrap(),
            "--events",
            events.to_str().unwrap(),
            "--catalog",
            catalog.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let recs = common::records(&o);
    let stats = recs
        .iter()
        .find(|r| common::dataset(r) == "nightjar.stats")
        .unwrap();
    let n_events = nightjar::mdm::load_events(&events).unwrap().len();
    let n_apps = nightjar::mdm::load_catalog(&catalog).unwrap().apps().len();
    assert!(n_events > 0 && n_apps > 0);
    assert_eq!(stats["nightjar"]["stats"]["mdm"]["events"], json!(n_events));
    assert_eq!(
        stats["nightjar"]["stats"]["mdm"]["catalog_apps"],
        json!(n_apps)
    );

    let dir = temp_dir("replay-bad");
    let bad = dir.join("events.ndjson");
    let good_line = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    std::fs::write(
        &bad,
        format!(
            "{good_line}\n{}\n",
            good_line.replace("\"kind\":\"", "\"kind\":\"x")
        ),
    )
    .unwrap();
    let o = common::run(
        &[
            "replay",
            "--quiet",
            pcap.to_str().unwrap(),
            "--events",
            bad.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert_eq!(
        o.stdout.len(),
        0,
        "nothing written before the inputs validate"
    );
    assert!(
        stderr.starts_with(&format!(
            "nightjar: {}:2: unknown event kind",
            bad.display()
        )),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let bad_cat = dir.join("cat.json");
    std::fs::write(
        &bad_cat,
        "{\"apps\": [{\"bundle_id\": \"a.b\",\n \"domains\": [\"1.2.3.4\"]}]}",
    )
    .unwrap();
    let o = common::run(
        &[
            "replay",
            "--quiet",
            pcap.to_str().unwrap(),
            "--catalog",
            bad_cat.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.starts_with(&format!("nightjar: {}", bad_cat.display())),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
