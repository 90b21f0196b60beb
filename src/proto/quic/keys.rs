//! Initial packet protection keys (RFC 9001 section 5.2; RFC 9369 section 3.3
//! for version 2; the draft salts for old captures), derived with `ring`'s
//! HKDF-SHA256, AES-128-GCM and AES header protection.
//!
//! Invariants: keys exist only for versions listed in [`version_params`];
//! both directions come from the one DCID the caller passes (the DCID of the
//! client's first Initial, or of its first Initial after a Retry), so a flow
//! derives once and caches the [`InitialKeys`].

use std::fmt;

use ring::aead::{self, quic};
use ring::hkdf;

use super::header::MAX_CID_LEN;
use super::QuicVersion;

/// Initial salt of QUIC v1 and drafts 33-34 (RFC 9001 section 5.2).
const SALT_V1: [u8; 20] = [
    0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad,
    0xcc, 0xbb, 0x7f, 0x0a,
];
/// Initial salt of QUIC v2 (RFC 9369 section 3.3.1).
const SALT_V2: [u8; 20] = [
    0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb,
    0xf9, 0xbd, 0x2e, 0xd9,
];
/// Initial salt of drafts 29-32 (draft-ietf-quic-tls-29 section 5.2).
const SALT_DRAFT_29: [u8; 20] = [
    0xaf, 0xbf, 0xec, 0x28, 0x99, 0x93, 0xd2, 0x4c, 0x9e, 0x97, 0x86, 0xf1, 0x9c, 0x61, 0x11, 0xe0,
    0x43, 0x90, 0xa8, 0x99,
];
/// Initial salt of drafts 23-28 (and mvfst's draft-27 based versions).
const SALT_DRAFT_23: [u8; 20] = [
    0xc3, 0xee, 0xf7, 0x12, 0xc7, 0x2e, 0xbb, 0x5a, 0x11, 0xa7, 0xd2, 0x43, 0x2b, 0xb4, 0x63, 0x65,
    0xbe, 0xf9, 0xf5, 0x02,
];
/// Initial salt of draft 22 (and mvfst's draft-22 based version).
const SALT_DRAFT_22: [u8; 20] = [
    0x7f, 0xbc, 0xdb, 0x0e, 0x7c, 0x66, 0xbb, 0xe9, 0x19, 0x3a, 0x96, 0xcd, 0x21, 0x51, 0x9e, 0xbd,
    0x7a, 0x02, 0x64, 0x4a,
];

/// AES-128-GCM nonce (and IV) length.
const IV_LEN: usize = 12;
/// AES-128 key length, for both packet and header protection.
const KEY_LEN: usize = 16;
/// SHA-256 output length: the size of every Initial secret.
const SECRET_LEN: usize = 32;

/// What differs between versions for Initial protection.
#[derive(Debug, Clone, Copy)]
pub(super) struct VersionParams {
    salt: &'static [u8; 20],
    /// HKDF labels for key, iv and hp ("quic ..." or "quicv2 ...").
    labels: [&'static [u8]; 3],
}

const LABELS_V1: [&[u8]; 3] = [b"quic key", b"quic iv", b"quic hp"];
const LABELS_V2: [&[u8]; 3] = [b"quicv2 key", b"quicv2 iv", b"quicv2 hp"];

/// The Initial parameters of a version, `None` when unknown.
pub(super) fn version_params(version: QuicVersion) -> Option<VersionParams> {
    let salt = match version.0 {
        0x0000_0001 | 0xff00_0021..=0xff00_0022 => &SALT_V1,
        0x6b33_43cf => {
            return Some(VersionParams {
                salt: &SALT_V2,
                labels: LABELS_V2,
            });
        }
        0xff00_001d..=0xff00_0020 => &SALT_DRAFT_29,
        0xff00_0017..=0xff00_001c | 0xface_b002 | 0xface_b00e => &SALT_DRAFT_23,
        0xff00_0016 | 0xface_b001 => &SALT_DRAFT_22,
        _ => return None,
    };
    Some(VersionParams {
        salt,
        labels: LABELS_V1,
    })
}

/// Raw keying material of one direction (kept for the RFC vector tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DirectionSecrets {
    pub(super) secret: [u8; SECRET_LEN],
    pub(super) key: [u8; KEY_LEN],
    pub(super) iv: [u8; IV_LEN],
    pub(super) hp: [u8; KEY_LEN],
}

/// `ring`'s HKDF wants the output length as a type.
struct OutLen(usize);

impl hkdf::KeyType for OutLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label with an empty context (RFC 8446 section 7.1).
fn expand_label<const N: usize>(prk: &hkdf::Prk, label: &[u8]) -> Option<[u8; N]> {
    const PREFIX: &[u8] = b"tls13 ";
    let out_len = u16::try_from(N).ok()?.to_be_bytes();
    let label_len = [u8::try_from(PREFIX.len() + label.len()).ok()?];
    let info: [&[u8]; 5] = [&out_len, &label_len, PREFIX, label, &[0]];
    let mut out = [0; N];
    prk.expand(&info, OutLen(N)).ok()?.fill(&mut out).ok()?;
    Some(out)
}

fn direction_secrets(
    initial: &hkdf::Prk,
    direction_label: &[u8],
    labels: [&[u8]; 3],
) -> Option<DirectionSecrets> {
    let secret = expand_label::<SECRET_LEN>(initial, direction_label)?;
    let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, &secret);
    let [key_label, iv_label, hp_label] = labels;
    Some(DirectionSecrets {
        secret,
        key: expand_label(&prk, key_label)?,
        iv: expand_label(&prk, iv_label)?,
        hp: expand_label(&prk, hp_label)?,
    })
}

/// Client and server secrets for `version` from the client's DCID.
pub(super) fn derive_secrets(
    version: QuicVersion,
    dcid: &[u8],
) -> Option<(DirectionSecrets, DirectionSecrets)> {
    let params = version_params(version)?;
    if dcid.len() > MAX_CID_LEN {
        return None;
    }
    let initial = hkdf::Salt::new(hkdf::HKDF_SHA256, params.salt).extract(dcid);
    Some((
        direction_secrets(&initial, b"client in", params.labels)?,
        direction_secrets(&initial, b"server in", params.labels)?,
    ))
}

/// Packet and header protection keys of one direction.
pub struct DirectionKeys {
    key: aead::LessSafeKey,
    iv: [u8; IV_LEN],
    hp: quic::HeaderProtectionKey,
}

impl DirectionKeys {
    fn new(s: &DirectionSecrets) -> Option<Self> {
        Some(Self {
            key: aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, &s.key).ok()?),
            iv: s.iv,
            hp: quic::HeaderProtectionKey::new(&quic::AES_128, &s.hp).ok()?,
        })
    }

    /// The 5-byte header-protection mask for a 16-byte sample.
    pub(super) fn header_mask(&self, sample: &[u8]) -> Option<[u8; 5]> {
        self.hp.new_mask(sample).ok()
    }

    /// Encrypts `in_out` in place and appends the tag (test support: building Initials).
    #[cfg(test)]
    pub(super) fn seal(&self, pn: u64, aad: &[u8], in_out: &mut Vec<u8>) {
        let mut nonce = self.iv;
        for (n, p) in nonce.iter_mut().skip(IV_LEN - 8).zip(pn.to_be_bytes()) {
            *n ^= p;
        }
        let nonce = aead::Nonce::assume_unique_for_key(nonce);
        self.key
            .seal_in_place_append_tag(nonce, aead::Aad::from(aad), in_out)
            .expect("sealing a test packet");
    }

    /// Decrypts `in_out` (ciphertext then tag) in place with nonce = iv XOR pn;
    /// returns the plaintext, or `None` when the tag does not verify.
    pub(super) fn open<'b>(
        &self,
        pn: u64,
        aad: &[u8],
        in_out: &'b mut [u8],
    ) -> Option<&'b mut [u8]> {
        let mut nonce = self.iv;
        for (n, p) in nonce.iter_mut().skip(IV_LEN - 8).zip(pn.to_be_bytes()) {
            *n ^= p;
        }
        let nonce = aead::Nonce::assume_unique_for_key(nonce);
        self.key
            .open_in_place(nonce, aead::Aad::from(aad), in_out)
            .ok()
    }
}

/// The Initial keys of one connection, both directions; derive once per flow.
pub struct InitialKeys {
    version: QuicVersion,
    client: DirectionKeys,
    server: DirectionKeys,
}

impl InitialKeys {
    /// Derives both directions' keys from the DCID of the client's first
    /// Initial. `None` for an unknown version or a DCID over 20 bytes.
    pub fn derive(version: QuicVersion, dcid: &[u8]) -> Option<Self> {
        let (client, server) = derive_secrets(version, dcid)?;
        Some(Self {
            version,
            client: DirectionKeys::new(&client)?,
            server: DirectionKeys::new(&server)?,
        })
    }

    /// The version these keys belong to.
    pub fn version(&self) -> QuicVersion {
        self.version
    }

    /// The keys protecting packets sent by the client (`true`) or the server.
    pub fn direction(&self, from_client: bool) -> &DirectionKeys {
        if from_client {
            &self.client
        } else {
            &self.server
        }
    }
}

impl fmt::Debug for InitialKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InitialKeys")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for DirectionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectionKeys").finish_non_exhaustive()
    }
}
