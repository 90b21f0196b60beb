//! The `nightjar` binary: command-line parsing and error reporting.
//! Everything else lives in the library; errors become one line on stderr.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use nightjar::config::{Config, OutputPath};
use nightjar::correlate::baseline::Baselines;
use nightjar::correlate::detect::DetectConfig;
use nightjar::correlate::evidence::{EvidenceOptions, DEFAULT_QUOTA_BYTES};
use nightjar::correlate::{AnalysisOptions, Correlator, CorrelatorOptions};
use nightjar::mdm;
use nightjar::output::Sink;
use nightjar::pipeline::replay::{replay, ReplayOptions};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "nightjar",
    version,
    about = "Passive sensor for encrypted mobile traffic: TLS/QUIC flow metadata joined to MDM inventory"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay pcap/pcapng files (in order, as one stream; "-" reads stdin) and write JSON-lines records.
    Replay(ReplayArgs),
    /// Validate a configuration file and print what is wrong, one line each.
    CheckConfig {
        /// Configuration file (TOML).
        #[arg(long, default_value = "/etc/nightjar/nightjar.toml")]
        config: PathBuf,
    },
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// Capture files: pcap or pcapng; "-" for stdin.
    #[arg(required = true)]
    pcaps: Vec<PathBuf>,
    /// Configuration file (TOML); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Write records to this file (appended) instead of stdout.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Flow shards (worker threads).
    #[arg(long)]
    workers: Option<usize>,
    /// Also write a nightjar.dns record for every DNS message.
    #[arg(long)]
    dns_records: bool,
    /// No progress line on stderr, even on a terminal.
    #[arg(long)]
    quiet: bool,
    /// MDM inventory (JSON): devices and their installed apps.
    #[arg(long)]
    inventory: Option<PathBuf>,
    /// Lifecycle events (NDJSON).
    #[arg(long)]
    events: Option<PathBuf>,
    /// App catalog: a TOML/JSON file or a directory of them.
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// Baselines file: loaded if it exists, saved at the end of the replay.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Write an evidence bundle per AN1717 alert into this directory.
    #[arg(long)]
    evidence_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay(args) => run_replay(args),
        Command::CheckConfig { config } => check_config(&config),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nightjar: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(path: &std::path::Path) -> Result<ExitCode> {
    let cfg = Config::load(path)?;
    let mut problems = nightjar::pipeline::check::check(&cfg);
    problems.sort();
    for p in &problems {
        println!("{}: {p}", path.display());
    }
    if problems.is_empty() {
        println!("{}: ok", path.display());
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::FAILURE)
    }
}

/// Loads the MDM inputs; attribution and detection run when any is given.
fn analysis_options(args: &ReplayArgs) -> Result<Option<AnalysisOptions>> {
    if args.inventory.is_none() && args.catalog.is_none() && args.events.is_none() {
        anyhow::ensure!(
            args.baseline.is_none() && args.evidence_dir.is_none(),
            "--baseline and --evidence-dir need --inventory and/or --catalog"
        );
        return Ok(None);
    }
    let inventory = match &args.inventory {
        Some(p) => mdm::load_inventory(p)?,
        None => mdm::Inventory::default(),
    };
    let catalog = match &args.catalog {
        Some(p) => mdm::load_catalog(p)?,
        None => mdm::CatalogBuilder::new().build(),
    };
    let events = match &args.events {
        Some(p) => mdm::load_events(p)?,
        None => Vec::new(),
    };
    let baselines = match &args.baseline {
        Some(p) if p.exists() => Some(Baselines::load(p)?),
        _ => None,
    };
    Ok(Some(AnalysisOptions {
        inventory: Arc::new(inventory),
        catalog: Arc::new(catalog),
        events,
        baselines,
        detect: DetectConfig::default(),
        evidence: args.evidence_dir.as_ref().map(|d| EvidenceOptions {
            dir: d.clone(),
            quota_bytes: DEFAULT_QUOTA_BYTES,
        }),
    }))
}

fn run_replay(args: ReplayArgs) -> Result<ExitCode> {
    let mut cfg = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(w) = args.workers {
        anyhow::ensure!(
            (1..=nightjar::config::MAX_WORKERS).contains(&w),
            "--workers {w} is out of range 1..={}",
            nightjar::config::MAX_WORKERS
        );
        cfg.capture.workers = w;
    }
    if args.dns_records {
        cfg.output.dns_records = true;
    }
    // Replay writes to stdout unless told otherwise: the config's path is the daemon's.
    let out_path = match &args.output {
        Some(p) => OutputPath::File(p.clone()),
        None => OutputPath::Stdout,
    };
    let mut sink = match &out_path {
        OutputPath::Stdout => Sink::stdout(),
        OutputPath::File(p) => Sink::file(p)?,
    };
    let analysis = analysis_options(&args)?;
    let mut correlator = Correlator::new(CorrelatorOptions {
        dns_records: cfg.output.dns_records,
        analysis,
    });
    let opts = ReplayOptions {
        inputs: args.pcaps,
        workers: cfg.capture.workers,
        flow: cfg.flow.clone(),
        progress: !args.quiet,
    };
    let report = replay(&opts, &mut correlator, &mut sink).context("replay failed")?;
    correlator.finish(&report, &mut sink)?;
    sink.flush()?;
    if let (Some(path), Some(b)) = (&args.baseline, correlator.baselines()) {
        b.save(path)?;
    }
    if let Some(e) = &report.error {
        eprintln!("nightjar: {e}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
