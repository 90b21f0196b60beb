//! The `nightjar` binary: command-line parsing and error reporting.
//! Everything else lives in the library; errors become one line on stderr.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use nightjar::config::{Config, OutputPath};
use nightjar::correlate::baseline::Baselines;
use nightjar::correlate::{AnalysisOptions, Correlator, CorrelatorOptions};
use nightjar::fleet::config::Role;
use nightjar::fleet::sensor::{KeyOptions, Publisher};
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
    /// MDM adapters: one-shot operations against the configured MDM APIs.
    Mdm {
        #[command(subcommand)]
        command: MdmCommand,
    },
    /// Capture live on the configured interfaces until SIGTERM/SIGINT (foreground; also under systemd).
    Run {
        /// Configuration file (TOML).
        #[arg(long, default_value = "/etc/nightjar/nightjar.toml")]
        config: PathBuf,
    },
    /// Fleet correlator (`[fleet] role = "correlator"`): consume observations from
    /// Kafka with the consumer group, write records to the output and the records topic.
    Correlate(CorrelateArgs),
    /// Validate a configuration file and print what is wrong, one line each.
    CheckConfig {
        /// Configuration file (TOML).
        #[arg(long, default_value = "/etc/nightjar/nightjar.toml")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum MdmCommand {
    /// Pull the inventory once from every configured MDM API ([mdm.jamf], [mdm.intune])
    /// and write it in the --inventory JSON format.
    Sync {
        /// Configuration file (TOML).
        #[arg(long, default_value = "/etc/nightjar/nightjar.toml")]
        config: PathBuf,
        /// Write the inventory to this file (replaced atomically) instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
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
    #[command(flatten)]
    mdm: MdmArgs,
    /// AN1717 baselines (JSON): loaded if the file exists, saved at the end of the
    /// replay (needs --inventory, --events or --catalog).
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Write an evidence bundle per AN1717 alert into this directory (needs
    /// --inventory, --events or --catalog).
    #[arg(long)]
    evidence_dir: Option<PathBuf>,
    /// No progress line on stderr, even on a terminal.
    #[arg(long)]
    quiet: bool,
}

/// The MDM and identity inputs of `replay` and `correlate`.
#[derive(clap::Args)]
struct MdmArgs {
    /// MDM inventory JSON (docs/mdm.md): devices by hardware Wi-Fi MAC, udid, serial.
    /// Overrides `[mdm] inventory`.
    #[arg(long)]
    inventory: Option<PathBuf>,
    /// Identity feed NDJSON (docs/identity.md): who holds which address from when.
    /// Overrides `[identity] feed`.
    #[arg(long)]
    identity: Option<PathBuf>,
    /// Lifecycle events (NDJSON, docs/mdm.md).
    #[arg(long)]
    events: Option<PathBuf>,
    /// App catalog: a TOML/JSON file or a directory of them (docs/mdm.md).
    #[arg(long)]
    catalog: Option<PathBuf>,
}

impl MdmArgs {
    /// The inventory and identity feed (flags first, then the config's files).
    fn identity_inputs(
        &self,
        cfg: &Config,
    ) -> Result<(
        Option<std::sync::Arc<nightjar::mdm::Inventory>>,
        Vec<nightjar::correlate::identity::FeedEntry>,
    )> {
        let inventory = match self.inventory.as_ref().or(cfg.mdm.inventory.as_ref()) {
            Some(p) => Some(std::sync::Arc::new(nightjar::mdm::load_inventory(p)?)),
            None => None,
        };
        let feed = match self.identity.as_ref().or(cfg.identity_feed.as_ref()) {
            Some(p) => nightjar::correlate::identity::load_feed(p)?,
            None => Vec::new(),
        };
        Ok((inventory, feed))
    }
}

#[derive(clap::Args)]
struct CorrelateArgs {
    /// Configuration file (TOML): `[fleet]` names the brokers, topics and group.
    #[arg(long, default_value = "/etc/nightjar/nightjar.toml")]
    config: PathBuf,
    /// Write records to this file (appended) instead of `[output] path`.
    #[arg(long, short)]
    output: Option<PathBuf>,
    #[command(flatten)]
    mdm: MdmArgs,
    /// Stop once every assigned partition is read to its end and nothing arrived
    /// for this long (e.g. "5s"), writing the end-of-run records; default: run until
    /// SIGTERM/SIGINT.
    #[arg(long)]
    until_idle: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay(args) => run_replay(args),
        Command::Mdm {
            command: MdmCommand::Sync { config, output },
        } => mdm_sync(&config, output.as_deref()),
        Command::Correlate(args) => run_correlate(args),
        Command::CheckConfig { config } => check_config(&config),
        Command::Run { config } => run_daemon(&config),
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

fn mdm_sync(config: &std::path::Path, output: Option<&std::path::Path>) -> Result<ExitCode> {
    use nightjar::mdm::adapter::{run::sync_once, HttpOptions};
    let cfg = Config::load(config)?;
    anyhow::ensure!(
        cfg.mdm.jamf.is_some() || cfg.mdm.intune.is_some(),
        "{}: no [mdm.jamf] or [mdm.intune] section: nothing to sync",
        config.display()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = rt
        .block_on(sync_once(&cfg.mdm, &HttpOptions::default()))
        .context("mdm sync failed")?;
    let text = nightjar::mdm::inventory_to_json(&result.inventory);
    match output {
        Some(p) => nightjar::mdm::adapter::write_atomic(p, text.as_bytes())
            .with_context(|| format!("{}: cannot write", p.display()))?,
        None => {
            use std::io::Write;
            std::io::stdout().write_all(text.as_bytes())?;
        }
    }
    let inv = &result.inventory;
    let apps: usize = inv.devices().iter().map(|d| inv.apps(&d.id).len()).sum();
    let now = nightjar::mdm::adapter::wall_clock_ns();
    for (name, stats) in &result.stats {
        let s = stats.snapshot(now);
        eprintln!(
            "nightjar: mdm {name}: {} requests, {} retries, {} throttled, {} server errors, {} token fetches, {} devices skipped, {} apps skipped",
            s.requests, s.retries, s.throttled, s.server_errors, s.token_fetches, s.devices_skipped, s.apps_skipped
        );
    }
    eprintln!(
        "nightjar: mdm sync: {} devices, {apps} apps",
        inv.devices().len()
    );
    Ok(ExitCode::SUCCESS)
}

fn run_daemon(path: &std::path::Path) -> Result<ExitCode> {
    let cfg = Config::load(path)?;
    nightjar::daemon::run(&cfg)?;
    Ok(ExitCode::SUCCESS)
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
    // MDM inputs are validated before any output is opened.
    let events = match &args.mdm.events {
        Some(p) => nightjar::mdm::load_events(p)?,
        None => Vec::new(),
    };
    let catalog = match &args.mdm.catalog {
        Some(p) => Some(nightjar::mdm::load_catalog(p)?),
        None => None,
    };
    // Replay writes to stdout unless told otherwise: the config's path is the daemon's.
    let out_path = match &args.output {
        Some(p) => OutputPath::File(p.clone()),
        None => OutputPath::Stdout,
    };
    let mut sink = match &out_path {
        OutputPath::Stdout => Sink::stdout(),
        OutputPath::File(p) => Sink::file(p)?,
    };
    let (inventory, feed) = args.mdm.identity_inputs(&cfg)?;
    let opts = ReplayOptions {
        inputs: args.pcaps.clone(),
        workers: cfg.capture.workers,
        flow: cfg.flow.clone(),
        progress: !args.quiet,
    };
    match cfg.fleet.role {
        Role::All => {}
        Role::Correlator => anyhow::bail!(
            "[fleet] role = \"correlator\" reads observations from Kafka: use `nightjar correlate`"
        ),
        Role::Sensor => {
            let keys = KeyOptions {
                inventory,
                static_identities: cfg.identity_static.clone(),
                feed,
            };
            let mut publisher = Publisher::new(&cfg.fleet, keys)?;
            let report = replay(&opts, &mut publisher, &mut sink).context("replay failed")?;
            eprintln!("nightjar: sensor: {}", publisher.finish());
            if let Some(e) = &report.error {
                eprintln!("nightjar: {e}");
                return Ok(ExitCode::FAILURE);
            }
            return Ok(ExitCode::SUCCESS);
        }
    }
    // Attribution and AN1717 run when there is anything to attribute with.
    let mdm_given = inventory.is_some() || catalog.is_some() || !events.is_empty();
    anyhow::ensure!(
        mdm_given || (args.baseline.is_none() && args.evidence_dir.is_none()),
        "--baseline and --evidence-dir need --inventory, --events or --catalog"
    );
    let analysis = if mdm_given {
        let baselines = match &args.baseline {
            Some(p) if p.exists() => Some(Baselines::load(p)?),
            _ => None,
        };
        Some(AnalysisOptions {
            baselines,
            detect: cfg.detect.clone(),
            evidence: cfg.evidence.options(args.evidence_dir.clone()),
        })
    } else {
        None
    };
    let mut correlator = Correlator::new(CorrelatorOptions {
        dns_records: cfg.output.dns_records,
        inventory,
        static_identities: cfg.identity_static.clone(),
        feed,
        analysis,
    })
    .with_mdm(events, catalog);
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

fn run_correlate(args: CorrelateArgs) -> Result<ExitCode> {
    use nightjar::fleet::correlator::{consume, ConsumeOptions, CorrelatorMetrics};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let cfg = Config::load(&args.config)?;
    anyhow::ensure!(
        cfg.fleet.role == Role::Correlator,
        "{}: [fleet] role is not \"correlator\"",
        args.config.display()
    );
    let until_idle = match &args.until_idle {
        Some(s) => Some(
            nightjar::config::parse_duration(s)
                .map_err(|m| anyhow::anyhow!("--until-idle: {m}"))?,
        ),
        None => None,
    };
    let events = match args.mdm.events.as_ref().or(cfg.mdm.events.as_ref()) {
        Some(p) => nightjar::mdm::load_events(p)?,
        None => Vec::new(),
    };
    let catalog_path = args.mdm.catalog.clone().or(cfg.mdm.catalog.clone());
    if let Some(p) = &catalog_path {
        nightjar::mdm::load_catalog(p)?;
    }
    let (inventory, feed) = args.mdm.identity_inputs(&cfg)?;
    let sink = match (&args.output, &cfg.output.path) {
        (Some(p), _) | (None, OutputPath::File(p)) => Sink::file(p)?,
        (None, OutputPath::Stdout) => Sink::stdout(),
    };
    let mdm_given = inventory.is_some() || catalog_path.is_some() || !events.is_empty();
    let dns_records = cfg.output.dns_records;
    let statics = cfg.identity_static.clone();
    let detect = cfg.detect.clone();
    let make = move || {
        let analysis = mdm_given.then(|| AnalysisOptions {
            baselines: None,
            detect: detect.clone(),
            evidence: None,
        });
        // Loaded and checked above: a failure here (the file changed) runs without it.
        let catalog = catalog_path
            .as_ref()
            .and_then(|p| nightjar::mdm::load_catalog(p).ok());
        Correlator::new(CorrelatorOptions {
            dns_records,
            inventory: inventory.clone(),
            static_identities: statics.clone(),
            feed: feed.clone(),
            analysis,
        })
        .with_mdm(events.clone(), catalog)
    };
    let stop = Arc::new(AtomicBool::new(false));
    // The correlator's counters on `[metrics] listen` (`/metrics`, `/healthz`).
    let metrics = Arc::new(CorrelatorMetrics::default());
    let listener = std::net::TcpListener::bind(cfg.metrics_listen)
        .with_context(|| format!("metrics.listen: cannot bind {}", cfg.metrics_listen))?;
    listener.set_nonblocking(true)?;
    {
        let stop = stop.clone();
        let endpoint = Arc::new(nightjar::daemon::metrics::Endpoint {
            state: None,
            sources: vec![metrics.clone()],
        });
        std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(l) = tokio::net::TcpListener::from_std(listener) {
                    tokio::spawn(nightjar::daemon::metrics::serve(l, endpoint));
                }
                let Ok(mut term) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                else {
                    return;
                };
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            });
            stop.store(true, Ordering::Relaxed);
        });
    }
    let stats = consume(
        &cfg.fleet,
        ConsumeOptions {
            make_correlator: Box::new(make),
            stop,
            until_idle,
            finish: true,
            metrics: Some(metrics),
        },
        sink,
    )?;
    eprintln!(
        "nightjar: correlator: {} messages, {} records, {} suppressed, {} commits, {} bad messages, lag {}",
        stats.messages,
        stats.records,
        stats.suppressed,
        stats.commits,
        stats.bad_messages.values().sum::<u64>(),
        stats.lag
    );
    Ok(ExitCode::SUCCESS)
}
