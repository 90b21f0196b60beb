//! The webhook receiver: an HTTP/1.1 listener for Jamf Pro (`POST /webhook/jamf`) and
//! MicroMDM/NanoMDM (`POST /webhook/micromdm`) webhooks.
//!
//! Each request is checked in this order, the cheapest first: method and path, the
//! rate limit (a token bucket shared by all senders: 429), the credentials (401), the
//! size (413), the body (400), the queue (503). Credentials ([`WebhookAuth`]) are the
//! shared secret as `Authorization: Bearer <secret>`, or as the password of
//! `Authorization: Basic` (what Jamf Pro's basic-auth webhooks and a MicroMDM/NanoMDM
//! webhook URL with `user:secret@` send), compared in constant time; or a signature,
//! `X-Nightjar-Signature: sha256=<hex>`, the HMAC-SHA256 of the body keyed with the
//! secret (verified in constant time by `ring`). A signature can only be verified once
//! the body is in (within the size limit), and it is verified before the body is
//! parsed; a signed request whose body is refused before that (413, 400) was never
//! authenticated and is counted as unauthorized. Accepted webhooks go to the adapter
//! task through a bounded queue; the receiver never calls an MDM itself.
//!
//! Invariants: at most [`MAX_CONNECTIONS`] connections at once; a body is never held
//! beyond [`WebhookOptions::max_body`]; headers must arrive within
//! [`HEADER_TIMEOUT`] and a body within [`BODY_TIMEOUT`]; every refusal is counted.

use super::{constant_time_eq, jamf, micromdm, wall_clock_ns, AdapterStats, Secret};
pub use crate::config::WebhookAuth;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most connections served at once (64): webhooks are small and bursty; more waits in
/// the kernel's accept queue.
pub const MAX_CONNECTIONS: usize = 64;

/// Time allowed for a request's headers (10 s): slow senders are cut off.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Time allowed for a request's body (30 s).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Default largest body (4 MiB): an `InstalledApplicationList` answer for 500 apps is
/// about 300 KiB of plist, 400 KiB in base64.
pub const DEFAULT_MAX_BODY: usize = 4 * 1024 * 1024;

/// Default queue between the receiver and the adapter task (1024 webhooks): a burst of
/// check-ins from a whole site fits; beyond it senders get 503 and retry.
pub const DEFAULT_QUEUE: usize = 1024;

/// The header carrying a request's signature: `sha256=` and the HMAC-SHA256 of the body
/// keyed with the secret, in hex (64 digits, either case).
pub const SIGNATURE_HEADER: &str = "x-nightjar-signature";

/// Receiver settings.
#[derive(Clone, Debug)]
pub struct WebhookOptions {
    /// Largest body accepted.
    pub max_body: usize,
    /// Sustained requests per second accepted (all senders together).
    pub rate_per_sec: u32,
    /// Burst allowed above the sustained rate.
    pub burst: u32,
    /// Which credentials are accepted.
    pub auth: WebhookAuth,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        WebhookOptions {
            max_body: DEFAULT_MAX_BODY,
            rate_per_sec: 50,
            burst: 200,
            auth: WebhookAuth::Secret,
        }
    }
}

/// Where accepted webhooks go: one bounded queue per adapter task. A route whose
/// queue is `None` answers 404.
#[derive(Clone, Default)]
pub struct Routes {
    /// `POST /webhook/jamf`.
    pub jamf: Option<tokio::sync::mpsc::Sender<jamf::JamfHook>>,
    /// `POST /webhook/micromdm` (also `/webhook/nanomdm`).
    pub micromdm: Option<tokio::sync::mpsc::Sender<micromdm::MdmHook>>,
}

/// A token bucket; time is passed in.
#[derive(Debug)]
pub struct TokenBucket {
    capacity: f64,
    per_sec: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(per_sec: u32, burst: u32, now: Instant) -> TokenBucket {
        let capacity = f64::from(burst.max(1));
        TokenBucket {
            capacity,
            per_sec: f64::from(per_sec),
            tokens: capacity,
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The receiver: its secret, options, rate limit, counters and routes, shared by all
/// its connections.
pub struct Receiver {
    secret: Secret,
    /// The secret as an HMAC-SHA256 key, for signatures.
    signing_key: ring::hmac::Key,
    opts: WebhookOptions,
    bucket: Mutex<TokenBucket>,
    stats: Arc<AdapterStats>,
    routes: Routes,
}

impl Receiver {
    /// A receiver with a full rate-limit bucket.
    pub fn new(
        secret: Secret,
        opts: WebhookOptions,
        stats: Arc<AdapterStats>,
        routes: Routes,
    ) -> Receiver {
        Receiver {
            bucket: Mutex::new(TokenBucket::new(
                opts.rate_per_sec,
                opts.burst,
                Instant::now(),
            )),
            signing_key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.expose().as_bytes()),
            secret,
            opts,
            stats,
            routes,
        }
    }

    /// Serves the HTTP/1.1 requests of one connection (any byte stream: a TCP socket,
    /// or an in-memory pipe in tests and the fuzz harness) until it closes.
    pub async fn serve_connection<IO>(self: Arc<Self>, io: IO)
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let service = hyper::service::service_fn(move |req| {
            let receiver = Arc::clone(&self);
            async move { Ok::<_, std::convert::Infallible>(receiver.handle(req).await) }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            // A client that shuts its side after the request still gets the answer.
            .half_close(true)
            .serve_connection(hyper_util::rt::TokioIo::new(io), service)
            .await;
    }
}

/// Serves webhooks on `listener` until the task is dropped or `listener` fails.
/// Accepted webhooks are sent to their route's queue; counters go to `stats`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    secret: Secret,
    opts: WebhookOptions,
    stats: Arc<AdapterStats>,
    routes: Routes,
) -> std::io::Result<()> {
    let receiver = Arc::new(Receiver::new(secret, opts, stats, routes));
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = Arc::clone(&slots)
            .acquire_owned()
            .await
            .map_err(std::io::Error::other)?;
        let (stream, _) = listener.accept().await?;
        let receiver = Arc::clone(&receiver);
        tokio::spawn(async move {
            receiver.serve_connection(stream).await;
            drop(permit);
        });
    }
}

fn reply(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Basic realm=\"nightjar\""),
        );
    }
    r
}

/// True if the `Authorization` header carries the secret (Bearer, or Basic password).
pub fn authorized(header: Option<&[u8]>, secret: &Secret) -> bool {
    let Some(h) = header.and_then(|h| std::str::from_utf8(h).ok()) else {
        return false;
    };
    let want = secret.expose().as_bytes();
    if let Some(token) = h.strip_prefix("Bearer ") {
        return constant_time_eq(token.trim().as_bytes(), want);
    }
    if let Some(b64) = h.strip_prefix("Basic ") {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
            return false;
        };
        let password = match decoded.iter().position(|&b| b == b':') {
            Some(i) => &decoded[i + 1..],
            None => return false,
        };
        return constant_time_eq(password, want);
    }
    false
}

/// The tag of a signature header: `sha256=` then 64 hex digits; `None` for anything else.
pub fn signature_tag(header: &[u8]) -> Option<[u8; 32]> {
    let hex = header.strip_prefix(b"sha256=")?;
    if hex.len() != 64 {
        return None;
    }
    let mut tag = [0u8; 32];
    for (byte, pair) in tag.iter_mut().zip(hex.chunks_exact(2)) {
        let digit = |c: u8| char::from(c).to_digit(16);
        *byte = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(tag)
}

/// True if `tag` is the HMAC-SHA256 of `body` under `key` (compared in constant time).
pub fn signed(key: &ring::hmac::Key, body: &[u8], tag: &[u8; 32]) -> bool {
    ring::hmac::verify(key, body, tag).is_ok()
}

fn unauthorized(stats: &AdapterStats) -> Response<Full<Bytes>> {
    AdapterStats::inc(&stats.webhooks_unauthorized);
    reply(StatusCode::UNAUTHORIZED, "unauthorized\n")
}

impl Receiver {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let shared = self;
        let stats = &shared.stats;
        let route = match req.uri().path() {
            "/webhook/jamf" if shared.routes.jamf.is_some() => 0,
            "/webhook/micromdm" | "/webhook/nanomdm" if shared.routes.micromdm.is_some() => 1,
            _ => return reply(StatusCode::NOT_FOUND, "not found\n"),
        };
        if req.method() != hyper::Method::POST {
            return reply(StatusCode::METHOD_NOT_ALLOWED, "POST only\n");
        }
        let allowed = shared
            .bucket
            .lock()
            .map(|mut b| b.take(Instant::now()))
            .unwrap_or(false);
        if !allowed {
            AdapterStats::inc(&stats.webhooks_rate_limited);
            return reply(StatusCode::TOO_MANY_REQUESTS, "rate limited\n");
        }
        let by_secret = shared.opts.auth != WebhookAuth::Hmac
            && authorized(
                req.headers()
                    .get(hyper::header::AUTHORIZATION)
                    .map(|v| v.as_bytes()),
                &shared.secret,
            );
        // The tag the body must be signed with, when the secret itself was not presented.
        let tag = if by_secret {
            None
        } else if shared.opts.auth == WebhookAuth::Secret {
            return unauthorized(stats);
        } else {
            match req
                .headers()
                .get(SIGNATURE_HEADER)
                .and_then(|v| signature_tag(v.as_bytes()))
            {
                Some(tag) => Some(tag),
                None => return unauthorized(stats),
            }
        };
        // Body refusals of a request not yet authenticated count as unauthorized.
        let refused = |counter: &AtomicU64| {
            AdapterStats::inc(if tag.is_some() {
                &stats.webhooks_unauthorized
            } else {
                counter
            })
        };
        let max = shared.opts.max_body;
        let declared = req
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            refused(&stats.webhooks_too_large);
            return reply(StatusCode::PAYLOAD_TOO_LARGE, "body too large\n");
        }
        let body =
            match tokio::time::timeout(BODY_TIMEOUT, Limited::new(req.into_body(), max).collect())
                .await
            {
                Ok(Ok(b)) => b.to_bytes(),
                Ok(Err(e)) if e.is::<LengthLimitError>() => {
                    refused(&stats.webhooks_too_large);
                    return reply(StatusCode::PAYLOAD_TOO_LARGE, "body too large\n");
                }
                Ok(Err(_)) => {
                    // The sender closed or broke the body (fewer bytes than its Content-Length,
                    // bad chunked framing): malformed, not too large.
                    refused(&stats.webhooks_malformed);
                    return reply(StatusCode::BAD_REQUEST, "body incomplete\n");
                }
                Err(_) => {
                    refused(&stats.webhooks_malformed);
                    return reply(StatusCode::REQUEST_TIMEOUT, "body too slow\n");
                }
            };
        if tag.is_some_and(|tag| !signed(&shared.signing_key, &body, &tag)) {
            return unauthorized(stats);
        }
        let name = if route == 0 {
            jamf::NAME
        } else {
            micromdm::NAME
        };
        let queued = match route {
            0 => match jamf::parse_webhook(&body, wall_clock_ns()) {
                Ok(Some(h)) => shared.routes.jamf.as_ref().map(|tx| tx.try_send(h).is_ok()),
                Ok(None) => None,
                Err(msg) => return malformed(stats, name, &msg),
            },
            _ => match micromdm::parse_webhook(&body) {
                Ok(Some(h)) => shared
                    .routes
                    .micromdm
                    .as_ref()
                    .map(|tx| tx.try_send(h).is_ok()),
                Ok(None) => None,
                Err(msg) => return malformed(stats, name, &msg),
            },
        };
        match queued {
            None => {
                AdapterStats::inc(&stats.webhooks_ignored);
                reply(StatusCode::OK, "ignored\n")
            }
            Some(true) => {
                AdapterStats::inc(&stats.webhooks_accepted);
                reply(StatusCode::ACCEPTED, "accepted\n")
            }
            Some(false) => {
                AdapterStats::inc(&stats.webhooks_queue_full);
                reply(StatusCode::SERVICE_UNAVAILABLE, "busy\n")
            }
        }
    }
}

fn malformed(stats: &AdapterStats, name: &str, msg: &str) -> Response<Full<Bytes>> {
    AdapterStats::inc(&stats.webhooks_malformed);
    eprintln!("nightjar: mdm {name}: webhook refused: {msg}");
    reply(StatusCode::BAD_REQUEST, "malformed webhook\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_with_time() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2, 3, t0);
        assert!(b.take(t0) && b.take(t0) && b.take(t0));
        assert!(!b.take(t0));
        assert!(b.take(t0 + Duration::from_millis(500)));
        assert!(!b.take(t0 + Duration::from_millis(500)));
        assert!(b.take(t0 + Duration::from_secs(100)));
    }

    #[test]
    fn credentials() {
        let s = Secret::new("s3cret".into());
        let basic = |up: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(up)
            )
        };
        assert!(authorized(Some(b"Bearer s3cret"), &s));
        assert!(authorized(Some(basic("jamf:s3cret").as_bytes()), &s));
        assert!(authorized(Some(basic(":s3cret").as_bytes()), &s));
        assert!(!authorized(Some(basic("s3cret").as_bytes()), &s));
        assert!(!authorized(Some(b"Bearer s3cre"), &s));
        assert!(!authorized(Some(b"Basic !!"), &s));
        assert!(!authorized(Some(b"s3cret"), &s));
        assert!(!authorized(None, &s));
        assert!(!authorized(Some(b"Bearer \xff"), &s));
    }

    #[test]
    fn signatures() {
        // RFC 4231 test case 2.
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"Jefe");
        let hex = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        let tag = signature_tag(format!("sha256={hex}").as_bytes()).unwrap();
        assert!(signed(&key, b"what do ya want for nothing?", &tag));
        assert!(!signed(&key, b"what do ya want for nothing!", &tag));
        let upper = signature_tag(format!("sha256={}", hex.to_uppercase()).as_bytes());
        assert_eq!(upper, Some(tag));
        for bad in [
            format!("sha1={hex}"),
            format!("sha256={}", &hex[..62]),
            format!("sha256={hex}00"),
            format!("sha256= {}", &hex[1..]),
            format!("sha256={}+f", &hex[..62]),
            format!("SHA256={hex}"),
            hex.to_string(),
        ] {
            assert_eq!(signature_tag(bad.as_bytes()), None, "{bad}");
        }
    }
}
