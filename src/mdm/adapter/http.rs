//! The adapters' HTTP client: rustls (no OpenSSL), timeouts on every request,
//! size-bounded response bodies, bounded retries (HTTP 429 honoring `Retry-After`, 5xx
//! and transport errors with exponential backoff), and OAuth 2.0 client-credential
//! tokens refreshed before they expire and after a 401.
//!
//! Invariants: a response body is never held beyond [`HttpOptions::max_body`]; a request
//! is tried at most [`RetryPolicy::max_attempts`] times; tokens and client secrets only
//! travel in headers and form bodies (never URLs) and are never logged.

use super::{AdapterError, AdapterStats, Secret};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Default largest response body (64 MiB): a Jamf page of 100 devices with their apps is
/// well under 10 MiB; a Graph page is under 1 MiB.
pub const DEFAULT_MAX_BODY: usize = 64 * 1024 * 1024;

/// Longest excerpt of an error body kept in an error message (200 bytes): enough for an
/// OAuth `error_description`, short enough for one log line.
pub const MAX_ERROR_DETAIL: usize = 200;

/// A token is refreshed when it has less than this left (60 s): a long paging run must
/// not use a token that expires mid-request. Tokens that live shorter than this are used
/// for one request each.
pub const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// Bounded retries.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Tries per request, the first included (≥ 1).
    pub max_attempts: u32,
    /// First backoff after a 5xx or transport error; doubles each retry.
    pub base_delay: Duration,
    /// Largest backoff.
    pub max_delay: Duration,
    /// Largest `Retry-After` honored; a longer one is cut to this.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// Delay before retry number `retry` (0-based) after a 5xx or transport error.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(20)).unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }
}

/// Client settings.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// Whole-request timeout (connect, send, receive the body).
    pub timeout: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Largest response body accepted.
    pub max_body: usize,
    /// Retries.
    pub retry: RetryPolicy,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            max_body: DEFAULT_MAX_BODY,
            retry: RetryPolicy::default(),
        }
    }
}

/// One adapter's HTTP client.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    opts: HttpOptions,
    adapter: &'static str,
    stats: Arc<AdapterStats>,
}

/// A request to send (rebuilt for each attempt).
enum Req<'a> {
    Get { bearer: Option<&'a Secret> },
    Form { fields: &'a [(&'a str, &'a str)] },
}

impl Http {
    /// A client for `adapter` (used in errors and logs).
    pub fn new(
        adapter: &'static str,
        opts: HttpOptions,
        stats: Arc<AdapterStats>,
    ) -> Result<Http, AdapterError> {
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .https_only(false) // plain http is refused by config except to loopback
            .timeout(opts.timeout)
            .connect_timeout(opts.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("nightjar/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| AdapterError::Transport {
                adapter,
                method: "INIT",
                url: String::new(),
                msg: e.to_string(),
            })?;
        Ok(Http {
            client,
            opts,
            adapter,
            stats,
        })
    }

    /// The adapter's counters.
    pub fn stats(&self) -> &Arc<AdapterStats> {
        &self.stats
    }

    /// The adapter's name.
    pub fn adapter(&self) -> &'static str {
        self.adapter
    }

    /// GET `url` with an optional bearer token; the body, with retries.
    pub async fn get(&self, url: &str, bearer: Option<&Secret>) -> Result<Vec<u8>, AdapterError> {
        self.send(url, Req::Get { bearer }).await
    }

    /// POST a form to `url`; the body, with retries.
    pub async fn post_form(
        &self,
        url: &str,
        fields: &[(&str, &str)],
    ) -> Result<Vec<u8>, AdapterError> {
        self.send(url, Req::Form { fields }).await
    }

    /// Counts a response that does not have the documented shape and describes it.
    pub fn malformed(&self, url: &str, what: impl std::fmt::Display) -> AdapterError {
        AdapterStats::inc(&self.stats.bad_responses);
        AdapterError::Malformed {
            adapter: self.adapter,
            url: url.to_string(),
            msg: what.to_string(),
        }
    }

    async fn send(&self, url: &str, req: Req<'_>) -> Result<Vec<u8>, AdapterError> {
        let method = match req {
            Req::Get { .. } => "GET",
            Req::Form { .. } => "POST",
        };
        let policy = &self.opts.retry;
        let mut retry = 0u32;
        loop {
            let (delay, err) = match self.attempt(url, method, &req).await {
                Ok(body) => return Ok(body),
                Err(Attempt::Fatal(e)) => (None, e),
                Err(Attempt::Throttled(after, e)) => {
                    (Some(after.unwrap_or_else(|| policy.backoff(retry))), e)
                }
                Err(Attempt::Retryable(e)) => (Some(policy.backoff(retry)), e),
            };
            match delay {
                Some(d) if retry + 1 < policy.max_attempts.max(1) => {
                    AdapterStats::inc(&self.stats.retries);
                    tokio::time::sleep(d.min(policy.max_retry_after)).await;
                    retry += 1;
                }
                _ => return Err(err),
            }
        }
    }

    async fn attempt(
        &self,
        url: &str,
        method: &'static str,
        req: &Req<'_>,
    ) -> Result<Vec<u8>, Attempt> {
        AdapterStats::inc(&self.stats.requests);
        let builder = match req {
            Req::Get { bearer } => {
                let b = self.client.get(url).header("Accept", "application/json");
                match bearer {
                    Some(t) => b.bearer_auth(t.expose()),
                    None => b,
                }
            }
            Req::Form { fields } => self
                .client
                .post(url)
                .header("Accept", "application/json")
                .form(fields),
        };
        let transport = |e: reqwest::Error| {
            AdapterStats::inc(&self.stats.transport_errors);
            let what = if e.is_timeout() {
                "timed out".to_string()
            } else if e.is_connect() {
                format!("cannot connect: {}", root_cause(&e))
            } else {
                root_cause(&e)
            };
            Attempt::Retryable(AdapterError::Transport {
                adapter: self.adapter,
                method,
                url: url.to_string(),
                msg: what,
            })
        };
        let mut resp = builder.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let limit = self.opts.max_body;
        let too_large = || {
            AdapterStats::inc(&self.stats.bad_responses);
            Attempt::Fatal(AdapterError::TooLarge {
                adapter: self.adapter,
                method,
                url: url.to_string(),
                limit,
            })
        };
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let err = AdapterError::Status {
            adapter: self.adapter,
            method,
            url: url.to_string(),
            status,
            detail: error_detail(&body),
        };
        Err(match status {
            429 => {
                AdapterStats::inc(&self.stats.throttled);
                Attempt::Throttled(retry_after, err)
            }
            500..=599 => {
                AdapterStats::inc(&self.stats.server_errors);
                match (status, retry_after) {
                    (503, Some(after)) => Attempt::Throttled(Some(after), err),
                    _ => Attempt::Retryable(err),
                }
            }
            _ => Attempt::Fatal(err),
        })
    }
}

/// The outcome of one failed attempt.
enum Attempt {
    /// Do not retry (4xx other than 429, body too large).
    Fatal(AdapterError),
    /// 429 (or 503 with `Retry-After`): wait the given time, else back off.
    Throttled(Option<Duration>, AdapterError),
    /// 5xx or transport error: back off.
    Retryable(AdapterError),
}

/// The innermost error message (reqwest wraps hyper wraps io).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// `": <excerpt>"` of an error body: printable ASCII only, at most [`MAX_ERROR_DETAIL`].
fn error_detail(body: &[u8]) -> String {
    let text: String = body
        .iter()
        .take(MAX_ERROR_DETAIL)
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                ' '
            }
        })
        .collect();
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

/// An access token and when it stops being usable.
#[derive(Clone, Debug)]
pub struct Token {
    /// The bearer token.
    pub value: Secret,
    /// When the server says it expires.
    pub expires_at: Instant,
}

impl Token {
    /// True while more than [`TOKEN_REFRESH_MARGIN`] is left at `now`.
    pub fn usable(&self, now: Instant) -> bool {
        now + TOKEN_REFRESH_MARGIN < self.expires_at
    }
}

/// An OAuth 2.0 client-credentials token endpoint and the cached token.
pub struct TokenSource {
    url: String,
    client_id: String,
    secret: Secret,
    scope: Option<String>,
    cached: tokio::sync::Mutex<Option<Token>>,
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

/// Longest token lifetime believed (1 day): a server claiming more is capped.
const MAX_TOKEN_LIFETIME: u64 = 86_400;

impl TokenSource {
    /// A token endpoint; `scope` is sent when given (Entra ID needs it, Jamf does not).
    pub fn new(
        url: String,
        client_id: String,
        secret: Secret,
        scope: Option<String>,
    ) -> TokenSource {
        TokenSource {
            url,
            client_id,
            secret,
            scope,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// A usable token: the cached one, or a new one.
    pub async fn get(&self, http: &Http) -> Result<Secret, AdapterError> {
        let mut cached = self.cached.lock().await;
        if let Some(t) = cached.as_ref().filter(|t| t.usable(Instant::now())) {
            return Ok(t.value.clone());
        }
        let mut fields = vec![
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.secret.expose()),
        ];
        if let Some(s) = &self.scope {
            fields.push(("scope", s.as_str()));
        }
        AdapterStats::inc(&http.stats().token_fetches);
        let body = http.post_form(&self.url, &fields).await?;
        let (value, secs) = parse_token(&body).map_err(|e| http.malformed(&self.url, e))?;
        let token = Token {
            value,
            expires_at: Instant::now() + Duration::from_secs(secs),
        };
        let value = token.value.clone();
        *cached = Some(token);
        Ok(value)
    }

    /// Forgets the cached token (after the API answered 401).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }
}

/// Parses an OAuth 2.0 token response (RFC 6749 §5.1): the access token and the
/// seconds it may be used for, capped at one day; an unknown lifetime is 0 (the token
/// serves one request). The error says what is wrong, never the token.
pub fn parse_token(body: &[u8]) -> Result<(Secret, u64), String> {
    let resp: TokenResponse = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let lifetime = match &resp.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    if resp.access_token.is_empty() {
        return Err("empty access_token".into());
    }
    Ok((
        Secret::new(resp.access_token),
        lifetime.unwrap_or(0).min(MAX_TOKEN_LIFETIME),
    ))
}

/// GET `url` with a token from `tokens`: the body; on 401 the token is refetched and
/// the request repeated once.
pub async fn get_authed(
    http: &Http,
    tokens: &TokenSource,
    url: &str,
) -> Result<Vec<u8>, AdapterError> {
    let mut refreshed = false;
    loop {
        let token = tokens.get(http).await?;
        match http.get(url, Some(&token)).await {
            Err(AdapterError::Status { status: 401, .. }) if !refreshed => {
                AdapterStats::inc(&http.stats().token_rejected);
                tokens.invalidate().await;
                refreshed = true;
            }
            other => return other,
        }
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters kept).
pub fn encode_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(5),
        };
        let got: Vec<u128> = (0..6).map(|r| p.backoff(r).as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.backoff(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn token_refreshes_before_expiry() {
        let now = Instant::now();
        let t = |secs| Token {
            value: Secret::new("t".into()),
            expires_at: now + Duration::from_secs(secs),
        };
        assert!(t(3600).usable(now));
        assert!(!t(3600).usable(now + Duration::from_secs(3541)));
        assert!(!t(30).usable(now), "shorter than the margin: never reused");
    }

    #[test]
    fn error_detail_is_short_and_printable() {
        assert_eq!(error_detail(b""), "");
        assert_eq!(
            error_detail(b"{\"error\":\n \"x\"}\x00"),
            ": {\"error\": \"x\"}"
        );
        assert_eq!(error_detail(&[b'a'; 1000]).len(), MAX_ERROR_DETAIL + 2);
        assert_eq!(
            encode_query("operatingSystem eq 'iOS'"),
            "operatingSystem%20eq%20%27iOS%27"
        );
    }
}
