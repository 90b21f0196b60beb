//! `[fleet]`: which role this process plays and how it reaches Kafka.
//!
//! Raw keys are read with `deny_unknown_fields` by the config module, then
//! [`FleetConfig::from_raw`] validates them: a sensor or correlator needs at
//! least one broker, topic names follow Kafka's rules, the spool bound is
//! positive, SASL needs its credentials and TLS files must be named. The
//! defaults are the single process (`role = "all"`), which needs no broker.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Smallest spool bound: room for a few maximum-size observation messages, so a
/// short broker outage never drops.
pub const MIN_SPOOL_BYTES: u64 = 1 << 20;

/// Longest Kafka topic name (Kafka's own limit).
pub const MAX_TOPIC_LEN: usize = 249;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawFleet {
    role: String,
    brokers: Vec<String>,
    client_id: String,
    observations_topic: String,
    records_topic: String,
    baselines_topic: String,
    baselines_interval: String,
    group_id: String,
    commit_interval: String,
    session_timeout: String,
    spool_dir: String,
    spool_max_bytes: u64,
    security_protocol: String,
    tls_ca_file: String,
    tls_cert_file: String,
    tls_key_file: String,
    sasl_mechanism: String,
    sasl_username: String,
    sasl_password_file: String,
}

impl Default for RawFleet {
    fn default() -> Self {
        RawFleet {
            role: "all".into(),
            brokers: Vec::new(),
            client_id: "nightjar".into(),
            observations_topic: "nightjar.observations".into(),
            records_topic: "nightjar.records".into(),
            baselines_topic: "nightjar.baselines".into(),
            baselines_interval: "60s".into(),
            group_id: "nightjar-correlators".into(),
            commit_interval: "1s".into(),
            session_timeout: "45s".into(),
            spool_dir: "/var/lib/nightjar/spool".into(),
            spool_max_bytes: 1 << 30,
            security_protocol: "plaintext".into(),
            tls_ca_file: String::new(),
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
            sasl_mechanism: String::new(),
            sasl_username: String::new(),
            sasl_password_file: String::new(),
        }
    }
}

/// What this process does with the observation stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Capture and correlate in one process (no broker).
    All,
    /// Capture, decode, flows and identity; observations go to Kafka.
    Sensor,
    /// Observations from Kafka; attribution, detection and records.
    Correlator,
}

/// How the Kafka connection is secured (librdkafka's `security.protocol`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }
    fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }
    fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// SASL mechanisms this build supports (GSSAPI/Kerberos is not built in).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl SaslMechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// TLS files for `ssl` / `sasl_ssl` (empty: the system trust store, no client certificate).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key, both or neither.
    pub cert_key: Option<(PathBuf, PathBuf)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sasl {
    pub mechanism: SaslMechanism,
    pub username: String,
    /// The password is read from this file when the client starts (a relative
    /// path is looked up in `$CREDENTIALS_DIRECTORY`).
    pub password_file: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetConfig {
    pub role: Role,
    /// `host:port` bootstrap brokers; non-empty unless `role` is `All`.
    pub brokers: Vec<String>,
    pub client_id: String,
    pub observations_topic: String,
    pub records_topic: String,
    /// Fleet-wide baselines on a compacted topic; `None` when
    /// `baselines_topic = ""` (each correlator keeps its own).
    pub baselines: Option<BaselineSharing>,
    pub group_id: String,
    /// How often a correlator flushes its records and commits its offsets.
    pub commit_interval_ns: u64,
    /// How long the group waits for a silent correlator before giving its
    /// partitions to the others (librdkafka's `session.timeout.ms`).
    pub session_timeout_ms: u64,
    pub spool_dir: PathBuf,
    /// Bound on the spool directory's size; a sensor drops (and counts)
    /// observations that would exceed it.
    pub spool_max_bytes: u64,
    pub security_protocol: SecurityProtocol,
    pub tls: TlsFiles,
    pub sasl: Option<Sasl>,
}

/// Where and how often correlators share their baselines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaselineSharing {
    /// The compacted topic of per-partition baseline pieces.
    pub topic: String,
    /// How often a correlator publishes what it learned and merges the others'.
    pub interval_ns: u64,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig::from_raw(&RawFleet::default()).expect("defaults are valid")
    }
}

/// Kafka's rule for topic names: 1..=249 of `[A-Za-z0-9._-]`, not "." or "..".
pub fn valid_topic(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_TOPIC_LEN || name == "." || name == ".." {
        return Err(format!(
            "{name:?} is not a topic name (1..={MAX_TOPIC_LEN} characters, not \".\" or \"..\")"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{name:?}: {c:?} is not allowed in a topic name (A-Z a-z 0-9 . _ -)"
        ));
    }
    Ok(())
}

/// A broker address `host:port` with a numeric port.
fn valid_broker(b: &str) -> Result<(), String> {
    let Some((host, port)) = b.rsplit_once(':') else {
        return Err(format!("{b:?} is not host:port"));
    };
    if host.trim_matches(['[', ']']).is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(format!("{b:?} is not host:port"));
    }
    Ok(())
}

impl FleetConfig {
    /// Validates `[fleet]`; errors name the key (`fleet.` prefix added by the caller).
    pub fn from_raw(raw: &RawFleet) -> Result<FleetConfig, (&'static str, String)> {
        let role = match raw.role.as_str() {
            "all" => Role::All,
            "sensor" => Role::Sensor,
            "correlator" => Role::Correlator,
            r => {
                return Err((
                    "fleet.role",
                    format!("{r:?} is not one of \"all\", \"sensor\", \"correlator\""),
                ))
            }
        };
        for b in &raw.brokers {
            valid_broker(b).map_err(|m| ("fleet.brokers", m))?;
        }
        if role != Role::All && raw.brokers.is_empty() {
            return Err((
                "fleet.brokers",
                format!("role {:?} needs at least one broker", raw.role),
            ));
        }
        if raw.client_id.trim().is_empty() {
            return Err(("fleet.client_id", "is empty".into()));
        }
        valid_topic(&raw.observations_topic).map_err(|m| ("fleet.observations_topic", m))?;
        valid_topic(&raw.records_topic).map_err(|m| ("fleet.records_topic", m))?;
        if raw.observations_topic == raw.records_topic {
            return Err((
                "fleet.records_topic",
                "must differ from fleet.observations_topic".into(),
            ));
        }
        let baselines = if raw.baselines_topic.is_empty() {
            None
        } else {
            valid_topic(&raw.baselines_topic).map_err(|m| ("fleet.baselines_topic", m))?;
            if raw.baselines_topic == raw.observations_topic
                || raw.baselines_topic == raw.records_topic
            {
                return Err((
                    "fleet.baselines_topic",
                    "must differ from the observations and records topics".into(),
                ));
            }
            let every = crate::config::parse_duration(&raw.baselines_interval)
                .map_err(|m| ("fleet.baselines_interval", m))?;
            if every.is_zero() {
                return Err((
                    "fleet.baselines_interval",
                    "must be greater than zero".into(),
                ));
            }
            Some(BaselineSharing {
                topic: raw.baselines_topic.clone(),
                interval_ns: u64::try_from(every.as_nanos()).unwrap_or(u64::MAX),
            })
        };
        if raw.group_id.trim().is_empty() {
            return Err(("fleet.group_id", "is empty".into()));
        }
        let commit = crate::config::parse_duration(&raw.commit_interval)
            .map_err(|m| ("fleet.commit_interval", m))?;
        if commit.is_zero() {
            return Err(("fleet.commit_interval", "must be greater than zero".into()));
        }
        let session = crate::config::parse_duration(&raw.session_timeout)
            .map_err(|m| ("fleet.session_timeout", m))?;
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&session) {
            return Err((
                "fleet.session_timeout",
                format!("{} is out of range 1s..=1h", raw.session_timeout),
            ));
        }
        if raw.spool_dir.trim().is_empty() {
            return Err(("fleet.spool_dir", "is empty".into()));
        }
        if raw.spool_max_bytes < MIN_SPOOL_BYTES {
            return Err((
                "fleet.spool_max_bytes",
                format!(
                    "{} is below the minimum {} (one spool segment)",
                    raw.spool_max_bytes, MIN_SPOOL_BYTES
                ),
            ));
        }
        let security_protocol = match raw.security_protocol.as_str() {
            "plaintext" => SecurityProtocol::Plaintext,
            "ssl" => SecurityProtocol::Ssl,
            "sasl_plaintext" => SecurityProtocol::SaslPlaintext,
            "sasl_ssl" => SecurityProtocol::SaslSsl,
            p => {
                return Err((
                    "fleet.security_protocol",
                    format!(
                    "{p:?} is not one of \"plaintext\", \"ssl\", \"sasl_plaintext\", \"sasl_ssl\""
                ),
                ))
            }
        };
        let path = |s: &str| (!s.trim().is_empty()).then(|| PathBuf::from(s));
        let tls_given = [&raw.tls_ca_file, &raw.tls_cert_file, &raw.tls_key_file]
            .iter()
            .any(|s| !s.trim().is_empty());
        if tls_given && !security_protocol.tls() {
            return Err((
                "fleet.security_protocol",
                "TLS files are set but the protocol is not \"ssl\" or \"sasl_ssl\"".into(),
            ));
        }
        let cert_key = match (path(&raw.tls_cert_file), path(&raw.tls_key_file)) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (Some(_), None) => {
                return Err((
                    "fleet.tls_key_file",
                    "is needed with fleet.tls_cert_file".into(),
                ))
            }
            (None, Some(_)) => {
                return Err((
                    "fleet.tls_cert_file",
                    "is needed with fleet.tls_key_file".into(),
                ))
            }
        };
        let sasl_given = [
            &raw.sasl_mechanism,
            &raw.sasl_username,
            &raw.sasl_password_file,
        ]
        .iter()
        .any(|s| !s.trim().is_empty());
        let sasl = if security_protocol.sasl() {
            let mechanism = match raw.sasl_mechanism.as_str() {
                "PLAIN" => SaslMechanism::Plain,
                "SCRAM-SHA-256" => SaslMechanism::ScramSha256,
                "SCRAM-SHA-512" => SaslMechanism::ScramSha512,
                m => {
                    return Err((
                        "fleet.sasl_mechanism",
                        format!(
                            "{m:?} is not one of \"PLAIN\", \"SCRAM-SHA-256\", \"SCRAM-SHA-512\""
                        ),
                    ))
                }
            };
            if raw.sasl_username.trim().is_empty() {
                return Err(("fleet.sasl_username", "is empty".into()));
            }
            let Some(password_file) = path(&raw.sasl_password_file) else {
                return Err(("fleet.sasl_password_file", "is empty".into()));
            };
            Some(Sasl {
                mechanism,
                username: raw.sasl_username.clone(),
                password_file,
            })
        } else if sasl_given {
            return Err((
                "fleet.security_protocol",
                "SASL keys are set but the protocol is not \"sasl_plaintext\" or \"sasl_ssl\""
                    .into(),
            ));
        } else {
            None
        };
        Ok(FleetConfig {
            role,
            brokers: raw.brokers.clone(),
            client_id: raw.client_id.clone(),
            observations_topic: raw.observations_topic.clone(),
            records_topic: raw.records_topic.clone(),
            baselines,
            group_id: raw.group_id.clone(),
            commit_interval_ns: u64::try_from(commit.as_nanos()).unwrap_or(u64::MAX),
            session_timeout_ms: session.as_millis() as u64,
            spool_dir: PathBuf::from(&raw.spool_dir),
            spool_max_bytes: raw.spool_max_bytes,
            security_protocol,
            tls: TlsFiles {
                ca_file: path(&raw.tls_ca_file),
                cert_key,
            },
            sasl,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FleetConfig, (&'static str, String)> {
        let raw: RawFleet = toml::from_str(text).map_err(|e| ("toml", e.to_string()))?;
        FleetConfig::from_raw(&raw)
    }

    #[test]
    fn defaults_are_the_single_process() {
        let c = FleetConfig::default();
        assert_eq!(c.role, Role::All);
        assert!(c.brokers.is_empty() && c.sasl.is_none());
    }

    #[test]
    fn sensor_with_sasl_ssl() {
        let c = parse(
            "role = \"sensor\"\nbrokers = [\"kafka1:9093\", \"[::1]:9093\"]\n\
             security_protocol = \"sasl_ssl\"\ntls_ca_file = \"/etc/ca.pem\"\n\
             sasl_mechanism = \"SCRAM-SHA-512\"\nsasl_username = \"u\"\nsasl_password_file = \"p\"\n",
        )
        .unwrap();
        assert_eq!(c.role, Role::Sensor);
        assert_eq!(c.security_protocol, SecurityProtocol::SaslSsl);
        assert_eq!(c.sasl.unwrap().mechanism, SaslMechanism::ScramSha512);
        assert_eq!(c.tls.ca_file, Some(PathBuf::from("/etc/ca.pem")));
    }

    #[test]
    fn invalid_values_name_their_key() {
        for (text, key) in [
            ("role = \"edge\"", "fleet.role"),
            ("role = \"sensor\"", "fleet.brokers"),
            ("brokers = [\"kafka\"]", "fleet.brokers"),
            ("brokers = [\"kafka:0\"]", "fleet.brokers"),
            ("observations_topic = \"a b\"", "fleet.observations_topic"),
            ("records_topic = \"nightjar.observations\"", "fleet.records_topic"),
            ("group_id = \" \"", "fleet.group_id"),
            ("commit_interval = \"0s\"", "fleet.commit_interval"),
            ("baselines_topic = \"nightjar.records\"", "fleet.baselines_topic"),
            ("baselines_topic = \"a b\"", "fleet.baselines_topic"),
            ("baselines_interval = \"0s\"", "fleet.baselines_interval"),
            ("session_timeout = \"2h\"", "fleet.session_timeout"),
            ("spool_max_bytes = 10", "fleet.spool_max_bytes"),
            ("security_protocol = \"tls\"", "fleet.security_protocol"),
            ("tls_ca_file = \"/ca\"", "fleet.security_protocol"),
            ("security_protocol = \"ssl\"\ntls_cert_file = \"/c\"", "fleet.tls_key_file"),
            ("security_protocol = \"sasl_plaintext\"\nsasl_mechanism = \"GSSAPI\"", "fleet.sasl_mechanism"),
            ("security_protocol = \"sasl_plaintext\"\nsasl_mechanism = \"PLAIN\"\nsasl_password_file = \"/p\"", "fleet.sasl_username"),
            ("sasl_username = \"u\"", "fleet.security_protocol"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.0, key, "{text}: {e:?}");
        }
    }

    #[test]
    fn topic_names() {
        assert!(valid_topic("nightjar.records-v1_x").is_ok());
        assert!(valid_topic("..").is_err());
        assert!(valid_topic(&"a".repeat(250)).is_err());
    }
}
