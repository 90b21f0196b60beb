//! `nightjar run`: the live sensor as a service (foreground, or under systemd).
//!
//! Owns the order of things at start and stop, signals, privileges, sd_notify
//! and the control plane's tokio runtime; the data plane is
//! `pipeline::live`, capture is `capture::live`.
//!
//! Start: open every capture handle (needs CAP_NET_RAW) and bind the metrics
//! address, then drop privileges ([`privileges`]) before any packet is read or
//! any other file opened; then open the output, start the data plane, serve
//! metrics, and tell systemd READY=1 (and "nightjar: ready" on stderr).
//!
//! Inputs ([`inputs`], [`mdm`]): the `[mdm]` and `[identity] feed` files are
//! loaded before capture starts (a bad one stops the start); the MDM pollers,
//! the webhook receiver and the identity socket (`[identity] socket`) run on
//! the control plane and reach the correlator through its bounded queues. With
//! any MDM input configured the correlator runs attribution and AN1717
//! detection like replay, writes `nightjar.coverage` records every
//! `[daemon] coverage_interval` and at shutdown, and keeps its baselines in
//! `[state] dir` ([`BASELINES_FILE`]).
//!
//! Signals: SIGTERM and SIGINT stop capture, flush every open flow as a record
//! with termination "shutdown", write the stats record and the state file, and
//! exit 0. SIGHUP reopens the output file (after logrotate moved it) and
//! reloads the inventory, events, catalog and identity feed files (a file that
//! does not load keeps the previous data: one line, counted). The watchdog
//! (WATCHDOG=1) is only fed while every capture worker reports.

pub mod inputs;
pub mod mdm;
pub mod metrics;
pub mod notify;
pub use crate::capture::privileges;

use crate::capture::live::{open_interface, LiveError, LiveOptions};
use crate::config::{Config, OutputPath};
use crate::correlate::baseline::Baselines;
use crate::correlate::identity::{FeedListener, IdentityError};
use crate::correlate::Update;
use crate::correlate::{AnalysisOptions, Correlator, CorrelatorOptions};
use crate::fleet::config::Role;
use crate::fleet::sensor::{KeyOptions, Publisher};
use crate::observation::Observation;
use crate::output::{Sink, SinkError};
use crate::pipeline::live::{self, CorrelatorMsg, LiveHandler, LiveRunError, OutputMsg};
use crate::pipeline::replay::ReplayReport;
use crate::pipeline::{ObservationHandler, PacketKeeperHandle};
use inputs::Inputs;
use notify::Notifier;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How often the control plane checks the data plane's health when systemd
/// asked for no watchdog.
pub const HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// The AN1717 baselines in `[state] dir`: loaded at start, saved at shutdown.
pub const BASELINES_FILE: &str = "baselines.json";

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("capture.interfaces is empty: nothing to capture")]
    NoInterfaces,
    #[error(transparent)]
    Capture(#[from] LiveError),
    #[error("metrics.listen: cannot bind {addr}: {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Privileges(#[from] privileges::PrivilegeError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("state.dir {path}: {source}")]
    State {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot start: {0}")]
    Start(std::io::Error),
    #[error("mdm.webhook.listen: cannot bind {addr}: {source}")]
    Webhook {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Inventory(#[from] crate::mdm::MdmError),
    #[error(transparent)]
    Adapter(#[from] crate::mdm::adapter::AdapterError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Run(#[from] LiveRunError),
    #[error("capture failed: {0}")]
    CaptureFailed(String),
    #[error("[fleet] role = \"correlator\" reads observations from Kafka: run `nightjar correlate --config FILE`")]
    CorrelatorRole,
    #[error(transparent)]
    Fleet(#[from] crate::fleet::kafka::FleetError),
}

/// What the data plane feeds: the correlator (`[fleet] role = "all"`), or the
/// fleet publisher (`role = "sensor"`: observations go to Kafka).
pub enum Handler {
    All(Box<Correlator>),
    Sensor(Box<Publisher>),
}

impl ObservationHandler for Handler {
    fn handle(&mut self, obs: Observation, sink: &mut Sink) -> Result<(), SinkError> {
        match self {
            Handler::All(c) => c.handle(obs, sink),
            Handler::Sensor(p) => ObservationHandler::handle(p.as_mut(), obs, sink),
        }
    }

    fn packet_keeper(&self) -> Option<PacketKeeperHandle> {
        match self {
            Handler::All(c) => c.packet_keeper(),
            Handler::Sensor(_) => None,
        }
    }
}

impl LiveHandler for Handler {
    fn update(&mut self, u: Update) {
        match self {
            Handler::All(c) => c.update(u),
            Handler::Sensor(p) => LiveHandler::update(p.as_mut(), u),
        }
    }
    fn write_coverage(&mut self, sink: &mut Sink) -> Result<(), SinkError> {
        match self {
            Handler::All(c) => c.write_coverage(sink),
            Handler::Sensor(_) => Ok(()),
        }
    }
    fn alert_records(&self) -> u64 {
        match self {
            Handler::All(c) => c.alert_records(),
            Handler::Sensor(_) => 0,
        }
    }
    fn idle(&mut self) {
        if let Handler::Sensor(p) = self {
            LiveHandler::idle(p.as_mut());
        }
    }
    fn finish(&mut self, report: &ReplayReport, sink: &mut Sink) -> Result<(), SinkError> {
        match self {
            Handler::All(c) => c.finish(report, sink),
            Handler::Sensor(p) => LiveHandler::finish(p.as_mut(), report, sink),
        }
    }
}

/// Why the control plane stopped.
enum Stop {
    Signal(&'static str),
    Failed(String),
}

/// Runs until SIGTERM/SIGINT (Ok) or a capture failure (Err).
pub fn run(cfg: &Config) -> Result<(), DaemonError> {
    if cfg.capture.interfaces.is_empty() {
        return Err(DaemonError::NoInterfaces);
    }
    if cfg.fleet.role == Role::Correlator {
        return Err(DaemonError::CorrelatorRole);
    }
    let opts = LiveOptions {
        snaplen: cfg.capture.snaplen,
        buffer_size: cfg.capture.buffer_size,
        promisc: cfg.capture.promisc,
        immediate: cfg.capture.immediate_mode,
        bpf: cfg.capture.bpf.clone(),
    };
    let mut handles = Vec::new();
    for iface in &cfg.capture.interfaces {
        handles.extend(open_interface(iface, cfg.capture.workers, &opts)?);
    }
    // Bound before dropping privileges so a port below 1024 works too.
    let listener =
        std::net::TcpListener::bind(cfg.metrics_listen).map_err(|source| DaemonError::Metrics {
            addr: cfg.metrics_listen,
            source,
        })?;
    listener.set_nonblocking(true).map_err(DaemonError::Start)?;
    let webhook_listener = match &cfg.mdm.webhook {
        Some(w) => {
            let l =
                std::net::TcpListener::bind(w.listen).map_err(|source| DaemonError::Webhook {
                    addr: w.listen,
                    source,
                })?;
            l.set_nonblocking(true).map_err(DaemonError::Start)?;
            Some(l)
        }
        None => None,
    };

    privileges::drop_privileges(cfg.daemon_user.as_deref())?;

    let sink = match &cfg.output.path {
        OutputPath::Stdout => Sink::stdout(),
        OutputPath::File(p) => Sink::file(p)?,
    };
    std::fs::create_dir_all(&cfg.state_dir).map_err(|source| DaemonError::State {
        path: cfg.state_dir.display().to_string(),
        source,
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DaemonError::Start)?;
    // Signal handlers go in before the data plane starts: from here on a
    // SIGTERM is a clean shutdown, never the default kill.
    let signals = {
        let _guard = rt.enter();
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::terminate()).map_err(DaemonError::Start)?,
            signal(SignalKind::interrupt()).map_err(DaemonError::Start)?,
            signal(SignalKind::hangup()).map_err(DaemonError::Start)?,
        )
    };
    let listener = {
        let _guard = rt.enter();
        tokio::net::TcpListener::from_std(listener).map_err(DaemonError::Start)?
    };

    let workers = handles.len();
    // Files are read after the privilege drop; the adapters read their secrets now.
    let (inputs, initial) = Inputs::load(cfg)?;
    let adapters = {
        let _guard = rt.enter();
        mdm::start(cfg, webhook_listener)?
    };
    let m = &cfg.mdm;
    let sensor = cfg.fleet.role == Role::Sensor;
    let detect = !sensor
        && (m.inventory.is_some()
            || m.events.is_some()
            || m.catalog.is_some()
            || !adapters.is_empty());
    let baseline_path = cfg.state_dir.join(BASELINES_FILE);
    let analysis = detect.then(|| AnalysisOptions {
        baselines: load_baselines(&baseline_path),
        detect: cfg.detect.clone(),
        evidence: cfg.evidence.options(None),
    });
    let handler = if sensor {
        Handler::Sensor(Box::new(Publisher::new(
            &cfg.fleet,
            KeyOptions {
                inventory: initial.inventory,
                static_identities: cfg.identity_static.clone(),
                feed: initial.feed,
            },
        )?))
    } else {
        Handler::All(Box::new(
            Correlator::new(CorrelatorOptions {
                dns_records: cfg.output.dns_records,
                static_identities: cfg.identity_static.clone(),
                inventory: initial.inventory,
                feed: initial.feed,
                analysis,
            })
            .with_mdm(initial.events, initial.catalog),
        ))
    };
    let fleet_metrics = match &handler {
        Handler::Sensor(p) => Some(p.counters() as Arc<dyn metrics::MetricSource>),
        Handler::All(_) => None,
    };
    let run = live::start(handles, cfg.flow.clone(), handler, sink).map_err(DaemonError::Start)?;
    let feed_socket = match &cfg.identity_socket {
        Some(p) => match FeedListener::bind(p, run.feed.clone()) {
            Ok(l) => Some(l),
            Err(e) => {
                let _ = run.shutdown();
                return Err(e.into());
            }
        },
        None => None,
    };
    if let (Some(l), Ok(mut slot)) = (&feed_socket, inputs.stats.feed_socket.lock()) {
        *slot = Some(l.stats.clone());
    }
    let endpoint = Arc::new(metrics::Endpoint {
        state: Some(run.state.clone()),
        sources: [
            inputs.stats.clone() as Arc<dyn metrics::MetricSource>,
            Arc::new(inputs::MdmMetrics {
                adapters: adapters.stats.clone(),
            }),
        ]
        .into_iter()
        .chain(fleet_metrics)
        .collect(),
    });
    let notifier = Notifier::from_env();
    let mut status = format!(
        "capturing on {} ({workers} workers), metrics on {}",
        cfg.capture.interfaces.join(","),
        cfg.metrics_listen
    );
    if detect {
        status.push_str(", detection on");
    }
    if sensor {
        status.push_str(&format!(
            ", observations to Kafka topic {}",
            cfg.fleet.observations_topic
        ));
    }
    let plane = Plane {
        output: run.output.clone(),
        control: run.control.clone(),
        inputs,
        adapters,
        coverage_every: cfg.coverage_interval,
    };
    let stop = rt.block_on(control(
        signals, listener, endpoint, plane, &notifier, &status,
    ));
    notifier.notify("STOPPING=1");
    if let Some(l) = feed_socket {
        l.shutdown();
    }
    let why = match &stop {
        Stop::Signal(s) => format!("{s}: flushing open flows"),
        Stop::Failed(e) => format!("capture failed ({e}): flushing open flows"),
    };
    eprintln!("nightjar: {why}");
    let state = run.state.clone();
    let (report, handler) = run.shutdown()?;
    let written = state.records_written.load(Ordering::Relaxed);
    write_state(&cfg.state_dir, &report, written, &stop)?;
    if let Some(b) = match &handler {
        Handler::All(c) => c.baselines(),
        Handler::Sensor(_) => None,
    } {
        if let Err(e) = b.save(&baseline_path) {
            eprintln!("nightjar: cannot save the baselines: {e}");
        }
    }
    eprintln!(
        "nightjar: stopped: {} packets, {} flows, {written} records",
        report.data.frames, report.flows.created
    );
    match stop {
        Stop::Signal(_) => Ok(()),
        Stop::Failed(e) => Err(DaemonError::CaptureFailed(e)),
    }
}

/// The baselines saved by the last run; a file that does not load is reported and
/// learning starts over (the sensor still starts).
fn load_baselines(path: &Path) -> Option<Baselines> {
    if !path.exists() {
        return None;
    }
    match Baselines::load(path) {
        Ok(b) => Some(b),
        Err(e) => {
            eprintln!("nightjar: ignoring saved baselines: {e}");
            None
        }
    }
}

/// What the control loop drives besides signals and the metrics endpoint.
struct Plane {
    output: crossbeam_channel::Sender<OutputMsg>,
    control: crossbeam_channel::Sender<CorrelatorMsg>,
    inputs: Inputs,
    adapters: mdm::Adapters,
    coverage_every: Duration,
}

type Signals = (
    tokio::signal::unix::Signal,
    tokio::signal::unix::Signal,
    tokio::signal::unix::Signal,
);

async fn control(
    (mut term, mut int, mut hup): Signals,
    listener: tokio::net::TcpListener,
    endpoint: Arc<metrics::Endpoint>,
    mut plane: Plane,
    notifier: &Notifier,
    status: &str,
) -> Stop {
    let server = tokio::spawn(metrics::serve(listener, endpoint.clone()));
    notifier.notify(&format!("READY=1\nSTATUS={status}"));
    eprintln!("nightjar: ready: {status}");
    let watchdog = Notifier::watchdog_interval();
    let mut tick = tokio::time::interval(watchdog.unwrap_or(HEALTH_CHECK_INTERVAL));
    let every = plane.coverage_every;
    let mut coverage = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let stop = loop {
        tokio::select! {
            _ = term.recv() => break Stop::Signal("SIGTERM"),
            _ = int.recv() => break Stop::Signal("SIGINT"),
            _ = hup.recv() => {
                match plane.output.try_send(OutputMsg::Reopen) {
                    Ok(()) => eprintln!("nightjar: SIGHUP: reopening output"),
                    Err(_) => eprintln!("nightjar: SIGHUP: output thread busy, reopen skipped"),
                }
                plane.inputs.reload();
                plane.inputs.flush(&plane.control);
                eprintln!("nightjar: SIGHUP: inputs reloaded");
            }
            Some((name, inv)) = plane.adapters.inventories.recv() => {
                plane.inputs.adapter_inventory(name, inv);
            }
            Some(e) = plane.adapters.events.recv() => plane.inputs.push_event(e),
            _ = coverage.tick() => plane.inputs.coverage(&plane.control),
            _ = tick.tick() => {
                let failed = endpoint.state.as_ref().and_then(|st| st.failed.lock().ok()?.clone());
                if let Some(f) = failed {
                    break Stop::Failed(f);
                }
                if watchdog.is_some() && endpoint.health().is_ok() {
                    notifier.notify("WATCHDOG=1");
                }
            }
        }
        plane.inputs.flush(&plane.control);
    };
    plane.adapters.stop();
    server.abort();
    stop
}

/// Writes `last-run.json` in the state directory (temporary file, then rename).
fn write_state(
    dir: &Path,
    report: &ReplayReport,
    records: u64,
    stop: &Stop,
) -> Result<(), DaemonError> {
    let reason = match stop {
        Stop::Signal(s) => s.to_string(),
        Stop::Failed(e) => format!("capture failed: {e}"),
    };
    let v = serde_json::json!({
        "stopped_at": crate::capture::Timestamp(live::wall_clock_ns()).rfc3339().to_string(),
        "reason": reason,
        "packets": report.data.frames,
        "wire_bytes": report.data.wire_bytes,
        "flows_created": report.flows.created,
        "flows_evicted": report.flows.evicted,
        "records_written": records,
        "uptime_seconds": report.elapsed.as_secs_f64(),
    });
    let path = dir.join("last-run.json");
    let tmp = dir.join("last-run.json.tmp");
    let err = |source| DaemonError::State {
        path: path.display().to_string(),
        source,
    };
    std::fs::write(&tmp, format!("{v}\n")).map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)
}
