//! Live data plane: capture workers, the correlator thread and the output thread.
//!
//! Threads and queues:
//! - one capture worker per handle (N per interface, joined in a fanout group
//!   by `capture::live`), each owning its own flow [`Shard`]: it decodes
//!   straight from libpcap's ring and never waits on anyone. Its observations
//!   go to the correlator through one bounded `crossbeam-channel`
//!   ([`LIVE_OBSERVATION_QUEUE`] messages); when it is full the worker keeps
//!   them (up to [`WORKER_PENDING_MAX`]) and retries, then drops and counts.
//! - the correlator thread merges the shards' streams in packet-time order
//!   with [`Merger`] (the same merge as replay, driven by the workers'
//!   watermarks: a quiet worker advances its clock to the wall clock every
//!   read timeout), so live records are the records a replay of the same
//!   packets gives. It writes them into a channel sink.
//! - the output thread appends whole lines to the file or stdout and reopens
//!   the file when told to (SIGHUP). It may block the correlator (bounded
//!   queue of [`OUTPUT_QUEUE`] buffers): a record, once made, is not dropped.
//!
//! - the control plane hands the correlator updates (a merged MDM inventory, new
//!   lifecycle events, a reloaded catalog or identity file, coverage ticks) through
//!   one bounded queue ([`CONTROL_QUEUE`], [`LiveRun::control`]) and identity
//!   socket lines through another ([`FEED_QUEUE`], [`LiveRun::feed`]). Neither
//!   sender ever blocks: a full queue refuses the message and the sender counts
//!   the drop. The correlator applies them between merged observations.
//!
//! Counters for the metrics endpoint are published by every worker into
//! [`LiveState`] at least every [`PUBLISH_INTERVAL`].

use super::merge::{Merger, ShardMsg};
use super::replay::ReplayReport;
use super::stats::DataPlaneStats;
use super::ObservationHandler;
use crate::capture::live::{LiveHandle, LiveStats};
use crate::correlate::identity::FeedEntry;
use crate::correlate::{Correlator, Update};
use crate::decode::decode;
use crate::flow::{FlowConfig, FlowStats, Shard};
use crate::observation::{Observation, Termination};
use crate::output::{Sink, SinkError};
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Messages queued from all workers to the correlator. Each carries up to
/// [`WORKER_SEND_BATCH`] observations, so this holds a few seconds of a busy
/// link's flow ends while the correlator catches up.
pub const LIVE_OBSERVATION_QUEUE: usize = 1024;
/// Observations a worker batches before sending (it also sends every
/// [`WORKER_SEND_INTERVAL`], with its watermark, even with nothing to say).
pub const WORKER_SEND_BATCH: usize = 64;
/// Most observations a worker keeps while the correlator queue is full;
/// beyond this it drops them (counted) rather than block capture.
pub const WORKER_PENDING_MAX: usize = 65_536;
/// Buffers of whole lines queued from the correlator to the output thread.
pub const OUTPUT_QUEUE: usize = 64;
/// Control messages queued to the correlator: the control plane sends a handful per
/// poll interval or signal, so this absorbs a burst of webhook-derived updates while
/// the correlator is busy with a traffic peak.
pub const CONTROL_QUEUE: usize = 256;
/// Identity socket lines queued to the correlator: a second of a large VPN
/// concentrator's connect/disconnect hooks after a restart.
pub const FEED_QUEUE: usize = 4096;
/// How often a busy worker reports its watermark.
pub const WORKER_SEND_INTERVAL: Duration = Duration::from_millis(50);
/// How often workers publish their counters for the metrics endpoint.
pub const PUBLISH_INTERVAL: Duration = Duration::from_millis(250);
/// A quiet worker advances its clock to the wall clock minus this, so a packet
/// stamped by the kernel just before the read timeout still counts as in order.
pub const CLOCK_SLACK_NS: u64 = 200_000_000;

/// What one worker last published.
#[derive(Clone, Debug, Default)]
pub struct WorkerSnapshot {
    pub interface: String,
    /// Worker index within the interface.
    pub worker: usize,
    /// Frames, bytes and decode anomalies.
    pub data: DataPlaneStats,
    pub flows: FlowStats,
    pub active_flows: u64,
    pub kernel: LiveStats,
    /// Observations dropped because the correlator queue stayed full.
    pub queue_drops: u64,
    /// When the worker last made progress (for /healthz and the watchdog).
    pub beat: Option<Instant>,
    pub finished: bool,
}

/// State shared between the data plane and the control plane.
pub struct LiveState {
    pub workers: Mutex<Vec<WorkerSnapshot>>,
    /// Set by the control plane: workers flush and stop.
    pub stop: AtomicBool,
    /// Set by a worker whose capture failed (the daemon then exits non-zero).
    pub failed: Mutex<Option<String>>,
    /// Records the output thread wrote.
    pub records_written: AtomicU64,
    /// Records lost to output write errors.
    pub output_errors: AtomicU64,
    /// Observations the merge released before every shard's watermark passed them.
    pub merge_released_early: AtomicU64,
    /// AN1717 alert records the correlator wrote.
    pub alerts: AtomicU64,
    /// Wall-clock time (ns) at which shutdown flushes every shard: one time for all,
    /// so flows flushed together reach the correlator in one order whatever shard
    /// holds them. 0 = not shutting down (a worker whose capture failed uses its clock).
    pub flush_at_ns: AtomicU64,
    pub started: Instant,
}

impl LiveState {
    pub fn new(handles: &[LiveHandle]) -> LiveState {
        LiveState {
            workers: Mutex::new(
                handles
                    .iter()
                    .map(|h| WorkerSnapshot {
                        interface: h.interface.clone(),
                        worker: h.worker,
                        beat: Some(Instant::now()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            stop: AtomicBool::new(false),
            failed: Mutex::new(None),
            records_written: AtomicU64::new(0),
            output_errors: AtomicU64::new(0),
            merge_released_early: AtomicU64::new(0),
            alerts: AtomicU64::new(0),
            flush_at_ns: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    pub fn snapshot(&self) -> Vec<WorkerSnapshot> {
        self.workers.lock().map(|w| w.clone()).unwrap_or_default()
    }

    /// Every worker made progress within `within` and none failed.
    pub fn healthy(&self, within: Duration) -> bool {
        let failed = self.failed.lock().map(|f| f.is_some()).unwrap_or(true);
        !failed
            && self
                .snapshot()
                .iter()
                .all(|w| w.beat.is_some_and(|b| b.elapsed() <= within))
    }
}

/// Messages from the control plane to the correlator thread.
#[derive(Debug)]
pub enum CorrelatorMsg {
    /// Replace or extend an input (inventory, catalog, events, identity lines).
    Update(Update),
    /// Write the `nightjar.coverage` records as they stand.
    Coverage,
}

/// What the correlator thread drives: the [`Correlator`] (`[fleet] role =
/// "all"`) or the fleet sensor's publisher (`role = "sensor"`).
pub trait LiveHandler: ObservationHandler + Send + 'static {
    /// A control-plane update (inventory, catalog, events, identity lines).
    fn update(&mut self, u: Update);
    /// Writes the periodic coverage records (nothing by default).
    fn write_coverage(&mut self, _sink: &mut Sink) -> Result<(), SinkError> {
        Ok(())
    }
    /// Alert records written so far (for the metrics).
    fn alert_records(&self) -> u64 {
        0
    }
    /// Called when nothing arrived for [`IDLE_TICK`] (background work).
    fn idle(&mut self) {}
    /// End of capture: the end-of-run records.
    fn finish(&mut self, report: &ReplayReport, sink: &mut Sink) -> Result<(), SinkError>;
}

/// How long the correlator thread waits for input before [`LiveHandler::idle`].
pub const IDLE_TICK: Duration = Duration::from_secs(1);

impl LiveHandler for Correlator {
    fn update(&mut self, u: Update) {
        Correlator::update(self, u);
    }
    fn write_coverage(&mut self, sink: &mut Sink) -> Result<(), SinkError> {
        Correlator::write_coverage(self, sink)
    }
    fn alert_records(&self) -> u64 {
        Correlator::alert_records(self)
    }
    fn finish(&mut self, report: &ReplayReport, sink: &mut Sink) -> Result<(), SinkError> {
        Correlator::finish(self, report, sink)
    }
}

/// Messages to the output thread.
pub enum OutputMsg {
    /// Reopen the output file (logrotate moved it).
    Reopen,
}

#[derive(Debug, thiserror::Error)]
pub enum LiveRunError {
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("a data-plane thread panicked: {0}")]
    Panic(&'static str),
}

pub fn wall_clock_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The running data plane. [`LiveRun::output`] is how the control plane asks
/// for a reopen; [`LiveRun::shutdown`] flushes every open flow and waits.
pub struct LiveRun<H: LiveHandler> {
    pub state: Arc<LiveState>,
    pub output: Sender<OutputMsg>,
    /// Updates for the correlator ([`CONTROL_QUEUE`]); send with `try_send`.
    pub control: Sender<CorrelatorMsg>,
    /// Identity socket lines for the correlator ([`FEED_QUEUE`]).
    pub feed: Sender<FeedEntry>,
    workers: Vec<std::thread::JoinHandle<(DataPlaneStats, FlowStats)>>,
    finish_tx: Sender<ReplayReport>,
    correlator: std::thread::JoinHandle<Result<H, SinkError>>,
    writer: std::thread::JoinHandle<Result<(), SinkError>>,
}

/// Starts the workers (one per handle), the correlator and the output thread.
pub fn start<H: LiveHandler>(
    handles: Vec<LiveHandle>,
    flow: FlowConfig,
    correlator: H,
    mut sink: Sink,
) -> std::io::Result<LiveRun<H>> {
    let state = Arc::new(LiveState::new(&handles));
    let n = handles.len();
    // Evidence packet keepers (one per worker), asked for before the correlator moves.
    let mut keepers: Vec<_> = (0..n).map(|_| correlator.packet_keeper()).collect();
    let (obs_tx, obs_rx) = bounded::<ShardMsg>(LIVE_OBSERVATION_QUEUE);
    let (out_tx, out_rx) = bounded::<OutputMsg>(OUTPUT_QUEUE);
    let (lines_tx, lines_rx) = bounded::<Vec<u8>>(OUTPUT_QUEUE);
    let (finish_tx, finish_rx) = bounded::<ReplayReport>(1);
    let (ctl_tx, ctl_rx) = bounded::<CorrelatorMsg>(CONTROL_QUEUE);
    let (feed_tx, feed_rx) = bounded::<FeedEntry>(FEED_QUEUE);

    let writer = {
        let state = state.clone();
        std::thread::Builder::new()
            .name("nightjar-output".into())
            .spawn(move || output_thread(out_rx, lines_rx, &mut sink, &state))?
    };
    let correlator = {
        let state = state.clone();
        std::thread::Builder::new()
            .name("nightjar-correlate".into())
            .spawn(move || {
                let inputs = CorrelatorInputs {
                    obs: obs_rx,
                    control: ctl_rx,
                    feed: feed_rx,
                    finish: finish_rx,
                };
                correlator_thread(n, inputs, correlator, lines_tx, &state)
            })?
    };
    let mut workers = Vec::with_capacity(n);
    for (i, h) in handles.into_iter().enumerate() {
        let tx = obs_tx.clone();
        let state = state.clone();
        let flow = flow.clone();
        let name = format!("nightjar-{}-{}", h.interface, h.worker);
        let keeper = keepers[i].take();
        workers.push(
            std::thread::Builder::new()
                .name(name)
                .spawn(move || capture_worker(i, h, flow, tx, &state, keeper))?,
        );
    }
    Ok(LiveRun {
        state,
        output: out_tx,
        control: ctl_tx,
        feed: feed_tx,
        workers,
        finish_tx,
        correlator,
        writer,
    })
}

impl<H: LiveHandler> LiveRun<H> {
    /// Stops capture, flushes every open flow (termination "shutdown"), writes
    /// the stats record and waits until the output is written. Gives the correlator
    /// back (its baselines are state to keep).
    pub fn shutdown(self) -> Result<(ReplayReport, H), LiveRunError> {
        let end = wall_clock_ns().saturating_sub(CLOCK_SLACK_NS);
        self.state.flush_at_ns.store(end, Ordering::SeqCst);
        self.state.stop.store(true, Ordering::SeqCst);
        let mut report = ReplayReport::default();
        let mut panicked = None;
        for w in self.workers {
            match w.join() {
                Ok((data, flows)) => {
                    report.data.merge(&data);
                    report.flows.merge(&flows);
                }
                Err(_) => panicked = Some("capture worker"),
            }
        }
        report.elapsed = self.state.started.elapsed();
        report.error = self.state.failed.lock().ok().and_then(|f| f.clone());
        let summary = ReplayReport {
            data: report.data.clone(),
            flows: report.flows.clone(),
            elapsed: report.elapsed,
            error: report.error.clone(),
        };
        let _ = self.finish_tx.send(summary);
        let corr = self
            .correlator
            .join()
            .map_err(|_| LiveRunError::Panic("correlator"))?;
        drop(self.output);
        drop(self.control);
        drop(self.feed);
        let out = self
            .writer
            .join()
            .map_err(|_| LiveRunError::Panic("output"))?;
        let correlator = corr?;
        out?;
        if let Some(p) = panicked {
            return Err(LiveRunError::Panic(p));
        }
        Ok((report, correlator))
    }
}

struct WorkerOut<'a> {
    index: usize,
    tx: Sender<ShardMsg>,
    pending: Vec<Observation>,
    drops: u64,
    last_send: Instant,
    state: &'a LiveState,
}

impl WorkerOut<'_> {
    /// Sends pending observations with the watermark, never blocking.
    fn send(&mut self, watermark: u64) {
        let msg = ShardMsg {
            shard: self.index,
            obs: std::mem::take(&mut self.pending),
            watermark,
            done: false,
        };
        self.last_send = Instant::now();
        match self.tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(msg)) | Err(TrySendError::Disconnected(msg)) => {
                self.pending = msg.obs;
                if self.pending.len() > WORKER_PENDING_MAX {
                    self.drops += self.pending.len() as u64;
                    self.pending.clear();
                }
            }
        }
    }

    fn publish(
        &self,
        data: &DataPlaneStats,
        shard: &Shard,
        kernel: Option<LiveStats>,
        finished: bool,
    ) {
        if let Ok(mut w) = self.state.workers.lock() {
            if let Some(s) = w.get_mut(self.index) {
                s.data.clone_from(data);
                s.flows.clone_from(&shard.stats);
                s.active_flows = shard.active() as u64;
                if let Some(k) = kernel {
                    s.kernel = k;
                }
                s.queue_drops = self.drops;
                s.beat = Some(Instant::now());
                s.finished = finished;
            }
        }
    }
}

fn capture_worker(
    index: usize,
    mut handle: LiveHandle,
    flow: FlowConfig,
    tx: Sender<ShardMsg>,
    state: &LiveState,
    keeper: Option<Arc<std::sync::Mutex<crate::flow::keep::PacketKeeper>>>,
) -> (DataPlaneStats, FlowStats) {
    let mut shard = Shard::new(flow);
    let mut data = DataPlaneStats::default();
    let mut out = WorkerOut {
        index,
        tx,
        pending: Vec::new(),
        drops: 0,
        last_send: Instant::now(),
        state,
    };
    let mut last_publish = Instant::now();
    let mut since_check: u32 = 0;
    while !state.stop.load(Ordering::Relaxed) {
        match handle.next_frame() {
            Ok(Some(frame)) => {
                data.frame(frame.ts.0, frame.linktype, frame.data.len(), frame.orig_len);
                match decode(frame.linktype, frame.data) {
                    Ok(pkt) => {
                        shard.process(frame.ts.0, &pkt, &mut out.pending);
                        crate::flow::keep::offer(
                            keeper.as_deref(),
                            frame.ts.0,
                            frame.linktype.0,
                            frame.data,
                            frame.orig_len,
                            &pkt,
                        );
                    }
                    Err(e) => data.anomaly(e.reason()),
                }
                since_check += 1;
                // Reading the clock every packet would cost more than it tells.
                if since_check < 64 && out.pending.len() < WORKER_SEND_BATCH {
                    continue;
                }
            }
            Ok(None) => {
                let mut now = wall_clock_ns().saturating_sub(CLOCK_SLACK_NS);
                // Never past the shutdown flush time: every shard flushes at that one time.
                match state.flush_at_ns.load(Ordering::SeqCst) {
                    0 => {}
                    t => now = now.min(t),
                }
                shard.advance(now, &mut out.pending);
            }
            Err(e) => {
                if let Ok(mut f) = state.failed.lock() {
                    f.get_or_insert(e.to_string());
                }
                break;
            }
        }
        since_check = 0;
        if out.pending.len() >= WORKER_SEND_BATCH || out.last_send.elapsed() >= WORKER_SEND_INTERVAL
        {
            out.send(shard.now_ns());
        }
        if last_publish.elapsed() >= PUBLISH_INTERVAL {
            last_publish = Instant::now();
            let kernel = handle.stats();
            out.publish(&data, &shard, kernel, false);
        }
    }
    // Shutdown (or a failed capture): every open flow becomes a record.
    let kernel = handle.stats();
    drop(handle);
    let end = match state.flush_at_ns.load(Ordering::SeqCst) {
        0 => wall_clock_ns().saturating_sub(CLOCK_SLACK_NS),
        t => t,
    };
    shard.flush(Termination::Shutdown, end, &mut out.pending);
    // The last message must arrive: capture is over, so this may block.
    let last = ShardMsg {
        shard: index,
        obs: std::mem::take(&mut out.pending),
        watermark: shard.now_ns(),
        done: true,
    };
    if out.tx.send(last).is_err() {
        // The correlator is gone (it failed): what this shard held is lost.
        out.drops += 1;
    }
    out.publish(&data, &shard, kernel, true);
    (data, shard.stats.clone())
}

struct CorrelatorInputs {
    obs: Receiver<ShardMsg>,
    control: Receiver<CorrelatorMsg>,
    feed: Receiver<FeedEntry>,
    finish: Receiver<ReplayReport>,
}

fn correlator_thread<H: LiveHandler>(
    n: usize,
    inputs: CorrelatorInputs,
    mut correlator: H,
    lines: Sender<Vec<u8>>,
    state: &LiveState,
) -> Result<H, SinkError> {
    let CorrelatorInputs {
        obs: rx,
        mut control,
        mut feed,
        finish,
    } = inputs;
    let mut sink = Sink::channel(lines);
    let mut merger = Merger::new(n);
    loop {
        let mut end = false;
        crossbeam_channel::select! {
            recv(rx) -> msg => match msg {
                Ok(msg) => merger.push(msg),
                Err(_) => end = true,
            },
            recv(control) -> msg => match msg {
                Ok(CorrelatorMsg::Update(u)) => correlator.update(u),
                Ok(CorrelatorMsg::Coverage) => correlator.write_coverage(&mut sink)?,
                Err(_) => control = crossbeam_channel::never(),
            },
            recv(feed) -> line => match line {
                Ok(e) => correlator.update(Update::Feed(vec![e])),
                Err(_) => feed = crossbeam_channel::never(),
            },
            default(IDLE_TICK) => correlator.idle(),
        }
        merger.release(end, |o| correlator.handle(o, &mut sink))?;
        state
            .merge_released_early
            .store(merger.released_early, Ordering::Relaxed);
        state
            .alerts
            .store(correlator.alert_records(), Ordering::Relaxed);
        sink.flush()?;
        if end || merger.all_done() {
            break;
        }
    }
    // Updates that arrived with the last observations still count.
    for msg in control.try_iter() {
        if let CorrelatorMsg::Update(u) = msg {
            correlator.update(u);
        }
    }
    if let Ok(report) = finish.recv() {
        correlator.finish(&report, &mut sink)?;
    }
    state
        .alerts
        .store(correlator.alert_records(), Ordering::Relaxed);
    sink.flush()?;
    Ok(correlator)
}

fn output_thread(
    ctl: Receiver<OutputMsg>,
    lines: Receiver<Vec<u8>>,
    sink: &mut Sink,
    state: &LiveState,
) -> Result<(), SinkError> {
    let write = |sink: &mut Sink, buf: &[u8]| {
        let before = sink.records;
        let res = sink.write_lines(buf).and_then(|_| sink.flush());
        let n = sink.records - before;
        match res {
            Ok(()) => {
                state.records_written.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                state.output_errors.fetch_add(n, Ordering::Relaxed);
                eprintln!("nightjar: {e}");
            }
        }
    };
    let mut ctl_open = true;
    loop {
        if !ctl_open {
            // Shutdown: only the correlator's last lines are left.
            for buf in lines.iter() {
                write(sink, &buf);
            }
            break;
        }
        crossbeam_channel::select! {
            recv(lines) -> m => match m {
                Ok(buf) => write(sink, &buf),
                Err(_) => break,
            },
            recv(ctl) -> m => match m {
                Ok(OutputMsg::Reopen) => {
                    if let Err(e) = sink.reopen() {
                        eprintln!("nightjar: {e}");
                    }
                }
                Err(_) => ctl_open = false,
            },
        }
    }
    sink.flush()
}
