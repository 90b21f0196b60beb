//! Offline replay: pcap/pcapng files (or stdin) through the whole pipeline.
//!
//! With one worker everything runs inline on the calling thread: the reader
//! lends each frame to the decoder and the shard, nothing is copied. With N
//! workers the calling thread reads and decodes just enough to pick a shard by
//! the symmetric flow hash, copies frames into recycled batches, and N shard
//! threads process them; a correlator thread merges their observations in
//! packet-time order (each shard's stream is ordered; an observation is
//! released once every shard has reported a later time), so the records are
//! the same as with one worker. Replay applies backpressure instead of
//! dropping: every frame of the input is processed.

use super::merge::{Merger, ShardMsg};
use super::stats::DataPlaneStats;
use super::ObservationHandler;
use crate::capture::{open_path, CaptureError, Frame};
use crate::decode::decode;
use crate::flow::keep::{self, PacketKeeper};
use crate::flow::{packet_key, FlowConfig, FlowStats, Shard};
use crate::observation::{Observation, Termination};
use crate::output::{Sink, SinkError};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Frames per batch handed to a shard thread.
pub const BATCH_FRAMES: usize = 512;
/// Captured bytes per batch (a batch is sent when either bound is reached).
pub const BATCH_BYTES: usize = 512 * 1024;
/// Batches in flight per shard; with the pool this bounds replay memory to
/// about `workers × BATCH_QUEUE × BATCH_BYTES`.
pub const BATCH_QUEUE: usize = 4;
/// Observation messages queued towards the correlator.
pub const OBSERVATION_QUEUE: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{path}: {source}")]
    Capture { path: String, source: CaptureError },
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("a worker thread failed: {0}")]
    Worker(String),
}

pub struct ReplayOptions {
    pub inputs: Vec<PathBuf>,
    pub workers: usize,
    pub flow: FlowConfig,
    /// Progress line on stderr (only when stderr is a terminal).
    pub progress: bool,
}

/// What a replay did, for the stats record and the caller.
#[derive(Debug, Default)]
pub struct ReplayReport {
    pub data: DataPlaneStats,
    pub flows: FlowStats,
    pub elapsed: Duration,
    /// The first input error, after which the replay stopped (records so far were written).
    pub error: Option<String>,
}

struct Progress {
    enabled: bool,
    started: Instant,
    last: Instant,
}

impl Progress {
    fn new(enabled: bool) -> Progress {
        let now = Instant::now();
        Progress {
            enabled: enabled && std::io::stderr().is_terminal(),
            started: now,
            last: now,
        }
    }

    fn tick(&mut self, frames: u64, bytes: u64, consumed: u64, size: Option<u64>) {
        if !self.enabled || frames % 65_536 != 0 || self.last.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.last = Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let pct = size
            .filter(|&s| s > 0)
            .map(|s| format!(" {:5.1}%", 100.0 * consumed as f64 / s as f64))
            .unwrap_or_default();
        let _ = write!(
            std::io::stderr(),
            "\r{frames} packets, {:.1} MB{pct}, {:.0} packets/s   ",
            bytes as f64 / 1e6,
            frames as f64 / secs
        );
    }

    fn done(&self) {
        if self.enabled {
            let _ = writeln!(std::io::stderr());
        }
    }
}

/// Replays the inputs; observations go to `correlator` (records to `sink`).
pub fn replay<H: ObservationHandler + Send>(
    opts: &ReplayOptions,
    correlator: &mut H,
    sink: &mut Sink,
) -> Result<ReplayReport, ReplayError> {
    let started = Instant::now();
    let mut report = if opts.workers <= 1 {
        replay_inline(opts, correlator, sink)?
    } else {
        replay_sharded(opts, correlator, sink)?
    };
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Calls `each` for every frame of every input in order; stops at the first input error.
fn read_inputs(
    opts: &ReplayOptions,
    data: &mut DataPlaneStats,
    mut each: impl FnMut(&Frame<'_>),
) -> Option<String> {
    let mut progress = Progress::new(opts.progress);
    for path in &opts.inputs {
        let name = path.display().to_string();
        let mut reader = match open_path(path) {
            Ok(r) => r,
            Err(e) => return Some(format!("{name}: {e}")),
        };
        loop {
            match reader.next_frame() {
                Ok(Some(frame)) => {
                    data.frame(frame.ts.0, frame.linktype, frame.data.len(), frame.orig_len);
                    each(&frame);
                    let st = reader.stats();
                    progress.tick(
                        data.frames,
                        data.captured_bytes,
                        st.bytes_consumed,
                        st.file_size,
                    );
                }
                Ok(None) => break,
                Err(e) => {
                    progress.done();
                    data.capture(reader.stats());
                    return Some(format!("{name}: {e}"));
                }
            }
        }
        data.capture(reader.stats());
    }
    progress.done();
    None
}

fn replay_inline<H: ObservationHandler>(
    opts: &ReplayOptions,
    correlator: &mut H,
    sink: &mut Sink,
) -> Result<ReplayReport, ReplayError> {
    let mut shard = Shard::new(opts.flow.clone());
    let keeper = correlator.packet_keeper();
    let mut data = DataPlaneStats::default();
    let mut obs: Vec<Observation> = Vec::new();
    let mut sink_err: Option<SinkError> = None;
    let mut decode_stats = DataPlaneStats::default();
    let error = read_inputs(opts, &mut data, |frame| {
        match decode(frame.linktype, frame.data) {
            Ok(pkt) => {
                shard.process(frame.ts.0, &pkt, &mut obs);
                keep::offer(
                    keeper.as_deref(),
                    frame.ts.0,
                    frame.linktype.0,
                    frame.data,
                    frame.orig_len,
                    &pkt,
                );
            }
            Err(e) => decode_stats.anomaly(e.reason()),
        }
        for o in obs.drain(..) {
            if let Err(e) = correlator.handle(o, sink) {
                sink_err.get_or_insert(e);
            }
        }
    });
    if let Some(e) = sink_err {
        return Err(e.into());
    }
    data.merge(&decode_stats);
    shard.flush(Termination::EndOfInput, data.last_ts_ns, &mut obs);
    for o in obs.drain(..) {
        correlator.handle(o, sink)?;
    }
    Ok(ReplayReport {
        data,
        flows: shard.stats.clone(),
        elapsed: Duration::ZERO,
        error,
    })
}

/// A batch of frames copied for one shard; recycled through a pool.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    /// (timestamp ns, link type, start, end) into `bytes`, original length.
    frames: Vec<((u64, u16, u32, u32), u32)>,
}

fn replay_sharded<H: ObservationHandler + Send>(
    opts: &ReplayOptions,
    correlator: &mut H,
    sink: &mut Sink,
) -> Result<ReplayReport, ReplayError> {
    let n = opts.workers;
    let (obs_tx, obs_rx) = bounded::<ShardMsg>(OBSERVATION_QUEUE);
    let mut batch_txs = Vec::with_capacity(n);
    let mut pools = Vec::with_capacity(n);
    let mut data = DataPlaneStats::default();
    // The newest packet time of the input, set before the shards flush.
    let end_ns = AtomicU64::new(0);

    std::thread::scope(|scope| -> Result<ReplayReport, ReplayError> {
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, rx) = bounded::<Batch>(BATCH_QUEUE);
            let (pool_tx, pool_rx) = bounded::<Batch>(BATCH_QUEUE + 2);
            for _ in 0..BATCH_QUEUE + 1 {
                let _ = pool_tx.send(Batch::default());
            }
            batch_txs.push(tx);
            pools.push(pool_rx);
            let obs_tx = obs_tx.clone();
            let flow = opts.flow.clone();
            let end = &end_ns;
            let keeper = correlator.packet_keeper();
            handles
                .push(scope.spawn(move || shard_worker(i, flow, rx, pool_tx, obs_tx, end, keeper)));
        }
        drop(obs_tx);
        let merger = scope.spawn(move || merge_observations(n, obs_rx, correlator, sink));

        let mut current: Vec<Batch> = pools.iter().map(|p| p.recv().unwrap_or_default()).collect();
        let mut decode_stats = DataPlaneStats::default();
        let error = read_inputs(opts, &mut data, |frame| {
            let pkt = match decode(frame.linktype, frame.data) {
                Ok(p) => p,
                Err(e) => {
                    decode_stats.anomaly(e.reason());
                    return;
                }
            };
            let (key, _) = packet_key(&pkt);
            let i = (key.symmetric_hash() % n as u64) as usize;
            let b = &mut current[i];
            let start = b.bytes.len() as u32;
            b.bytes.extend_from_slice(frame.data);
            b.frames.push((
                (frame.ts.0, frame.linktype.0, start, b.bytes.len() as u32),
                frame.orig_len,
            ));
            if b.frames.len() >= BATCH_FRAMES || b.bytes.len() >= BATCH_BYTES {
                let mut next = pools[i].recv().unwrap_or_default();
                next.bytes.clear();
                next.frames.clear();
                let full = std::mem::replace(b, next);
                let _ = batch_txs[i].send(full);
            }
        });
        data.merge(&decode_stats);
        end_ns.store(data.last_ts_ns, Ordering::SeqCst);
        for (i, b) in current.into_iter().enumerate() {
            if !b.frames.is_empty() {
                let _ = batch_txs[i].send(b);
            }
        }
        drop(batch_txs);
        let mut flows = FlowStats::default();
        for h in handles {
            let (stats, shard_data) = h
                .join()
                .map_err(|_| ReplayError::Worker("shard thread panicked".into()))?;
            flows.merge(&stats);
            // Frames were counted by the reader; only the shards' own anomalies are added.
            data.decode_anomalies.extend(shard_data.decode_anomalies);
        }
        merger
            .join()
            .map_err(|_| ReplayError::Worker("correlator thread panicked".into()))??;
        Ok(ReplayReport {
            data,
            flows,
            elapsed: Duration::ZERO,
            error,
        })
    })
}

fn shard_worker(
    index: usize,
    flow: FlowConfig,
    rx: Receiver<Batch>,
    pool: Sender<Batch>,
    out: Sender<ShardMsg>,
    end_ns: &AtomicU64,
    keeper: Option<Arc<Mutex<PacketKeeper>>>,
) -> (FlowStats, DataPlaneStats) {
    let mut shard = Shard::new(flow);
    let mut obs = Vec::new();
    let data = DataPlaneStats::default();
    for mut batch in rx {
        // The keeper (evidence packets) is locked once per batch.
        let mut kept = keeper.as_ref().and_then(|k| k.lock().ok());
        for &((ts, lt, start, end), orig_len) in &batch.frames {
            let bytes = &batch.bytes[start as usize..end as usize];
            // The reader decoded this frame already; it decodes the same way here.
            if let Ok(pkt) = decode(crate::capture::LinkType(lt), bytes) {
                shard.process(ts, &pkt, &mut obs);
                if let Some(k) = kept.as_mut() {
                    k.keep(ts, lt, bytes, orig_len, &pkt);
                }
            }
        }
        drop(kept);
        batch.bytes.clear();
        batch.frames.clear();
        let _ = pool.try_send(batch);
        let watermark = shard.now_ns();
        let _ = out.send(ShardMsg {
            shard: index,
            obs: std::mem::take(&mut obs),
            watermark,
            done: false,
        });
    }
    // The batch channel closed: the reader is done and `end_ns` is final.
    shard.flush(
        Termination::EndOfInput,
        end_ns.load(Ordering::SeqCst),
        &mut obs,
    );
    let watermark = shard.now_ns();
    let _ = out.send(ShardMsg {
        shard: index,
        obs,
        watermark,
        done: true,
    });
    (shard.stats.clone(), data)
}

/// Merges the shards' ordered observation streams into one, in packet-time order.
fn merge_observations<H: ObservationHandler>(
    n: usize,
    rx: Receiver<ShardMsg>,
    correlator: &mut H,
    sink: &mut Sink,
) -> Result<(), ReplayError> {
    let mut merger = Merger::new(n);
    loop {
        let end_of_input = match rx.recv() {
            Ok(msg) => {
                merger.push(msg);
                false
            }
            Err(_) => true,
        };
        merger.release(end_of_input, |o| correlator.handle(o, sink))?;
        if end_of_input || merger.all_done() {
            return Ok(());
        }
    }
}
