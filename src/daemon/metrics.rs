//! The Prometheus endpoint: `/metrics` (text exposition format 0.0.4) and
//! `/healthz`, served by a small HTTP/1.1 responder on the tokio runtime.
//!
//! Owns: rendering the data plane's published counters ([`LiveState`]) as
//! metrics named per Prometheus conventions (`nightjar_` prefix, `_total` for
//! counters, base units), and answering one request per connection
//! (`Connection: close`). Bounds: [`MAX_CONNECTIONS`] served at once (more
//! wait in the listen backlog), [`MAX_REQUEST_BYTES`] of request head, and
//! [`REQUEST_TIMEOUT`] to send it. Later stages (MDM pollers, alerts) add
//! their metrics through [`MetricSource`], without touching this file's
//! data-plane rendering.

use crate::pipeline::live::LiveState;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Connections served at once; the endpoint is for a scraper or two.
pub const MAX_CONNECTIONS: usize = 16;
/// Largest request head read; a scrape request is a few hundred bytes.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Time a client gets to send its request head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A worker that has not reported for this long makes `/healthz` fail.
pub const HEALTH_STALE_AFTER: Duration = Duration::from_secs(10);

/// Something that contributes metrics of its own (MDM pollers, alerting).
pub trait MetricSource: Send + Sync {
    /// Appends complete metric families (HELP, TYPE and samples) to `out`.
    fn render(&self, out: &mut String);
}

pub struct Endpoint {
    /// The data plane (`None` for `nightjar correlate`, which captures nothing).
    pub state: Option<Arc<LiveState>>,
    pub sources: Vec<Arc<dyn MetricSource>>,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub(crate) fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A family with one unlabelled sample.
pub(crate) fn single(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    value: impl std::fmt::Display,
) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

fn labelled(out: &mut String, name: &str, label: &str, values: &BTreeMap<String, u64>) {
    for (k, v) in values {
        let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {v}", escape(k));
    }
}

impl Endpoint {
    /// The `/metrics` body.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        if let Some(state) = &self.state {
            render_data_plane(state, &mut out);
        }
        for s in &self.sources {
            s.render(&mut out);
        }
        out
    }
}

/// The data plane's families.
fn render_data_plane(state: &LiveState, out: &mut String) {
    let snap = state.snapshot();
    let mut packets = BTreeMap::new();
    let mut bytes = BTreeMap::new();
    let mut kdrops = BTreeMap::new();
    let mut ifdrops = BTreeMap::new();
    let mut workers = BTreeMap::new();
    let mut decode = BTreeMap::new();
    let mut anomalies = BTreeMap::new();
    let (mut active, mut created, mut evicted, mut expired, mut queue_drops) = (0, 0, 0, 0, 0);
    for w in &snap {
        let i = w.interface.clone();
        *packets.entry(i.clone()).or_insert(0) += w.data.frames;
        *bytes.entry(i.clone()).or_insert(0) += w.data.wire_bytes;
        *kdrops.entry(i.clone()).or_insert(0) += w.kernel.kernel_drops;
        // Every handle of an interface reports the same interface counter.
        let e = ifdrops.entry(i.clone()).or_insert(0);
        *e = (*e).max(w.kernel.interface_drops);
        *workers.entry(i).or_insert(0) += 1;
        for (k, v) in &w.data.decode_anomalies {
            *decode.entry(k.to_string()).or_insert(0) += v;
        }
        for (k, v) in &w.flows.anomalies {
            *anomalies.entry(k.to_string()).or_insert(0) += v;
        }
        active += w.active_flows;
        created += w.flows.created;
        evicted += w.flows.evicted;
        expired += w.flows.expired;
        queue_drops += w.queue_drops;
    }
    family(
        out,
        "nightjar_packets_total",
        "counter",
        "Frames captured per interface.",
    );
    labelled(out, "nightjar_packets_total", "interface", &packets);
    family(
        out,
        "nightjar_bytes_total",
        "counter",
        "Bytes on the wire of the frames captured per interface.",
    );
    labelled(out, "nightjar_bytes_total", "interface", &bytes);
    family(
        out,
        "nightjar_kernel_drops_total",
        "counter",
        "Frames the kernel dropped because a capture ring was full (pcap ps_drop).",
    );
    labelled(out, "nightjar_kernel_drops_total", "interface", &kdrops);
    family(
        out,
        "nightjar_interface_drops_total",
        "counter",
        "Frames the interface or driver dropped (pcap ps_ifdrop).",
    );
    labelled(out, "nightjar_interface_drops_total", "interface", &ifdrops);
    family(
        out,
        "nightjar_capture_workers",
        "gauge",
        "Capture workers (flow shards) per interface.",
    );
    labelled(out, "nightjar_capture_workers", "interface", &workers);

    family(
        out,
        "nightjar_worker_packets_total",
        "counter",
        "Frames each capture worker (fanout member) received.",
    );
    for w in &snap {
        let _ = writeln!(
            out,
            "nightjar_worker_packets_total{{interface=\"{}\",worker=\"{}\"}} {}",
            escape(&w.interface),
            w.worker,
            w.data.frames
        );
    }
    family(
        out,
        "nightjar_queue_drops_total",
        "counter",
        "Items dropped because the next stage's queue was full, by stage.",
    );
    let _ = writeln!(
        out,
        "nightjar_queue_drops_total{{stage=\"correlator\"}} {queue_drops}"
    );
    let _ = writeln!(
        out,
        "nightjar_queue_drops_total{{stage=\"output\"}} {}",
        state.output_errors.load(Ordering::Relaxed)
    );
    single(
        out,
        "nightjar_merge_released_early_total",
        "counter",
        "Observations released before every shard's clock passed them (merge bound reached).",
        state.merge_released_early.load(Ordering::Relaxed),
    );

    family(
        out,
        "nightjar_flows_active",
        "gauge",
        "Flows held in the flow tables.",
    );
    let _ = writeln!(out, "nightjar_flows_active {active}");
    family(
        out,
        "nightjar_flows_created_total",
        "counter",
        "Flows created.",
    );
    let _ = writeln!(out, "nightjar_flows_created_total {created}");
    family(
        out,
        "nightjar_flows_expired_total",
        "counter",
        "Flows ended by FIN/RST, idle timeout or shutdown.",
    );
    let _ = writeln!(out, "nightjar_flows_expired_total {expired}");
    family(
        out,
        "nightjar_flows_evicted_total",
        "counter",
        "Flows pushed out of a full flow table.",
    );
    let _ = writeln!(out, "nightjar_flows_evicted_total {evicted}");
    family(
        out,
        "nightjar_flow_anomalies_total",
        "counter",
        "Handshake reassembly, QUIC decryption and other flow-level anomalies, by reason.",
    );
    labelled(out, "nightjar_flow_anomalies_total", "reason", &anomalies);
    family(
        out,
        "nightjar_decode_anomalies_total",
        "counter",
        "Frames that did not decode to an IP packet, by reason.",
    );
    labelled(out, "nightjar_decode_anomalies_total", "reason", &decode);

    single(
        out,
        "nightjar_records_written_total",
        "counter",
        "Records written to the output.",
        state.records_written.load(Ordering::Relaxed),
    );
    single(
        out,
        "nightjar_alerts_total",
        "counter",
        "AN1717 alert records written (created and updated).",
        state.alerts.load(Ordering::Relaxed),
    );
    family(
        out,
        "nightjar_uptime_seconds",
        "gauge",
        "Seconds since the data plane started.",
    );
    let _ = writeln!(
        out,
        "nightjar_uptime_seconds {:.3}",
        state.started.elapsed().as_secs_f64()
    );
}

impl Endpoint {
    /// `/healthz`: ok while every worker reports and none failed.
    pub fn health(&self) -> Result<(), String> {
        let Some(state) = &self.state else {
            return Ok(());
        };
        if let Some(f) = state.failed.lock().ok().and_then(|f| f.clone()) {
            return Err(f);
        }
        if !state.healthy(HEALTH_STALE_AFTER) {
            return Err("a capture worker stopped reporting".into());
        }
        Ok(())
    }

    fn respond(&self, head: &[u8]) -> (u16, &'static str, String) {
        let text = String::from_utf8_lossy(head);
        let mut parts = text.lines().next().unwrap_or("").split(' ');
        let method = parts.next().unwrap_or("");
        let path = parts.next().unwrap_or("");
        let path = path.split('?').next().unwrap_or("");
        if method != "GET" && method != "HEAD" {
            return (
                405,
                "text/plain; charset=utf-8",
                "method not allowed\n".into(),
            );
        }
        match path {
            "/metrics" => (
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                self.render(),
            ),
            "/healthz" => match self.health() {
                Ok(()) => (200, "text/plain; charset=utf-8", "ok\n".into()),
                Err(e) => (
                    503,
                    "text/plain; charset=utf-8",
                    format!("unhealthy: {e}\n"),
                ),
            },
            _ => (404, "text/plain; charset=utf-8", "not found\n".into()),
        }
    }
}

/// Serves the endpoint on `listener` until the runtime stops.
pub async fn serve(listener: tokio::net::TcpListener, endpoint: Arc<Endpoint>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, handle(stream, &endpoint)).await;
        });
    }
}

async fn handle(mut stream: tokio::net::TcpStream, endpoint: &Endpoint) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.len() >= MAX_REQUEST_BYTES {
            break;
        }
    }
    let head_only = head.starts_with(b"HEAD ");
    let (status, ctype, body) = if head.len() >= MAX_REQUEST_BYTES {
        (
            431,
            "text/plain; charset=utf-8",
            "request too large\n".to_string(),
        )
    } else {
        endpoint.respond(&head)
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let mut resp = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        resp.extend_from_slice(body.as_bytes());
    }
    stream.write_all(&resp).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_routes() {
        let state = Arc::new(LiveState::new(&[]));
        state.records_written.store(7, Ordering::Relaxed);
        let e = Endpoint {
            state: Some(state),
            sources: Vec::new(),
        };
        let body = e.render();
        assert!(
            body.contains("nightjar_records_written_total 7\n"),
            "{body}"
        );
        assert!(body.contains("# TYPE nightjar_flows_active gauge\n"));
        assert_eq!(e.respond(b"GET /metrics HTTP/1.1\r\n\r\n").0, 200);
        assert_eq!(e.respond(b"GET /healthz HTTP/1.1\r\n\r\n").0, 200);
        assert_eq!(e.respond(b"GET /nope HTTP/1.1\r\n\r\n").0, 404);
        assert_eq!(e.respond(b"POST /metrics HTTP/1.1\r\n\r\n").0, 405);
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
