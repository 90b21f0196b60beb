//! Development tool: writes a labelled evaluation scenario (see `nightjar::scenario`):
//! `<out>/scenario.pcap`, `inventory.json`, `events.ndjson`, `catalog.json` and
//! `truth.json` (which app made each flow, which background episodes are malicious).
//!
//! Usage: `nightjar-scenario --out DIR [--seed N] [--day N] [--devices N] [--hours N]
//! [--malicious] [--malicious-share F] [--name BASENAME]`

use anyhow::{bail, Context, Result};
use nightjar::scenario::{generate, ScenarioConfig};
use std::path::PathBuf;

fn main() -> Result<()> {
    let mut cfg = ScenarioConfig::default();
    let mut out: Option<PathBuf> = None;
    let mut name = "scenario".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |flag: &str| args.next().with_context(|| format!("{flag} needs a value"));
        match a.as_str() {
            "--out" => out = Some(PathBuf::from(val("--out")?)),
            "--seed" => cfg.seed = val("--seed")?.parse()?,
            "--day" => cfg.day = val("--day")?.parse()?,
            "--devices" => cfg.devices = val("--devices")?.parse()?,
            "--hours" => cfg.hours = val("--hours")?.parse()?,
            "--reported-share" => cfg.reported_share = val("--reported-share")?.parse()?,
            "--name" => name = val("--name")?,
            "--malicious" => cfg.malicious = true,
            "--malicious-share" => cfg.malicious_share = val("--malicious-share")?.parse()?,
            other => bail!("unknown argument {other:?}"),
        }
    }
    anyhow::ensure!(
        (1..=200).contains(&cfg.devices),
        "--devices must be 1..=200"
    );
    anyhow::ensure!((1..=24).contains(&cfg.hours), "--hours must be 1..=24");
    let out = out.context("--out DIR is required")?;
    std::fs::create_dir_all(&out)?;
    let s = generate(&cfg);
    std::fs::write(out.join(format!("{name}.pcap")), &s.pcap)?;
    std::fs::write(out.join("inventory.json"), &s.inventory_json)?;
    std::fs::write(out.join("events.ndjson"), &s.events_ndjson)?;
    std::fs::write(out.join("catalog.json"), &s.catalog_json)?;
    std::fs::write(
        out.join(format!("{name}.truth.json")),
        serde_json::to_string_pretty(&s.truth)?,
    )?;
    eprintln!(
        "{}: {} bytes, {} flows, {} malicious episodes",
        out.join(format!("{name}.pcap")).display(),
        s.pcap.len(),
        s.truth.flows.len(),
        s.truth.episodes.len()
    );
    Ok(())
}
