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
//! Signals: SIGTERM and SIGINT stop capture, flush every open flow as a record
//! with termination "shutdown", write the stats record and the state file, and
//! exit 0. SIGHUP reopens the output file (after logrotate moved it); files
//! the correlator loads (inventory, catalog, identity) are reloaded at the
//! same point once the correlator consumes them. The watchdog (WATCHDOG=1) is
//! only fed while every capture worker reports.

pub mod metrics;
pub mod notify;
pub use crate::capture::privileges;

use crate::capture::live::{open_interface, LiveError, LiveOptions};
use crate::config::{Config, OutputPath};
use crate::correlate::{Correlator, CorrelatorOptions};
use crate::output::{Sink, SinkError};
use crate::pipeline::live::{self, LiveRunError, OutputMsg};
use crate::pipeline::replay::ReplayReport;
use notify::Notifier;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How often the control plane checks the data plane's health when systemd
/// asked for no watchdog.
pub const HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(1);

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
    #[error(transparent)]
    Inventory(#[from] crate::mdm::MdmError),
    #[error(transparent)]
    Run(#[from] LiveRunError),
    #[error("capture failed: {0}")]
    CaptureFailed(String),
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
    // Identity here: static mappings, the MDM inventory file (read after the
    // privilege drop) and DHCP seen live. The identity feed socket is not wired
    // into the daemon yet.
    let inventory = match &cfg.mdm.inventory {
        Some(path) => Some(Arc::new(crate::mdm::load_inventory(path)?)),
        None => None,
    };
    let correlator = Correlator::new(CorrelatorOptions {
        dns_records: cfg.output.dns_records,
        static_identities: cfg.identity_static.clone(),
        inventory,
        ..CorrelatorOptions::default()
    });
    let run =
        live::start(handles, cfg.flow.clone(), correlator, sink).map_err(DaemonError::Start)?;
    let endpoint = Arc::new(metrics::Endpoint {
        state: run.state.clone(),
        sources: Vec::new(),
    });
    let notifier = Notifier::from_env();
    let status = format!(
        "capturing on {} ({workers} workers), metrics on {}",
        cfg.capture.interfaces.join(","),
        cfg.metrics_listen
    );
    let stop = rt.block_on(control(
        signals,
        listener,
        endpoint,
        run.output.clone(),
        &notifier,
        &status,
    ));
    notifier.notify("STOPPING=1");
    let why = match &stop {
        Stop::Signal(s) => format!("{s}: flushing open flows"),
        Stop::Failed(e) => format!("capture failed ({e}): flushing open flows"),
    };
    eprintln!("nightjar: {why}");
    let state = run.state.clone();
    let report = run.shutdown()?;
    let written = state.records_written.load(Ordering::Relaxed);
    write_state(&cfg.state_dir, &report, written, &stop)?;
    eprintln!(
        "nightjar: stopped: {} packets, {} flows, {written} records",
        report.data.frames, report.flows.created
    );
    match stop {
        Stop::Signal(_) => Ok(()),
        Stop::Failed(e) => Err(DaemonError::CaptureFailed(e)),
    }
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
    output: crossbeam_channel::Sender<OutputMsg>,
    notifier: &Notifier,
    status: &str,
) -> Stop {
    let server = tokio::spawn(metrics::serve(listener, endpoint.clone()));
    notifier.notify(&format!("READY=1\nSTATUS={status}"));
    eprintln!("nightjar: ready: {status}");
    let watchdog = Notifier::watchdog_interval();
    let mut tick = tokio::time::interval(watchdog.unwrap_or(HEALTH_CHECK_INTERVAL));
    let stop = loop {
        tokio::select! {
            _ = term.recv() => break Stop::Signal("SIGTERM"),
            _ = int.recv() => break Stop::Signal("SIGINT"),
            _ = hup.recv() => {
                // Reopen the output (logrotate). Inventory, catalog and identity
                // reloads belong here once the correlator loads those files.
                match output.try_send(OutputMsg::Reopen) {
                    Ok(()) => eprintln!("nightjar: SIGHUP: reopening output"),
                    Err(_) => eprintln!("nightjar: SIGHUP: output thread busy, reopen skipped"),
                }
            }
            _ = tick.tick() => {
                if let Some(f) = endpoint.state.failed.lock().ok().and_then(|f| f.clone()) {
                    break Stop::Failed(f);
                }
                if watchdog.is_some() && endpoint.health().is_ok() {
                    notifier.notify("WATCHDOG=1");
                }
            }
        }
    };
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
