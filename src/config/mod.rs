//! The configuration file: one TOML file whose section and key names are a
//! contract with operators (see `config/nightjar.example.toml`).
//!
//! Parsing happens in two steps: `serde` reads the raw file with
//! `deny_unknown_fields` (a misspelt key is an error, not a silent default),
//! then [`Config::from_raw`] validates it into types that cannot hold invalid
//! states (positive durations, bounded counts, URLs that are `https://` or
//! loopback `http://`).

mod duration;

pub use duration::parse_duration;

use crate::correlate::identity::StaticIdentity;
use crate::flow::FlowConfig;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: String,
        key: &'static str,
        message: String,
    },
}

// ---------------------------------------------------------------------------
// Raw file structure
// ---------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Raw {
    capture: RawCapture,
    flow: RawFlow,
    output: RawOutput,
    state: RawState,
    metrics: RawMetrics,
    mdm: RawMdm,
    identity: RawIdentity,
    daemon: RawDaemon,
    fleet: crate::fleet::config::RawFleet,
    detect: RawDetect,
    evidence: RawEvidence,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDetect {
    grace: String,
    burst_gap: String,
    burst_min_flows: u64,
    burst_hold: String,
    episode_idle: String,
    push_window: String,
    apns_wake_window: String,
    window: String,
    review: String,
    alert_threshold: u64,
    new_destination_age: String,
    recent_change: String,
    baseline_half_life: String,
}

impl Default for RawDetect {
    fn default() -> Self {
        RawDetect {
            grace: "30s".into(),
            burst_gap: "10s".into(),
            burst_min_flows: 3,
            burst_hold: "20s".into(),
            episode_idle: "5m".into(),
            push_window: "30s".into(),
            apns_wake_window: "5s".into(),
            window: "2h".into(),
            review: "15m".into(),
            alert_threshold: 50,
            new_destination_age: "6h".into(),
            recent_change: "24h".into(),
            baseline_half_life: "14d".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawEvidence {
    dir: String,
    quota_bytes: u64,
    packets_per_flow: u64,
    packet_snap: u64,
    packet_memory_bytes: u64,
}

impl Default for RawEvidence {
    fn default() -> Self {
        RawEvidence {
            dir: String::new(),
            quota_bytes: crate::correlate::evidence::DEFAULT_QUOTA_BYTES,
            packets_per_flow: u64::from(crate::flow::keep::DEFAULT_PACKETS_PER_FLOW),
            packet_snap: u64::from(crate::flow::keep::DEFAULT_SNAP_BYTES),
            packet_memory_bytes: crate::flow::keep::DEFAULT_MEMORY_BYTES as u64,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDaemon {
    user: String,
    coverage_interval: String,
}

impl Default for RawDaemon {
    fn default() -> Self {
        RawDaemon {
            user: String::new(),
            coverage_interval: "1h".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCapture {
    interfaces: Vec<String>,
    workers: u64,
    bpf: String,
    snaplen: u64,
    buffer_size: u64,
    promisc: bool,
    immediate_mode: bool,
}

impl Default for RawCapture {
    fn default() -> Self {
        RawCapture {
            interfaces: Vec::new(),
            workers: 1,
            bpf: String::new(),
            snaplen: 65535,
            buffer_size: 64 << 20,
            promisc: false,
            immediate_mode: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawFlow {
    max_flows: u64,
    tcp_timeout: String,
    tcp_closed_timeout: String,
    udp_timeout: String,
    other_timeout: String,
    active_timeout: String,
    burst_gap: String,
}

impl Default for RawFlow {
    fn default() -> Self {
        RawFlow {
            max_flows: 1_000_000,
            tcp_timeout: "5m".into(),
            tcp_closed_timeout: "5s".into(),
            udp_timeout: "1m".into(),
            other_timeout: "1m".into(),
            active_timeout: "30m".into(),
            burst_gap: "1s".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawOutput {
    path: String,
    dns_records: bool,
}

impl Default for RawOutput {
    fn default() -> Self {
        RawOutput {
            path: "-".into(),
            dns_records: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawState {
    dir: String,
}

impl Default for RawState {
    fn default() -> Self {
        RawState {
            dir: "/var/lib/nightjar".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawMetrics {
    listen: String,
}

impl Default for RawMetrics {
    fn default() -> Self {
        RawMetrics {
            listen: "127.0.0.1:9464".into(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawMdm {
    inventory: Option<String>,
    events: Option<String>,
    catalog: Option<String>,
    jamf: Option<RawJamf>,
    intune: Option<RawIntune>,
    webhook: Option<RawWebhook>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    listen: String,
    secret_file: String,
    #[serde(default)]
    micromdm: bool,
    #[serde(default)]
    auth: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJamf {
    url: String,
    client_id: String,
    client_secret_file: String,
    #[serde(default = "default_poll")]
    poll_interval: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntune {
    tenant_id: String,
    client_id: String,
    client_secret_file: String,
    #[serde(default = "default_login_url")]
    login_url: String,
    #[serde(default = "default_graph_url")]
    graph_url: String,
    #[serde(default = "default_poll")]
    poll_interval: String,
}

fn default_poll() -> String {
    "15m".into()
}
fn default_login_url() -> String {
    "https://login.microsoftonline.com".into()
}
fn default_graph_url() -> String {
    "https://graph.microsoft.com".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawIdentity {
    feed: Option<String>,
    socket: Option<String>,
    #[serde(rename = "static")]
    statics: Vec<RawStaticIdentity>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStaticIdentity {
    ip: Option<String>,
    mac: Option<String>,
    device_id: String,
}

// ---------------------------------------------------------------------------
// Validated configuration
// ---------------------------------------------------------------------------

/// Upper bound on `capture.workers`: more shards than this cannot be served
/// by the channels' fixed batch pools.
pub const MAX_WORKERS: usize = 64;

#[derive(Clone, Debug)]
pub struct Config {
    pub capture: CaptureConfig,
    pub flow: FlowConfig,
    pub output: OutputConfig,
    pub state_dir: PathBuf,
    pub metrics_listen: SocketAddr,
    pub mdm: MdmConfig,
    pub identity_feed: Option<PathBuf>,
    /// `[identity] socket`: the Unix socket `nightjar run` serves for feed lines.
    pub identity_socket: Option<PathBuf>,
    /// `[identity] static`: address and/or MAC → device id, the least trusted source.
    pub identity_static: Vec<StaticIdentity>,
    /// `[daemon] user`: the account `nightjar run` switches to after opening
    /// capture (None: stay the invoking user, still dropping capabilities).
    pub daemon_user: Option<String>,
    /// `[fleet]`: role (all, sensor, correlator) and the Kafka cluster.
    pub fleet: crate::fleet::config::FleetConfig,
    /// `[daemon] coverage_interval`: how often `nightjar run` writes coverage records.
    pub coverage_interval: Duration,
    /// `[detect]`: timelines, episodes and AN1717 scoring (the correlator takes it as is).
    pub detect: crate::correlate::detect::DetectConfig,
    /// `[evidence]`: evidence bundles and the packets kept for them.
    pub evidence: EvidenceConfig,
}

/// `[evidence]`, validated.
#[derive(Clone, Debug)]
pub struct EvidenceConfig {
    /// Where bundles go (`replay --evidence-dir` overrides); `None`: no bundles.
    pub dir: Option<PathBuf>,
    /// Disk quota of the evidence directory.
    pub quota_bytes: u64,
    /// Bounds of the per-shard packet keepers.
    pub packets: crate::flow::keep::KeeperConfig,
}

impl EvidenceConfig {
    /// What the correlator needs to write bundles into `dir` (or the configured
    /// directory); `None` when there is neither.
    pub fn options(
        &self,
        dir: Option<PathBuf>,
    ) -> Option<crate::correlate::evidence::EvidenceOptions> {
        dir.or_else(|| self.dir.clone())
            .map(|dir| crate::correlate::evidence::EvidenceOptions {
                dir,
                quota_bytes: self.quota_bytes,
                packets: Some(self.packets),
            })
    }
}

#[derive(Clone, Debug)]
pub struct CaptureConfig {
    pub interfaces: Vec<String>,
    pub workers: usize,
    pub bpf: String,
    pub snaplen: u32,
    pub buffer_size: u32,
    pub promisc: bool,
    pub immediate_mode: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputPath {
    Stdout,
    File(PathBuf),
}

#[derive(Clone, Debug)]
pub struct OutputConfig {
    pub path: OutputPath,
    /// Also write a `nightjar.dns` record per DNS message.
    pub dns_records: bool,
}

#[derive(Clone, Debug, Default)]
pub struct MdmConfig {
    pub inventory: Option<PathBuf>,
    pub events: Option<PathBuf>,
    pub catalog: Option<PathBuf>,
    pub jamf: Option<JamfConfig>,
    pub intune: Option<IntuneConfig>,
    pub webhook: Option<WebhookConfig>,
}

/// The webhook receiver (`[mdm.webhook]`): Jamf Pro webhooks when `[mdm.jamf]` is set,
/// MicroMDM/NanoMDM webhooks when `micromdm = true`.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    pub listen: SocketAddr,
    pub secret_file: PathBuf,
    pub micromdm: bool,
    pub auth: WebhookAuth,
}

/// How webhook senders prove they hold the secret (`[mdm.webhook] auth`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WebhookAuth {
    /// `"secret"`: the secret itself, as `Authorization: Bearer` or the Basic password.
    #[default]
    Secret,
    /// `"hmac"`: `X-Nightjar-Signature: sha256=<hex>`, the HMAC-SHA256 of the body
    /// keyed with the secret; the secret never travels.
    Hmac,
    /// `"either"`: whichever of the two the request carries.
    Either,
}

impl WebhookAuth {
    /// Parses the configuration value.
    pub fn parse(s: &str) -> Option<WebhookAuth> {
        match s {
            "secret" => Some(WebhookAuth::Secret),
            "hmac" => Some(WebhookAuth::Hmac),
            "either" => Some(WebhookAuth::Either),
            _ => None,
        }
    }
}

/// An API base URL: `https://`, or `http://` to a loopback address (tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiUrl(String);

impl ApiUrl {
    pub fn parse(s: &str) -> Result<ApiUrl, String> {
        let s = s.trim_end_matches('/');
        if let Some(rest) = s.strip_prefix("https://") {
            if rest.is_empty() || rest.starts_with('/') {
                return Err(format!("{s:?} has no host"));
            }
            return Ok(ApiUrl(s.to_string()));
        }
        if let Some(rest) = s.strip_prefix("http://") {
            let host = rest.split('/').next().unwrap_or("");
            let host = host.rsplit_once(':').map_or(host, |(h, p)| {
                if p.chars().all(|c| c.is_ascii_digit()) {
                    h
                } else {
                    host
                }
            });
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if loopback {
                return Ok(ApiUrl(s.to_string()));
            }
            return Err(format!(
                "{s:?}: plain http:// is only allowed to a loopback address; use https://"
            ));
        }
        Err(format!("{s:?} is not an https:// URL"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Clone, Debug)]
pub struct JamfConfig {
    pub url: ApiUrl,
    pub client_id: String,
    pub client_secret_file: PathBuf,
    pub poll_interval: Duration,
}

#[derive(Clone, Debug)]
pub struct IntuneConfig {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret_file: PathBuf,
    pub login_url: ApiUrl,
    pub graph_url: ApiUrl,
    pub poll_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config::from_raw(Raw::default(), "<defaults>").expect("defaults are valid")
    }
}

/// A TOML error as one line: where (line, column) and what, without the offending
/// text (toml's own rendering quotes the line, which may hold a secret pasted where a
/// `*_file` key belongs).
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let what = e.message().lines().collect::<Vec<_>>().join(" ");
    match e.span() {
        Some(span) => {
            let before = &text.as_bytes()[..span.start.min(text.len())];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
            format!("line {line}, column {column}: {what}")
        }
        None => what,
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: p.clone(),
            source,
        })?;
        Config::parse(&text, &p)
    }

    pub fn parse(text: &str, path: &str) -> Result<Config, ConfigError> {
        let raw: Raw = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_string(),
            message: toml_error(text, &e),
        })?;
        Config::from_raw(raw, path)
    }

    fn from_raw(raw: Raw, path: &str) -> Result<Config, ConfigError> {
        let invalid = |key: &'static str, message: String| ConfigError::Invalid {
            path: path.to_string(),
            key,
            message,
        };
        let positive = |key: &'static str, s: &str| -> Result<u64, ConfigError> {
            let d = parse_duration(s).map_err(|m| invalid(key, m))?;
            if d.is_zero() {
                return Err(invalid(key, "must be greater than zero".into()));
            }
            Ok(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        };

        let c = &raw.capture;
        if c.workers == 0 || c.workers > MAX_WORKERS as u64 {
            return Err(invalid(
                "capture.workers",
                format!("{} is out of range 1..={MAX_WORKERS}", c.workers),
            ));
        }
        let snaplen = u32::try_from(c.snaplen)
            .ok()
            .filter(|&s| (64..=262_144).contains(&s));
        let snaplen = snaplen.ok_or_else(|| {
            invalid(
                "capture.snaplen",
                format!("{} is out of range 64..=262144", c.snaplen),
            )
        })?;
        let buffer_size = u32::try_from(c.buffer_size).ok().filter(|&s| s >= 1 << 20);
        let buffer_size = buffer_size.ok_or_else(|| {
            invalid(
                "capture.buffer_size",
                format!("{} must be between 1 MiB and 4 GiB", c.buffer_size),
            )
        })?;
        if c.interfaces.iter().any(|i| i.is_empty()) {
            return Err(invalid(
                "capture.interfaces",
                "an interface name is empty".into(),
            ));
        }

        let f = &raw.flow;
        let max_flows = usize::try_from(f.max_flows)
            .ok()
            .filter(|&m| (1..=100_000_000).contains(&m));
        let max_flows = max_flows.ok_or_else(|| {
            invalid(
                "flow.max_flows",
                format!("{} is out of range 1..=100000000", f.max_flows),
            )
        })?;
        let flow = FlowConfig {
            max_flows,
            tcp_timeout_ns: positive("flow.tcp_timeout", &f.tcp_timeout)?,
            tcp_closed_timeout_ns: positive("flow.tcp_closed_timeout", &f.tcp_closed_timeout)?,
            udp_timeout_ns: positive("flow.udp_timeout", &f.udp_timeout)?,
            other_timeout_ns: positive("flow.other_timeout", &f.other_timeout)?,
            active_timeout_ns: positive("flow.active_timeout", &f.active_timeout)?,
            burst_gap_ns: positive("flow.burst_gap", &f.burst_gap)?,
        };

        let output = OutputConfig {
            path: match raw.output.path.as_str() {
                "" => {
                    return Err(invalid(
                        "output.path",
                        "is empty (use \"-\" for stdout)".into(),
                    ))
                }
                "-" => OutputPath::Stdout,
                p => OutputPath::File(PathBuf::from(p)),
            },
            dns_records: raw.output.dns_records,
        };
        if raw.state.dir.is_empty() {
            return Err(invalid("state.dir", "is empty".into()));
        }
        let metrics_listen: SocketAddr = raw.metrics.listen.parse().map_err(|_| {
            invalid(
                "metrics.listen",
                format!("{:?} is not an address:port", raw.metrics.listen),
            )
        })?;

        let nonempty = |key: &'static str, v: &str| -> Result<String, ConfigError> {
            if v.trim().is_empty() {
                Err(invalid(key, "is empty".into()))
            } else {
                Ok(v.to_string())
            }
        };
        let url = |key: &'static str, v: &str| ApiUrl::parse(v).map_err(|m| invalid(key, m));
        let poll = |key: &'static str, v: &str| positive(key, v).map(Duration::from_nanos);
        let jamf = match &raw.mdm.jamf {
            None => None,
            Some(j) => Some(JamfConfig {
                url: url("mdm.jamf.url", &j.url)?,
                client_id: nonempty("mdm.jamf.client_id", &j.client_id)?,
                client_secret_file: PathBuf::from(nonempty(
                    "mdm.jamf.client_secret_file",
                    &j.client_secret_file,
                )?),
                poll_interval: poll("mdm.jamf.poll_interval", &j.poll_interval)?,
            }),
        };
        let intune = match &raw.mdm.intune {
            None => None,
            Some(i) => Some(IntuneConfig {
                tenant_id: nonempty("mdm.intune.tenant_id", &i.tenant_id)?,
                client_id: nonempty("mdm.intune.client_id", &i.client_id)?,
                client_secret_file: PathBuf::from(nonempty(
                    "mdm.intune.client_secret_file",
                    &i.client_secret_file,
                )?),
                login_url: url("mdm.intune.login_url", &i.login_url)?,
                graph_url: url("mdm.intune.graph_url", &i.graph_url)?,
                poll_interval: poll("mdm.intune.poll_interval", &i.poll_interval)?,
            }),
        };
        let webhook = match &raw.mdm.webhook {
            None => None,
            Some(w) => Some(WebhookConfig {
                listen: w.listen.parse().map_err(|_| {
                    invalid(
                        "mdm.webhook.listen",
                        format!("{:?} is not an address:port", w.listen),
                    )
                })?,
                secret_file: PathBuf::from(nonempty("mdm.webhook.secret_file", &w.secret_file)?),
                micromdm: w.micromdm,
                auth: match w.auth.as_deref() {
                    None => WebhookAuth::default(),
                    Some(a) => WebhookAuth::parse(a).ok_or_else(|| {
                        invalid(
                            "mdm.webhook.auth",
                            "must be \"secret\", \"hmac\" or \"either\"".to_string(),
                        )
                    })?,
                },
            }),
        };
        let opt_path =
            |v: &Option<String>| v.as_deref().filter(|s| !s.is_empty()).map(PathBuf::from);
        let mut identity_static = Vec::with_capacity(raw.identity.statics.len());
        for (i, st) in raw.identity.statics.iter().enumerate() {
            let bad = |m: String| invalid("identity.static", format!("entry {}: {m}", i + 1));
            let ip = match &st.ip {
                None => None,
                Some(s) => Some(
                    s.parse::<std::net::IpAddr>()
                        .map_err(|_| bad(format!("ip {s:?} is not an IP address")))?,
                ),
            };
            let mac = match &st.mac {
                None => None,
                Some(s) => Some(s.parse::<crate::mdm::MacAddr>().map_err(bad)?.0),
            };
            if ip.is_none() && mac.is_none() {
                return Err(bad("needs ip, mac or both".into()));
            }
            if st.device_id.trim().is_empty() {
                return Err(bad("device_id is empty".into()));
            }
            identity_static.push(StaticIdentity {
                ip,
                mac,
                device_id: st.device_id.clone(),
            });
        }

        let fleet = crate::fleet::config::FleetConfig::from_raw(&raw.fleet)
            .map_err(|(key, m)| invalid(key, m))?;
        let d = &raw.detect;
        let detect = {
            use crate::correlate::detect::DetectConfig;
            use crate::correlate::timeline::TimelineConfig;
            let min_flows = usize::try_from(d.burst_min_flows)
                .ok()
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| {
                    invalid(
                        "detect.burst_min_flows",
                        format!("{} is out of range 1..=100", d.burst_min_flows),
                    )
                })?;
            let threshold = u8::try_from(d.alert_threshold)
                .ok()
                .filter(|t| (1..=100).contains(t))
                .ok_or_else(|| {
                    invalid(
                        "detect.alert_threshold",
                        format!("{} is out of range 1..=100", d.alert_threshold),
                    )
                })?;
            let window_ns = positive("detect.window", &d.window)?;
            let episode_idle_ns = positive("detect.episode_idle", &d.episode_idle)?;
            if episode_idle_ns >= window_ns {
                return Err(invalid(
                    "detect.window",
                    "must be longer than detect.episode_idle".into(),
                ));
            }
            DetectConfig {
                timeline: TimelineConfig {
                    grace_ns: positive("detect.grace", &d.grace)?,
                    fg_burst_gap_ns: positive("detect.burst_gap", &d.burst_gap)?,
                    fg_min_flows: min_flows,
                    fg_hold_ns: positive("detect.burst_hold", &d.burst_hold)?,
                    episode_idle_ns,
                    push_window_ns: positive("detect.push_window", &d.push_window)?,
                },
                apns_wake_ns: positive("detect.apns_wake_window", &d.apns_wake_window)?,
                window_ns,
                review_ns: positive("detect.review", &d.review)?,
                alert_threshold: threshold,
                new_age_ns: positive("detect.new_destination_age", &d.new_destination_age)?,
                recent_change_ns: positive("detect.recent_change", &d.recent_change)?,
                half_life_seconds: positive("detect.baseline_half_life", &d.baseline_half_life)?
                    / 1_000_000_000,
                ..DetectConfig::default()
            }
        };
        let e = &raw.evidence;
        let evidence = {
            use crate::flow::keep::{KeeperConfig, MAX_MEMORY_BYTES, MIN_MEMORY_BYTES};
            let packets_per_flow = u16::try_from(e.packets_per_flow)
                .ok()
                .filter(|&n| n >= 1)
                .ok_or_else(|| {
                    invalid(
                        "evidence.packets_per_flow",
                        format!("{} is out of range 1..=65535", e.packets_per_flow),
                    )
                })?;
            let snap_bytes = u16::try_from(e.packet_snap)
                .ok()
                .filter(|&n| n >= 64)
                .ok_or_else(|| {
                    invalid(
                        "evidence.packet_snap",
                        format!("{} is out of range 64..=65535", e.packet_snap),
                    )
                })?;
            let memory_bytes = usize::try_from(e.packet_memory_bytes)
                .ok()
                .filter(|m| (MIN_MEMORY_BYTES..=MAX_MEMORY_BYTES).contains(m))
                .ok_or_else(|| {
                    invalid(
                        "evidence.packet_memory_bytes",
                        format!(
                            "{} is out of range {MIN_MEMORY_BYTES}..={MAX_MEMORY_BYTES}",
                            e.packet_memory_bytes
                        ),
                    )
                })?;
            if e.quota_bytes == 0 {
                return Err(invalid(
                    "evidence.quota_bytes",
                    "must be greater than zero".into(),
                ));
            }
            EvidenceConfig {
                dir: (!e.dir.trim().is_empty()).then(|| PathBuf::from(&e.dir)),
                quota_bytes: e.quota_bytes,
                packets: KeeperConfig {
                    packets_per_flow,
                    snap_bytes,
                    memory_bytes,
                    idle_reset_ns: flow.tcp_timeout_ns,
                },
            }
        };

        Ok(Config {
            detect,
            evidence,
            capture: CaptureConfig {
                interfaces: c.interfaces.clone(),
                workers: c.workers as usize,
                bpf: c.bpf.clone(),
                snaplen,
                buffer_size,
                promisc: c.promisc,
                immediate_mode: c.immediate_mode,
            },
            flow,
            output,
            state_dir: PathBuf::from(&raw.state.dir),
            metrics_listen,
            mdm: MdmConfig {
                inventory: opt_path(&raw.mdm.inventory),
                events: opt_path(&raw.mdm.events),
                catalog: opt_path(&raw.mdm.catalog),
                jamf,
                intune,
                webhook,
            },
            identity_feed: opt_path(&raw.identity.feed),
            identity_socket: opt_path(&raw.identity.socket),
            identity_static,
            daemon_user: {
                let u = raw.daemon.user.trim();
                (!u.is_empty()).then(|| u.to_string())
            },
            fleet,
            coverage_interval: Duration::from_nanos(positive(
                "daemon.coverage_interval",
                &raw.daemon.coverage_interval,
            )?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses() {
        let text = include_str!("../../config/nightjar.example.toml");
        let c = Config::parse(text, "example").unwrap();
        assert_eq!(c.capture.workers, 2);
        assert!(c.mdm.jamf.is_some() && c.mdm.intune.is_some());
        assert_eq!(c.identity_static.len(), 2);
        assert!(c.mdm.webhook.is_some_and(|w| w.micromdm));
        assert_eq!(c.detect.timeline.grace_ns, 30_000_000_000);
        assert_eq!(c.evidence.packets.packets_per_flow, 64);
    }

    #[test]
    fn detect_keys_reach_the_detector_config() {
        let c = Config::parse(
            "[detect]\ngrace = \"45s\"\nepisode_idle = \"2m\"\nalert_threshold = 70\nbaseline_half_life = \"7d\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.detect.timeline.grace_ns, 45_000_000_000);
        assert_eq!(c.detect.timeline.episode_idle_ns, 120_000_000_000);
        assert_eq!(c.detect.alert_threshold, 70);
        assert_eq!(c.detect.half_life_seconds, 7 * 86_400);
        let d = Config::default();
        assert_eq!(
            d.detect.timeline.grace_ns,
            crate::correlate::detect::DetectConfig::default()
                .timeline
                .grace_ns
        );
        assert_eq!(
            d.detect.window_ns,
            crate::correlate::detect::DetectConfig::default().window_ns
        );
        assert!(d.evidence.dir.is_none());
    }

    #[test]
    fn unknown_key_is_an_error() {
        let e = Config::parse("[flow]\nmax_flow = 3\n", "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_flow"), "{e}");
    }

    #[test]
    fn invalid_values() {
        for (text, key) in [
            ("[capture]\nworkers = 0", "capture.workers"),
            ("[flow]\nudp_timeout = \"0s\"", "flow.udp_timeout"),
            ("[flow]\nudp_timeout = \"10\"", "flow.udp_timeout"),
            ("[metrics]\nlisten = \"nowhere\"", "metrics.listen"),
            ("[identity]\nstatic = [{device_id = \"d\"}]", "identity.static"),
            ("[identity]\nstatic = [{ip = \"10.0.0.300\", device_id = \"d\"}]", "identity.static"),
            ("[identity]\nstatic = [{mac = \"02:00:00:00:00:01\", device_id = \"\"}]", "identity.static"),
            ("[mdm.webhook]\nlisten = \"x\"\nsecret_file = \"/f\"", "mdm.webhook.listen"),
            ("[mdm.webhook]\nlisten = \"127.0.0.1:1\"\nsecret_file = \"\"", "mdm.webhook.secret_file"),
            ("[mdm.webhook]\nlisten = \"127.0.0.1:1\"\nsecret_file = \"/f\"\nauth = \"sha1\"", "mdm.webhook.auth"),
            ("[mdm.jamf]\nurl = \"http://example.com\"\nclient_id = \"x\"\nclient_secret_file = \"/f\"", "mdm.jamf.url"),
            ("[detect]\ngrace = \"0s\"", "detect.grace"),
            ("[detect]\nalert_threshold = 101", "detect.alert_threshold"),
            ("[detect]\nwindow = \"1m\"", "detect.window"),
            ("[detect]\nburst_min_flows = 0", "detect.burst_min_flows"),
            ("[evidence]\npacket_snap = 10", "evidence.packet_snap"),
            ("[evidence]\npacket_memory_bytes = 1000", "evidence.packet_memory_bytes"),
            ("[evidence]\npackets_per_flow = 0", "evidence.packets_per_flow"),
        ] {
            let e = Config::parse(text, "t").unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn loopback_http_is_allowed() {
        assert!(ApiUrl::parse("http://127.0.0.1:8080").is_ok());
        assert!(ApiUrl::parse("http://[::1]:8080/x").is_ok());
        assert!(ApiUrl::parse("http://localhost:1").is_ok());
        assert!(ApiUrl::parse("http://10.0.0.1").is_err());
        assert!(ApiUrl::parse("ftp://x").is_err());
    }
}
