//! The security items of the sensor's control plane that the MDM adapter tests do not
//! cover: the metrics endpoint's default address, secrets only from files (or systemd
//! credentials), and the webhook receiver's answers to bodies that are too large
//! without saying so, cut short, or sent with wrong credentials or signatures.

use nightjar::config::Config;
use nightjar::mdm::adapter::webhook::{Receiver, Routes, WebhookAuth, WebhookOptions};
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
    exchange_with(raw, WebhookAuth::Secret)
}

/// [`exchange`] with the receiver accepting the credentials `auth` says.
fn exchange_with(raw: &[u8], auth: WebhookAuth) -> (String, StatsSnapshot) {
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
                auth,
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

/// `X-Nightjar-Signature` for `body` keyed with `secret`.
fn signature(secret: &str, body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, body.as_bytes());
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// A Jamf webhook request with `body`, signed with `secret`.
fn signed_request(secret: &str, body: &str) -> String {
    request(
        &format!("X-Nightjar-Signature: {}\r\n", signature(secret, body)),
        body,
    )
}

/// A Jamf webhook request carrying `headers` (each ending in CRLF) and `body`.
fn request(headers: &str, body: &str) -> String {
    format!(
        "POST /webhook/jamf HTTP/1.1\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn webhook_hmac_signature_is_accepted_and_forgeries_refused() {
    let good = signature("s3cret", HOOK);
    let (resp, s) = exchange_with(
        request(&format!("X-Nightjar-Signature: {good}\r\n"), HOOK).as_bytes(),
        WebhookAuth::Hmac,
    );
    assert!(resp.starts_with("HTTP/1.1 202"), "{resp}");
    assert_eq!((s.webhooks_accepted, s.webhooks_unauthorized), (1, 0));
    let upper = format!("sha256={}", good["sha256=".len()..].to_uppercase());
    let (resp, _) = exchange_with(
        request(&format!("X-Nightjar-Signature: {upper}\r\n"), HOOK).as_bytes(),
        WebhookAuth::Hmac,
    );
    assert!(resp.starts_with("HTTP/1.1 202"), "{resp}");
    let altered = HOOK.replace("U4", "U5");
    for raw in [
        // The secret itself is not a credential when signatures are required.
        request("Authorization: Bearer s3cret\r\n", HOOK),
        request("", HOOK),
        // Keyed with another secret, or of another body.
        signed_request("guess", HOOK),
        request(&format!("X-Nightjar-Signature: {good}\r\n"), &altered),
        // Not a well-formed signature.
        request("X-Nightjar-Signature: sha256=\r\n", HOOK),
        request(
            &format!("X-Nightjar-Signature: {}\r\n", &good["sha256=".len()..]),
            HOOK,
        ),
    ] {
        let (resp, s) = exchange_with(raw.as_bytes(), WebhookAuth::Hmac);
        assert!(resp.starts_with("HTTP/1.1 401"), "{raw}: {resp}");
        assert_eq!(
            (s.webhooks_unauthorized, s.webhooks_accepted),
            (1, 0),
            "{raw}"
        );
    }
}

#[test]
fn webhook_signature_is_verified_before_the_body_is_parsed() {
    let body = "{not json";
    let forged = signed_request("guess", body);
    let (resp, s) = exchange_with(forged.as_bytes(), WebhookAuth::Hmac);
    assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
    assert_eq!((s.webhooks_unauthorized, s.webhooks_malformed), (1, 0));
    let signed = signed_request("s3cret", body);
    let (resp, s) = exchange_with(signed.as_bytes(), WebhookAuth::Hmac);
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert_eq!((s.webhooks_unauthorized, s.webhooks_malformed), (0, 1));
    // A body over the limit cannot be verified: refused, and counted as unauthorized.
    let big = "x".repeat(300);
    let raw = signed_request("s3cret", &big);
    let (resp, s) = exchange_with(raw.as_bytes(), WebhookAuth::Hmac);
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert_eq!((s.webhooks_unauthorized, s.webhooks_too_large), (1, 0));
}

#[test]
fn webhook_auth_modes() {
    let bearer = request("Authorization: Bearer s3cret\r\n", HOOK);
    let signed = signed_request("s3cret", HOOK);
    let neither = request("Authorization: Bearer guess\r\n", HOOK);
    for (auth, raw, want) in [
        (WebhookAuth::Either, &bearer, "202"),
        (WebhookAuth::Either, &signed, "202"),
        (WebhookAuth::Either, &neither, "401"),
        (WebhookAuth::Secret, &bearer, "202"),
        (WebhookAuth::Secret, &signed, "401"),
        (WebhookAuth::Hmac, &signed, "202"),
    ] {
        let (resp, _) = exchange_with(raw.as_bytes(), auth);
        assert!(
            resp.starts_with(&format!("HTTP/1.1 {want}")),
            "{auth:?} {raw}: {resp}"
        );
    }
    let cfg = |auth: &str| {
        Config::parse(
            &format!("[mdm.webhook]\nlisten = \"127.0.0.1:9465\"\nsecret_file = \"/f\"\n{auth}"),
            "t.toml",
        )
        .map(|c| c.mdm.webhook.unwrap().auth)
    };
    assert_eq!(cfg("").unwrap(), WebhookAuth::Secret);
    assert_eq!(cfg("auth = \"hmac\"").unwrap(), WebhookAuth::Hmac);
    assert_eq!(cfg("auth = \"either\"").unwrap(), WebhookAuth::Either);
    assert!(cfg("auth = \"sha1\"").is_err());
}
