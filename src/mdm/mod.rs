//! The vendor-neutral MDM model and its file formats.
//!
//! Owns: devices and their installed apps ([`Inventory`]), app posture and domains
//! ([`Catalog`], [`AppProfile`]), lifecycle events ([`LifecycleEvent`]), the inventory
//! diff that derives events, the file loaders (`--inventory`, `--events`, `--catalog`)
//! and the importers (App Privacy Report, Info.plist + entitlements); [`adapter`] pulls
//! the same model from vendor APIs and webhooks.
//!
//! Invariants:
//! - Everything here is built from untrusted files (or, later, vendor API adapters that
//!   produce the same types) and validated once: a value of a model type never holds an
//!   unparsed MAC, an unvalidated domain or an empty bundle id.
//! - An [`Inventory`] or a [`Catalog`] is read-only once built; lookups never allocate
//!   more than one lowercased copy of the queried name.
//! - Input files are read with a size bound; bad input is an [`MdmError`] that names
//!   the file and the line (or JSON path), never a panic.
//! - Time is nanoseconds since the Unix epoch (`u64`), passed in, never read from a clock.

pub mod adapter;
mod catalog;
mod events;
mod import;
mod inventory;
mod model;
mod plist;
mod time;

pub use catalog::{
    apps_to_catalog_json, load_catalog, AppProfile, AssociatedDomain, BackgroundMode, Catalog,
    CatalogBuilder, CatalogFormat, CatalogStats, DomainMatch, DomainPattern, NetworkExtension,
    Owner, SharedSdk, MAX_CATALOG_FILES, MAX_DOMAIN_LEN, MAX_LABEL_LEN, MAX_PERSISTENCE_SCORE,
};
pub use events::{
    load_events, read_events, Confidence, EventKind, LifecycleEvent, MAX_EVENTS_PER_FILE,
};
pub use import::{
    import_privacy_report, profile_from_plists, PrivacyReport, PrivacyReportOptions,
    PrivacyReportStats,
};
pub use inventory::{diff, inventory_to_json, load_inventory, parse_inventory};
pub use model::{
    Device, Fingerprint, InstalledApp, Inventory, MacAddr, Ownership, MAX_BUNDLE_ID_LEN,
};
pub use plist::{parse_plist, PlistValue, MAX_PLIST_DEPTH};
pub use time::{format_rfc3339, parse_rfc3339};

use std::io::{BufRead, Read};
use std::path::Path;

/// Largest inventory, catalog or plist file read into memory (64 MiB): a fleet of
/// 100 000 devices with 100 apps each is about 40 MiB of JSON.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Longest NDJSON line accepted (64 KiB): one event or one privacy-report entry is a
/// few hundred bytes; a longer line is corrupt input, not data.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Every error of the `mdm` module. Each renders as one line naming its origin
/// (a file path, or an adapter name) and where in it the problem is.
#[derive(Debug, thiserror::Error)]
pub enum MdmError {
    /// The file could not be read.
    #[error("{origin}: {source}")]
    Io {
        /// File path.
        origin: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The file (or one line of it) exceeds a documented bound.
    #[error("{origin}: {what} larger than {limit} bytes")]
    TooLarge {
        /// File path.
        origin: String,
        /// "file" or "line N".
        what: String,
        /// The bound that was exceeded.
        limit: u64,
    },
    /// A syntax or shape error at a known position (JSON, TOML, NDJSON, plist).
    #[error("{origin}:{line}:{column}: {msg}")]
    Syntax {
        /// File path.
        origin: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        msg: String,
    },
    /// A well-formed NDJSON line whose content is invalid.
    #[error("{origin}:{line}: {msg}")]
    Line {
        /// File path.
        origin: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// Well-formed input whose content is invalid, located by a path like
    /// `devices[2].wifi_mac`.
    #[error("{origin}: {at}: {msg}")]
    Invalid {
        /// File path or adapter name.
        origin: String,
        /// Path of the offending value inside the document.
        at: String,
        /// What is wrong.
        msg: String,
    },
}

/// Reads a whole file as UTF-8, refusing files larger than [`MAX_FILE_BYTES`].
fn read_text(path: &Path) -> Result<String, MdmError> {
    let origin = path.display().to_string();
    let io = |source| MdmError::Io {
        origin: origin.clone(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(MdmError::TooLarge {
            origin,
            what: "file".into(),
            limit: MAX_FILE_BYTES,
        });
    }
    String::from_utf8(bytes).map_err(|e| MdmError::Invalid {
        origin,
        at: format!("byte {}", e.utf8_error().valid_up_to()),
        msg: "not UTF-8".into(),
    })
}

/// Calls `each(line_number, line)` for every non-blank line of an NDJSON stream.
/// Lines longer than [`MAX_LINE_BYTES`] or not UTF-8 are errors naming the line.
fn for_each_line<R: BufRead>(
    mut reader: R,
    origin: &str,
    mut each: impl FnMut(usize, &str) -> Result<(), MdmError>,
) -> Result<(), MdmError> {
    let mut buf = Vec::new();
    let mut line_no = 0usize;
    loop {
        buf.clear();
        line_no += 1;
        let n = reader
            .by_ref()
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|source| MdmError::Io {
                origin: origin.to_string(),
                source,
            })?;
        if n == 0 {
            return Ok(());
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        } else if buf.len() > MAX_LINE_BYTES {
            return Err(MdmError::TooLarge {
                origin: origin.to_string(),
                what: format!("line {line_no}"),
                limit: MAX_LINE_BYTES as u64,
            });
        }
        let line = std::str::from_utf8(&buf).map_err(|_| MdmError::Line {
            origin: origin.to_string(),
            line: line_no,
            msg: "not UTF-8".into(),
        })?;
        let line = line.trim();
        if !line.is_empty() {
            each(line_no, line)?;
        }
    }
}

/// Converts a `serde_json` error into [`MdmError::Syntax`]. `line_no` overrides the
/// line for NDJSON, where serde_json only sees one line.
fn json_error(origin: &str, line_no: Option<usize>, err: &serde_json::Error) -> MdmError {
    // serde_json's Display appends " at line L column C"; keep only the message.
    let text = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    let msg = text.strip_suffix(&suffix).unwrap_or(&text);
    // serde quotes unknown keys as they are: escaped, so the error stays one line.
    let msg = crate::proto::text::escape_name(msg.as_bytes());
    MdmError::Syntax {
        origin: origin.to_string(),
        line: line_no.unwrap_or(err.line()),
        column: err.column(),
        msg,
    }
}

/// Converts a byte offset in `text` into a 1-based (line, column).
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
