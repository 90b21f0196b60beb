//! The `nightjar` binary: command-line parsing and error reporting.
//! Everything else lives in the library; errors become one line on stderr.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use nightjar::config::{Config, OutputPath};
use nightjar::correlate::{Correlator, CorrelatorOptions};
use nightjar::output::Sink;
use nightjar::pipeline::replay::{replay, ReplayOptions};
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// MDM inventory JSON (docs/mdm.md): devices by hardware Wi-Fi MAC, udid, serial.
    /// Overrides `[mdm] inventory`.
    #[arg(long)]
    inventory: Option<PathBuf>,
    /// Identity feed NDJSON (docs/identity.md): who holds which address from when.
    /// Overrides `[identity] feed`.
    #[arg(long)]
    identity: Option<PathBuf>,
    /// No progress line on stderr, even on a terminal.
    #[arg(long)]
    quiet: bool,
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
    let inventory = match args.inventory.as_ref().or(cfg.mdm.inventory.as_ref()) {
        Some(p) => Some(std::sync::Arc::new(nightjar::mdm::load_inventory(p)?)),
        None => None,
    };
    let feed = match args.identity.as_ref().or(cfg.identity_feed.as_ref()) {
        Some(p) => nightjar::correlate::identity::load_feed(p)?,
        None => Vec::new(),
    };
    let mut correlator = Correlator::new(CorrelatorOptions {
        dns_records: cfg.output.dns_records,
        inventory,
        static_identities: cfg.identity_static.clone(),
        feed,
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
    if let Some(e) = &report.error {
        eprintln!("nightjar: {e}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
