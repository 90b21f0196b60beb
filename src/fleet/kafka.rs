//! librdkafka client settings from `[fleet]`: brokers, client id, TLS and SASL.
//! Nothing here talks to a broker.

use super::config::FleetConfig;
use rdkafka::ClientConfig;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("fleet: cannot read the SASL password file {path}: {source}")]
    Password {
        path: String,
        source: std::io::Error,
    },
    #[error("fleet: kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("fleet: correlator: {0}")]
    Consumer(String),
    #[error(transparent)]
    Spool(#[from] super::spool::SpoolError),
    #[error(transparent)]
    Sink(#[from] crate::output::SinkError),
}

/// A relative credential path is looked up in `$CREDENTIALS_DIRECTORY` (systemd).
fn credential_path(p: &Path) -> PathBuf {
    match std::env::var_os("CREDENTIALS_DIRECTORY") {
        Some(dir) if p.is_relative() => Path::new(&dir).join(p),
        _ => p.to_path_buf(),
    }
}

/// The settings every nightjar Kafka client shares.
pub fn client_config(cfg: &FleetConfig) -> Result<ClientConfig, FleetError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", cfg.brokers.join(","))
        .set("client.id", &cfg.client_id)
        // Requests are small and answered one at a time: Nagle's delay would
        // add tens of milliseconds to each fetch and commit round trip.
        .set("socket.nagle.disable", "true")
        .set("security.protocol", cfg.security_protocol.as_str());
    if let Some(ca) = &cfg.tls.ca_file {
        c.set("ssl.ca.location", ca.display().to_string());
    }
    if let Some((cert, key)) = &cfg.tls.cert_key {
        c.set("ssl.certificate.location", cert.display().to_string())
            .set("ssl.key.location", key.display().to_string());
    }
    if let Some(s) = &cfg.sasl {
        let path = credential_path(&s.password_file);
        let password = std::fs::read_to_string(&path).map_err(|source| FleetError::Password {
            path: path.display().to_string(),
            source,
        })?;
        c.set("sasl.mechanism", s.mechanism.as_str())
            .set("sasl.username", &s.username)
            .set("sasl.password", password.trim_end_matches(['\n', '\r']));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_password_is_read_from_its_file() {
        let dir = std::env::temp_dir().join(format!("nightjar-kafka-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pw = dir.join("pw");
        std::fs::write(&pw, "s3cret\n").unwrap();
        let raw: super::super::config::RawFleet = toml::from_str(&format!(
            "role = \"sensor\"\nbrokers = [\"k:9093\"]\nsecurity_protocol = \"sasl_ssl\"\n\
             sasl_mechanism = \"PLAIN\"\nsasl_username = \"u\"\nsasl_password_file = {:?}\n",
            pw.display().to_string()
        ))
        .unwrap();
        let cfg = FleetConfig::from_raw(&raw).unwrap();
        let c = client_config(&cfg).unwrap();
        assert_eq!(c.get("sasl.password"), Some("s3cret"));
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("bootstrap.servers"), Some("k:9093"));
        std::fs::remove_file(&pw).unwrap();
        let e = client_config(&cfg).unwrap_err().to_string();
        assert!(e.contains("SASL password file"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
