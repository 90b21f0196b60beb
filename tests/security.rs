//! The security items of the sensor's control plane that the MDM adapter tests do not
//! cover: the metrics endpoint's default address, secrets only from files (or systemd
//! credentials), and the webhook receiver's answers to bodies that are too large
//! without saying so, cut short, or sent with wrong credentials.

use nightjar::config::Config;
use nightjar::mdm::adapter::webhook::{Receiver, Routes, WebhookOptions};
use nightjar::mdm::adapter::{read_secret, AdapterStats, Secret, StatsSnapshot};
use std::path::Path;
use std::sync::Arc;

#[test]
fn metrics_bind_to_loopback_by_default() {
    let cfg = Config::parse("", "empty.toml").expect("an empty config is valid");
    assert!(
        cfg.metrics_listen.ip().is_loopback(),
        "{}",
        cfg.metrics_listen
    );
}

#[test]
fn secrets_are_only_read_from_files() {
    for (text, key) in [
        (
            "[mdm.webhook]\nlisten = \"127.0.0.1:8443\"\nsecret = \"hunter2\"\n",
            "secret",
        ),
        (
            "[mdm.jamf]\nurl = \"https://jamf.example.com\"\nclient_id = \"c\"\nclient_secret = \"hunter2\"\n",
            "client_secret",
        ),
    ] {
        let e = Config::parse(text, "t.toml").expect_err(text).to_string();
        assert!(e.contains(key), "{e}");
        assert!(!e.contains("hunter2"), "the refused secret is echoed: {e}");
    }
}

#[test]
fn relative_secret_files_come_from_systemd_credentials() {
    let dir = std::env::temp_dir().join(format!("nj-creds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("webhook"), "from-systemd\n").unwrap();
    let abs = dir.join("absolute");
    std::fs::write(&abs, "absolute-file").unwrap();
    // Only this test of this binary touches the variable.
    std::env::set_var("CREDENTIALS_DIRECTORY", &dir);
    let relative = read_secret(Path::new("webhook")).map(|s| s.expose().to_string());
    let absolute = read_secret(&abs).map(|s| s.expose().to_string());
    std::env::remove_var("CREDENTIALS_DIRECTORY");
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(relative.unwrap(), "from-systemd");
    assert_eq!(absolute.unwrap(), "absolute-file");
}

/// Sends `raw` on one connection to a receiver with secret `s3cret` (body limit 256
/// bytes, no rate limit in reach); the response bytes and the counters.
fn exchange(raw: &[u8]) -> (String, StatsSnapshot) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let (tx, _rx) = tokio::sync::mpsc::channel(8);
        let stats = Arc::new(AdapterStats::default());
        let receiver = Arc::new(Receiver::new(
            Secret::new("s3cret".into()),
            WebhookOptions {
                max_body: 256,
                rate_per_sec: 0,
                burst: 100,
            },
            Arc::clone(&stats),
            Routes {
                jamf: Some(tx),
                micromdm: None,
            },
        ));
        let (client, server) = tokio::io::duplex(64 * 1024);
        let conn = tokio::spawn(receiver.serve_connection(server));
        let (mut rd, mut wr) = tokio::io::split(client);
        wr.write_all(raw).await.unwrap();
        wr.shutdown().await.unwrap();
        let mut out = Vec::new();
        rd.read_to_end(&mut out).await.unwrap();
        conn.await.unwrap();
        (
            String::from_utf8_lossy(&out).into_owned(),
            stats.snapshot(0),
        )
    })
}

const HOOK: &str = r#"{"webhook": {"id": 1, "webhookEvent": "MobileDeviceCheckIn"}, "event": {"jssID": 4, "udid": "U4"}}"#;

#[test]
fn webhook_chunked_body_over_the_limit_is_refused() {
    // No Content-Length: the limit applies to the bytes as they arrive.
    let chunk = "x".repeat(200);
    let raw = format!(
        "POST /webhook/jamf HTTP/1.1\r\nAuthorization: Bearer s3cret\r\nTransfer-Encoding: chunked\r\n\r\n\
         c8\r\n{chunk}\r\nc8\r\n{chunk}\r\n0\r\n\r\n"
    );
    let (resp, s) = exchange(raw.as_bytes());
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert_eq!((s.webhooks_too_large, s.webhooks_accepted), (1, 0));
}

#[test]
fn webhook_body_cut_short_is_malformed_not_too_large() {
    let raw = format!(
        "POST /webhook/jamf HTTP/1.1\r\nAuthorization: Bearer s3cret\r\nContent-Length: 200\r\n\r\n{}",
        &HOOK[..40]
    );
    let (_, s) = exchange(raw.as_bytes());
    assert_eq!(
        (
            s.webhooks_malformed,
            s.webhooks_too_large,
            s.webhooks_accepted
        ),
        (1, 0, 0)
    );
}

#[test]
fn webhook_wrong_credentials_are_refused_and_not_echoed() {
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode("jamf:guess-s3cret");
    for auth in [
        "Bearer guess-s3cret".to_string(),
        format!("Basic {basic}"),
        "Bearer s3cret ".to_string() + "x",
        "s3cret".to_string(),
    ] {
        let raw = format!(
            "POST /webhook/jamf HTTP/1.1\r\nAuthorization: {auth}\r\nContent-Length: {}\r\n\r\n{HOOK}",
            HOOK.len()
        );
        let (resp, s) = exchange(raw.as_bytes());
        assert!(resp.starts_with("HTTP/1.1 401"), "{auth}: {resp}");
        assert!(resp.contains("www-authenticate: Basic"), "{resp}");
        assert!(!resp.contains("guess"), "credentials echoed: {resp}");
        assert_eq!((s.webhooks_unauthorized, s.webhooks_accepted), (1, 0));
    }
    // The right secret, same request: accepted.
    let raw = format!(
        "POST /webhook/jamf HTTP/1.1\r\nAuthorization: Bearer s3cret\r\nContent-Length: {}\r\n\r\n{HOOK}",
        HOOK.len()
    );
    let (resp, s) = exchange(raw.as_bytes());
    assert!(resp.starts_with("HTTP/1.1 202"), "{resp}");
    assert_eq!(s.webhooks_accepted, 1);
}
