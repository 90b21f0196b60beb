//! The versioned wire format of one observation (docs/fleet.md).
//!
//! A message is a 4-byte header, `b"NJ"`, the format's major and minor
//! version, then the observation as JSON (serde's externally tagged enum:
//! `{"Flow": {...}}`). Rules that keep old correlators working:
//!
//! - a minor version only adds: new fields (old readers ignore them) or new
//!   observation kinds (old readers skip them, counted as
//!   [`Decoded::UnknownKind`]);
//! - anything else (a renamed or removed field, a changed meaning, a new enum
//!   value inside a known kind) is a new major version, which an old reader
//!   refuses with [`WireError::NewerMajor`] instead of guessing.
//!
//! Decoding never panics: a message that is not this format, or whose JSON
//! does not hold an observation, is a [`WireError`] the caller counts.

use crate::observation::Observation;

/// The format's major version this build writes (2.0 dropped the per-direction
/// `first_ns`/`last_ns` of a flow's endpoints, which no record used).
pub const MAJOR: u8 = 2;
/// The oldest major this build still reads: what it reads of a 1.x flow is a
/// 2.0 flow plus two fields it ignores.
pub const OLDEST_MAJOR: u8 = 1;
/// The format's minor version this build writes (it reads every minor of [`MAJOR`]).
pub const MINOR: u8 = 0;
/// Bytes before the JSON body.
pub const HEADER_LEN: usize = 4;
const MAGIC: [u8; 2] = *b"NJ";
/// Largest message accepted (and written): librdkafka's default
/// `message.max.bytes` is 1 MB; a flow summary is a few kB.
pub const MAX_MESSAGE_BYTES: usize = 1_000_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("not a nightjar observation message (no NJ header)")]
    NotObservation,
    #[error(
        "observation format {major}.{minor} is newer than this build reads ({MAJOR}.x): \
         upgrade the correlators before the sensors"
    )]
    NewerMajor { major: u8, minor: u8 },
    #[error("observation format {major}.{minor} is older than this build reads ({OLDEST_MAJOR}.x to {MAJOR}.x)")]
    OlderMajor { major: u8, minor: u8 },
    #[error("message of {0} bytes exceeds the bound of {MAX_MESSAGE_BYTES}")]
    TooLarge(usize),
    #[error("observation {major}.{minor} does not decode: {message}")]
    Malformed {
        major: u8,
        minor: u8,
        message: String,
    },
}

impl WireError {
    /// Stable snake_case reason, for counters.
    pub fn reason(&self) -> &'static str {
        match self {
            WireError::NotObservation => "not_observation",
            WireError::NewerMajor { .. } => "newer_major",
            WireError::OlderMajor { .. } => "older_major",
            WireError::TooLarge(_) => "too_large",
            WireError::Malformed { .. } => "malformed",
        }
    }
}

/// What a message held.
#[derive(Debug)]
pub enum Decoded {
    Observation(Observation),
    /// A kind of observation added by a newer minor version: skipped.
    UnknownKind(String),
}

/// Appends the message for `obs` to `out` (cleared first).
pub fn encode(obs: &Observation, out: &mut Vec<u8>) -> Result<(), WireError> {
    out.clear();
    out.extend_from_slice(&MAGIC);
    out.push(MAJOR);
    out.push(MINOR);
    encode_body(obs, out)
}

/// Writes a message with an explicit version (tests of other versions' readers).
#[doc(hidden)]
pub fn encode_versioned(body: &[u8], major: u8, minor: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&MAGIC);
    out.push(major);
    out.push(minor);
    out.extend_from_slice(body);
    out
}

fn encode_body(obs: &Observation, out: &mut Vec<u8>) -> Result<(), WireError> {
    serde_json::to_writer(&mut *out, obs).map_err(|e| WireError::Malformed {
        major: MAJOR,
        minor: MINOR,
        message: e.to_string(),
    })?;
    if out.len() > MAX_MESSAGE_BYTES {
        return Err(WireError::TooLarge(out.len()));
    }
    Ok(())
}

/// Reads one message.
pub fn decode(msg: &[u8]) -> Result<Decoded, WireError> {
    if msg.len() > MAX_MESSAGE_BYTES {
        return Err(WireError::TooLarge(msg.len()));
    }
    let Some((header, body)) = msg.split_first_chunk::<HEADER_LEN>() else {
        return Err(WireError::NotObservation);
    };
    if header[..2] != MAGIC {
        return Err(WireError::NotObservation);
    }
    let (major, minor) = (header[2], header[3]);
    if major > MAJOR {
        return Err(WireError::NewerMajor { major, minor });
    }
    if major < OLDEST_MAJOR {
        return Err(WireError::OlderMajor { major, minor });
    }
    match serde_json::from_slice::<Observation>(body) {
        Ok(o) => Ok(Decoded::Observation(o)),
        Err(e) => {
            // A newer minor may add kinds: a one-key object whose key is not ours.
            if major == MAJOR && minor > MINOR {
                if let Ok(m) = serde_json::from_slice::<
                    std::collections::BTreeMap<String, serde::de::IgnoredAny>,
                >(body)
                {
                    if let Some(kind) = m.keys().next().filter(|k| !KINDS.contains(&k.as_str())) {
                        if m.len() == 1 {
                            return Ok(Decoded::UnknownKind(kind.clone()));
                        }
                    }
                }
            }
            Err(WireError::Malformed {
                major,
                minor,
                message: e.to_string(),
            })
        }
    }
}

/// The observation kinds of format 1.0 (the JSON object's one key).
pub const KINDS: [&str; 4] = ["Flow", "Dns", "Dhcp", "Identity"];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlate::identity::FeedEntry;

    fn feed() -> Observation {
        Observation::Identity(Box::new(FeedEntry {
            ts_ns: 7,
            ip: "10.0.0.2".parse().unwrap(),
            mac: Some([2, 0, 0, 0, 0, 1]),
            device_id: Some("d1".into()),
            udid: None,
            serial: None,
            user: None,
            source: "radius".into(),
            release: false,
        }))
    }

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        encode(&feed(), &mut buf).unwrap();
        assert_eq!(&buf[..4], b"NJ\x02\x00");
        match decode(&buf).unwrap() {
            Decoded::Observation(Observation::Identity(e)) => {
                assert_eq!(e.device_id.as_deref(), Some("d1"));
                assert_eq!(e.ts_ns, 7);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn newer_minor_with_unknown_fields_is_read() {
        let body = br#"{"Identity":{"ts_ns":7,"ip":"10.0.0.2","mac":null,"device_id":"d1","udid":null,"serial":null,"user":null,"source":"vpn","release":false,"tunnel":"ikev2"}}"#;
        let msg = encode_versioned(body, MAJOR, MINOR + 1);
        assert!(matches!(decode(&msg), Ok(Decoded::Observation(_))));
    }

    #[test]
    fn newer_minor_with_unknown_kind_is_skipped() {
        let msg = encode_versioned(br#"{"Wifi":{"ts_ns":1,"rssi":-40}}"#, MAJOR, MINOR + 1);
        match decode(&msg).unwrap() {
            Decoded::UnknownKind(k) => assert_eq!(k, "Wifi"),
            other => panic!("{other:?}"),
        }
        // In the current minor an unknown kind is malformed, not skipped.
        let msg = encode_versioned(br#"{"Wifi":{"ts_ns":1}}"#, MAJOR, MINOR);
        assert_eq!(decode(&msg).unwrap_err().reason(), "malformed");
    }

    #[test]
    fn newer_major_is_refused_clearly() {
        let msg = encode_versioned(br#"{"Flow":{}}"#, MAJOR + 1, 0);
        let e = decode(&msg).unwrap_err();
        assert_eq!(
            e,
            WireError::NewerMajor {
                major: MAJOR + 1,
                minor: 0
            }
        );
        assert!(e.to_string().contains("upgrade the correlators"), "{e}");
        let e = decode(&encode_versioned(b"{}", 0, 9)).unwrap_err();
        assert_eq!(e.reason(), "older_major");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for m in [
            &b""[..],
            b"NJ",
            b"XX\x01\x00{}",
            b"NJ\x01\x00",
            b"NJ\x01\x00{\"Flow\":3}",
        ] {
            assert!(decode(m).is_err(), "{m:?}");
        }
        let big = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert_eq!(decode(&big).unwrap_err().reason(), "too_large");
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = decode(&bytes);
            let mut m = b"NJ\x01\x00".to_vec();
            m.extend_from_slice(&bytes);
            let _ = decode(&m);
        }
    }
}
