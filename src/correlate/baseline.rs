//! Baselines: streaming quantile sketches of background-episode features per app
//! (fleet-wide), per app category and per device group, with warm-up and decay,
//! persisted as JSON (`replay --baseline FILE`).
//!
//! The sketch is a fixed-ratio logarithmic histogram (the DDSketch idea): a positive
//! value `x` falls in bucket `ceil(ln x / ln γ)` with `γ = (1+α)/(1−α)`, so any
//! quantile is answered within relative error α; zero and values below
//! [`MIN_POSITIVE`] share one zero bucket. Two sketches merge exactly (bucket counts
//! add) once decayed to the same reference time. Decay is exponential in packet time
//! with a configurable half-life, applied lazily when a sketch is touched.
//!
//! Invariants: a sketch holds at most [`MAX_BUCKETS`] buckets (beyond, the lowest
//! buckets are collapsed into their neighbour, which only coarsens the low tail);
//! the store holds at most [`MAX_SCOPES`] scopes (new scopes beyond are refused and
//! counted); a loaded file is validated (bounds, finite non-negative counts) and
//! rejected whole if bad.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Relative accuracy of quantiles (2 %).
pub const ALPHA: f64 = 0.02;
/// Smallest value distinguished from zero (features are bytes, seconds, counts, ratios).
pub const MIN_POSITIVE: f64 = 1e-3;
/// Buckets per sketch (1024): with α = 2 % this spans 1e-3 … 1e14 without collapsing.
pub const MAX_BUCKETS: usize = 1024;
/// Scopes (app, category, group) × features kept (20 000 scopes): a fleet's app
/// catalog, its categories and its MDM groups.
pub const MAX_SCOPES: usize = 20_000;
/// Largest baseline file read (64 MiB).
pub const MAX_BASELINE_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// Format version written and accepted.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Invalid { path: String, msg: String },
}

fn gamma_ln() -> f64 {
    ((1.0 + ALPHA) / (1.0 - ALPHA)).ln()
}

fn bucket_of(x: f64) -> Option<i32> {
    if x.is_nan() || x < MIN_POSITIVE || !x.is_finite() {
        return None;
    }
    Some((x.ln() / gamma_ln()).ceil() as i32)
}

/// Representative value of a bucket (its geometric middle).
fn bucket_value(i: i32) -> f64 {
    let g = gamma_ln();
    ((f64::from(i) - 0.5) * g).exp()
}

/// One feature's sketch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sketch {
    /// Packet time (ns) the counts are decayed to.
    pub as_of_ns: u64,
    /// Weight of zero (and sub-[`MIN_POSITIVE`]) values.
    pub zero: f64,
    /// bucket index → weight.
    pub buckets: BTreeMap<i32, f64>,
}

impl Sketch {
    /// Total weight.
    pub fn count(&self) -> f64 {
        self.zero + self.buckets.values().sum::<f64>()
    }

    /// Decays the counts to `now_ns` (never backwards).
    pub fn decay_to(&mut self, now_ns: u64, half_life_ns: u64) {
        if now_ns <= self.as_of_ns || half_life_ns == 0 {
            self.as_of_ns = self.as_of_ns.max(now_ns);
            return;
        }
        let dt = (now_ns - self.as_of_ns) as f64 / half_life_ns as f64;
        let f = 0.5f64.powf(dt);
        self.zero *= f;
        for v in self.buckets.values_mut() {
            *v *= f;
        }
        self.as_of_ns = now_ns;
    }

    /// Adds one value with weight 1 at `now_ns`.
    pub fn insert(&mut self, x: f64, now_ns: u64, half_life_ns: u64) {
        self.decay_to(now_ns, half_life_ns);
        match bucket_of(x) {
            None => self.zero += 1.0,
            Some(i) => *self.buckets.entry(i).or_insert(0.0) += 1.0,
        }
        self.collapse();
    }

    /// Merges `other` in (exact: both are decayed to the later reference time first).
    pub fn merge(&mut self, other: &Sketch, half_life_ns: u64) {
        let t = self.as_of_ns.max(other.as_of_ns);
        self.decay_to(t, half_life_ns);
        let mut o = other.clone();
        o.decay_to(t, half_life_ns);
        self.zero += o.zero;
        for (i, v) in o.buckets {
            *self.buckets.entry(i).or_insert(0.0) += v;
        }
        self.collapse();
    }

    fn collapse(&mut self) {
        while self.buckets.len() > MAX_BUCKETS {
            let mut it = self.buckets.iter();
            let (Some((&lo, &w)), Some((&next, _))) = (it.next(), it.next()) else {
                return;
            };
            self.buckets.remove(&lo);
            *self.buckets.entry(next).or_insert(0.0) += w;
        }
    }

    /// Share of the weight at or below `x` (values in the same bucket count half), 0–1.
    pub fn percentile(&self, x: f64) -> Option<f64> {
        let total = self.count();
        if total <= 0.0 {
            return None;
        }
        let below = match bucket_of(x) {
            None => self.zero * 0.5,
            Some(b) => {
                self.zero
                    + self.buckets.range(..b).map(|(_, v)| v).sum::<f64>()
                    + self.buckets.get(&b).copied().unwrap_or(0.0) * 0.5
            }
        };
        Some((below / total).clamp(0.0, 1.0))
    }

    /// The value at quantile `q` (0–1), within relative error [`ALPHA`].
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total <= 0.0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total;
        if rank <= self.zero {
            return Some(0.0);
        }
        let mut acc = self.zero;
        for (&i, &v) in &self.buckets {
            acc += v;
            if acc >= rank {
                return Some(bucket_value(i));
            }
        }
        self.buckets.keys().next_back().map(|&i| bucket_value(i))
    }

    fn validate(&self) -> Result<(), String> {
        if self.buckets.len() > MAX_BUCKETS {
            return Err(format!("sketch with more than {MAX_BUCKETS} buckets"));
        }
        let ok = |v: f64| v.is_finite() && v >= 0.0;
        if !ok(self.zero) || !self.buckets.values().all(|&v| ok(v)) {
            return Err("negative or non-finite count".into());
        }
        Ok(())
    }
}

/// The baseline of one scope: one sketch per feature.
pub type ScopeBaseline = BTreeMap<String, Sketch>;

/// Per-app memory of destinations and JA4s with their first-seen time, persisted with
/// the baselines so "new for this app" means new against history, not this run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppMemory {
    /// "d:<destination>" or "j:<ja4>" → first seen (ns).
    pub first_seen: BTreeMap<String, u64>,
}

/// Entries of one app's memory (1024): destinations and stacks of one app.
pub const MAX_MEMORY_PER_APP: usize = 1024;

/// All baselines (the persisted state).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baselines {
    pub version: u32,
    /// Half-life of the decay, seconds.
    pub half_life_seconds: u64,
    /// Scope (`app:<bundle>`, `category:<name>`, `group:<name>`) → feature → sketch.
    pub scopes: BTreeMap<String, ScopeBaseline>,
    /// bundle id → destinations and JA4s seen.
    #[serde(default)]
    pub apps: BTreeMap<String, AppMemory>,
    /// Scopes or memory entries refused because a bound was reached.
    #[serde(default)]
    pub refused: u64,
}

impl Baselines {
    pub fn new(half_life_seconds: u64) -> Baselines {
        Baselines {
            version: FORMAT_VERSION,
            half_life_seconds,
            ..Baselines::default()
        }
    }

    fn half_life_ns(&self) -> u64 {
        self.half_life_seconds.saturating_mul(1_000_000_000)
    }

    /// Adds one episode's feature values to a scope.
    pub fn insert(&mut self, scope: &str, features: &[(&str, f64)], now_ns: u64) {
        let hl = self.half_life_ns();
        if !self.scopes.contains_key(scope) && self.scopes.len() >= MAX_SCOPES {
            self.refused += 1;
            return;
        }
        let sb = self.scopes.entry(scope.to_string()).or_default();
        for (name, v) in features {
            sb.entry((*name).to_string())
                .or_default()
                .insert(*v, now_ns, hl);
        }
    }

    /// The sketch of a feature in a scope, decayed to `now_ns` (a copy).
    pub fn sketch(&self, scope: &str, feature: &str, now_ns: u64) -> Option<Sketch> {
        let mut s = self.scopes.get(scope)?.get(feature)?.clone();
        s.decay_to(now_ns, self.half_life_ns());
        Some(s)
    }

    /// Merges another store (same half-life) exactly.
    pub fn merge(&mut self, other: &Baselines) {
        let hl = self.half_life_ns();
        for (scope, feats) in &other.scopes {
            if !self.scopes.contains_key(scope) && self.scopes.len() >= MAX_SCOPES {
                self.refused += 1;
                continue;
            }
            let sb = self.scopes.entry(scope.clone()).or_default();
            for (f, s) in feats {
                sb.entry(f.clone()).or_default().merge(s, hl);
            }
        }
        for (app, mem) in &other.apps {
            for (k, &t) in &mem.first_seen {
                self.remember(app, k, t);
            }
        }
    }

    /// Records that `app` used `key` at `ts`; returns when it was first seen.
    pub fn remember(&mut self, app: &str, key: &str, ts: u64) -> u64 {
        if !self.apps.contains_key(app) && self.apps.len() >= MAX_SCOPES {
            self.refused += 1;
            return ts;
        }
        let mem = self.apps.entry(app.to_string()).or_default();
        if let Some(t) = mem.first_seen.get_mut(key) {
            *t = (*t).min(ts);
            return *t;
        }
        if mem.first_seen.len() >= MAX_MEMORY_PER_APP {
            self.refused += 1;
            return ts;
        }
        mem.first_seen.insert(key.to_string(), ts);
        ts
    }

    /// Forgets what `app` first used at or after `since_ns` among `keys` (an episode
    /// that alerted teaches nothing: its destinations and stacks stay new).
    pub fn forget_since(&mut self, app: &str, keys: &[String], since_ns: u64) {
        if let Some(mem) = self.apps.get_mut(app) {
            for k in keys {
                if mem.first_seen.get(k).is_some_and(|&t| t >= since_ns) {
                    mem.first_seen.remove(k);
                }
            }
        }
    }

    /// When `app` first used `key`, if known.
    pub fn first_seen(&self, app: &str, key: &str) -> Option<u64> {
        self.apps.get(app)?.first_seen.get(key).copied()
    }

    /// Reads and validates a baseline file.
    pub fn load(path: &Path) -> Result<Baselines, BaselineError> {
        use std::io::Read;
        let p = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|source| BaselineError::Io {
            path: p.clone(),
            source,
        })?;
        let mut text = String::new();
        file.take(MAX_BASELINE_FILE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|source| BaselineError::Io {
                path: p.clone(),
                source,
            })?;
        if text.len() as u64 > MAX_BASELINE_FILE_BYTES {
            return Err(BaselineError::Invalid {
                path: p,
                msg: format!("larger than {MAX_BASELINE_FILE_BYTES} bytes"),
            });
        }
        Baselines::from_json(&text, &p)
    }

    /// Parses and validates a baseline file's text (`origin` names it in errors).
    pub fn from_json(text: &str, origin: &str) -> Result<Baselines, BaselineError> {
        let invalid = |msg: String| BaselineError::Invalid {
            path: origin.to_string(),
            msg,
        };
        let b: Baselines = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        b.validate().map_err(invalid)?;
        Ok(b)
    }

    fn validate(&self) -> Result<(), String> {
        if self.version != FORMAT_VERSION {
            return Err(format!(
                "baseline format version {} (expected {FORMAT_VERSION})",
                self.version
            ));
        }
        if self.scopes.len() > MAX_SCOPES || self.apps.len() > MAX_SCOPES {
            return Err(format!("more than {MAX_SCOPES} scopes"));
        }
        for (scope, feats) in &self.scopes {
            for (f, s) in feats {
                s.validate().map_err(|e| format!("{scope}.{f}: {e}"))?;
            }
        }
        for (app, m) in &self.apps {
            if m.first_seen.len() > MAX_MEMORY_PER_APP {
                return Err(format!(
                    "{app}: more than {MAX_MEMORY_PER_APP} remembered entries"
                ));
            }
        }
        Ok(())
    }

    /// Writes the file atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<(), BaselineError> {
        let p = path.display().to_string();
        let tmp = path.with_extension("tmp");
        let text = serde_json::to_string(self).map_err(|e| BaselineError::Invalid {
            path: p.clone(),
            msg: e.to_string(),
        })?;
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|source| BaselineError::Io { path: p, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DAY: u64 = 86_400 * 1_000_000_000;

    #[test]
    fn quantiles_within_alpha() {
        let mut s = Sketch::default();
        for i in 1..=1000 {
            s.insert(f64::from(i), 0, DAY);
        }
        for q in [0.1, 0.5, 0.9, 0.99] {
            let want = q * 1000.0;
            let got = s.quantile(q).unwrap();
            assert!(
                (got - want).abs() / want <= 2.5 * ALPHA,
                "q{q}: {got} vs {want}"
            );
        }
        let p = s.percentile(900.0).unwrap();
        assert!((p - 0.9).abs() < 0.02, "{p}");
        assert_eq!(s.percentile(0.0).unwrap(), 0.0);
        assert!(Sketch::default().percentile(1.0).is_none());
    }

    #[test]
    fn decay_halves_weight() {
        let mut s = Sketch::default();
        s.insert(10.0, 0, DAY);
        s.decay_to(DAY, DAY);
        assert!((s.count() - 0.5).abs() < 1e-9);
        s.decay_to(0, DAY); // never backwards
        assert!((s.count() - 0.5).abs() < 1e-9);
    }

    #[test]
    fn bounded_buckets() {
        let mut s = Sketch::default();
        let mut x = MIN_POSITIVE;
        while s.buckets.len() < MAX_BUCKETS + 10 && x < 1e300 {
            s.insert(x, 0, DAY);
            x *= 1.05;
        }
        assert!(s.buckets.len() <= MAX_BUCKETS);
    }

    #[test]
    fn save_load_roundtrip_and_rejects_bad() {
        let dir = std::env::temp_dir().join(format!("nj-baseline-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut b = Baselines::new(14 * 86_400);
        b.insert("app:x", &[("bytes_up", 1000.0), ("connections", 3.0)], 5);
        b.remember("x", "d:a.example", 7);
        let path = dir.join("b.json");
        b.save(&path).unwrap();
        assert_eq!(Baselines::load(&path).unwrap(), b);
        std::fs::write(&path, r#"{"version": 1, "half_life_seconds": 1, "scopes": {"a": {"f": {"as_of_ns": 0, "zero": -1, "buckets": {}}}}}"#).unwrap();
        assert!(Baselines::load(&path)
            .unwrap_err()
            .to_string()
            .contains("negative"));
        std::fs::write(&path, "{").unwrap();
        assert!(Baselines::load(&path).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    proptest! {
        /// Merging two sketches equals inserting everything into one.
        #[test]
        fn merge_is_exact(a in proptest::collection::vec(0.0f64..1e9, 0..200),
                          b in proptest::collection::vec(0.0f64..1e9, 0..200)) {
            let (mut sa, mut sb, mut all) = (Sketch::default(), Sketch::default(), Sketch::default());
            for &x in &a { sa.insert(x, 0, DAY); all.insert(x, 0, DAY); }
            for &x in &b { sb.insert(x, 0, DAY); all.insert(x, 0, DAY); }
            sa.merge(&sb, DAY);
            prop_assert_eq!(sa, all);
        }

        #[test]
        fn percentile_in_range(v in proptest::collection::vec(-1e3f64..1e12, 1..100), x in -1.0f64..1e13) {
            let mut s = Sketch::default();
            for &y in &v { s.insert(y, 0, DAY); }
            let p = s.percentile(x).unwrap();
            prop_assert!((0.0..=1.0).contains(&p));
        }
    }
}
