//! Labelled evaluation scenarios for attribution and AN1717: a deterministic
//! generator of a fleet's simulated day as a pcap, with its inventory, lifecycle
//! events, app catalog and the truth (which app made each flow, which background
//! episodes are malicious).
//!
//! The traffic is synthetic but its TLS ClientHellos are real bytes from real stacks
//! (captures of the shared corpus, `tests/data/hellos/`, with the server name
//! rewritten): a browser-engine stack most apps share, another used by one app (listed
//! in the catalog), and a Java stack that stands for a custom TLS stack embedded in an
//! app. Each device runs foreground sessions (bursts of connections to the app's
//! domains and shared SDKs), legitimate background traffic by posture (VoIP keep-alive,
//! mail fetch, background downloads and photo backup, news refresh, location pings,
//! push wakes, APNs) and, on malicious days, episodes of three kinds:
//! - `upload_after_background`: an app with no background mode keeps uploading
//!   megabytes for minutes after leaving the foreground;
//! - `beacon_new_domain`: an app contacts a new domain while in the foreground, then
//!   beacons to it at a regular interval in the background;
//! - `custom_tls_stack`: a known app with background modes uploads in the background
//!   over a TLS stack (JA4) it never used before.
//!
//! Owns nothing at run time: [`generate`] is a pure function of its config (seed).
//! Packets: Ethernet/IPv4/TCP, microsecond pcap; data segments are large (GRO-style)
//! and captured short (snaplen), so byte counts are realistic and files small.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

const S: u64 = 1_000_000_000;
/// Bytes of each data segment captured (headers + a little payload).
pub const SNAPLEN: usize = 96;
/// Payload per data segment (GRO-style super segment).
pub const SEGMENT: u64 = 60_000;
/// Midnight UTC of day 0: 2024-05-06.
pub const DAY0_NS: u64 = 1_714_953_600 * S;

/// Real ClientHello records (hex of the TLS record), each with its provenance.
pub const HELLO_SYSTEM: &str = include_str!("../tests/data/hellos/chromium-tls13.hex");
pub const HELLO_APP_STACK: &str = include_str!("../tests/data/hellos/arkime-tls13.hex");
pub const HELLO_CUSTOM: &str = include_str!("../tests/data/hellos/openjdk-25.hex");

/// Generator settings.
#[derive(Clone, Debug)]
pub struct ScenarioConfig {
    pub seed: u64,
    pub devices: usize,
    /// Day index after [`DAY0_NS`] (train on day 0, test on day 1, ...).
    pub day: u32,
    /// Inject malicious episodes (one or two per chosen device).
    pub malicious: bool,
    /// With `malicious`, the share of devices that get episodes (chosen by seed and
    /// day); the others stay benign, so one replay measures both.
    pub malicious_share: f64,
    /// Share of devices whose lifecycle is reported by an SDK (foreground/background,
    /// push wakes); the others are inferred from traffic.
    pub reported_share: f64,
    /// Hours of the day simulated (from 07:00).
    pub hours: u32,
}

impl Default for ScenarioConfig {
    fn default() -> Self {
        ScenarioConfig {
            seed: 1,
            devices: 6,
            day: 0,
            malicious: false,
            malicious_share: 1.0,
            reported_share: 0.5,
            hours: 14,
        }
    }
}

/// Ground truth of a malicious episode.
#[derive(Clone, Debug, Serialize)]
pub struct TruthEpisode {
    pub device_id: String,
    pub bundle_id: String,
    pub kind: &'static str,
    pub start: String,
    pub end: String,
    #[serde(skip)]
    pub start_ns: u64,
    #[serde(skip)]
    pub end_ns: u64,
}

/// Ground truth of a flow.
#[derive(Clone, Debug, Serialize)]
pub struct TruthFlow {
    pub device_id: String,
    pub client_ip: String,
    pub client_port: u16,
    /// The app that made it, or "system".
    pub bundle_id: String,
    pub server_name: String,
    /// The name is one of the app's own catalog domains (no other app lists it).
    pub distinctive: bool,
    pub malicious: bool,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Truth {
    pub seed: u64,
    pub day: u32,
    pub devices: usize,
    /// Devices given malicious episodes (the others are benign device-days).
    pub malicious_devices: Vec<String>,
    pub episodes: Vec<TruthEpisode>,
    pub flows: Vec<TruthFlow>,
}

/// A generated scenario.
pub struct Scenario {
    pub pcap: Vec<u8>,
    pub inventory_json: String,
    pub events_ndjson: String,
    pub catalog_json: String,
    pub truth: Truth,
}

/// splitmix64: small, deterministic, good enough for simulation (also the benchmark
/// capture generator's: a seed gives the same output on every machine).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    fn f(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1).max(1)
    }
    fn chance(&mut self, p: f64) -> bool {
        self.f() < p
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[(self.next_u64() % v.len() as u64) as usize]
    }
}

/// A catalog app of the scenario.
struct App {
    bundle: &'static str,
    name: &'static str,
    category: &'static str,
    domains: &'static [&'static str],
    modes: &'static [&'static str],
    push: bool,
    /// Uses the app-specific TLS stack (listed in the catalog).
    own_stack: bool,
    /// Background behaviour.
    bg: Bg,
}

#[derive(Clone, Copy, PartialEq)]
enum Bg {
    None,
    Voip,
    MailFetch,
    Storage,
    Refresh,
    Location,
}

const APPS: &[App] = &[
    App {
        bundle: "com.example.chat",
        name: "Chat",
        category: "messaging",
        domains: &[
            "api.chat-example.net",
            "media.chat-example.net",
            "voip.chat-example.net",
        ],
        modes: &["voip", "remote-notification", "audio"],
        push: true,
        own_stack: false,
        bg: Bg::Voip,
    },
    App {
        bundle: "com.example.mail",
        name: "Mail",
        category: "email",
        domains: &["imap.mail-example.com", "api.mail-example.com"],
        modes: &["fetch", "remote-notification"],
        push: true,
        own_stack: false,
        bg: Bg::MailFetch,
    },
    App {
        bundle: "com.example.drive",
        name: "Drive",
        category: "storage",
        domains: &[
            "sync.drive-example.com",
            "upload.drive-example.com",
            "cdn.drive-example.com",
        ],
        modes: &["fetch", "processing", "remote-notification"],
        push: true,
        own_stack: false,
        bg: Bg::Storage,
    },
    App {
        bundle: "com.example.notes",
        name: "Notes",
        category: "productivity",
        domains: &["api.notes-example.io", "files.notes-example.io"],
        modes: &[],
        push: false,
        own_stack: false,
        bg: Bg::None,
    },
    App {
        bundle: "com.example.news",
        name: "News",
        category: "news",
        domains: &["feed.news-example.org", "img.news-example.org"],
        modes: &["fetch"],
        push: true,
        own_stack: false,
        bg: Bg::Refresh,
    },
    App {
        bundle: "com.example.maps",
        name: "Maps",
        category: "navigation",
        domains: &["tiles.maps-example.net", "route.maps-example.net"],
        modes: &["location", "audio"],
        push: false,
        own_stack: false,
        bg: Bg::Location,
    },
    App {
        bundle: "com.example.bank",
        name: "Bank",
        category: "finance",
        domains: &["api.bank-example.com", "auth.bank-example.com"],
        modes: &[],
        push: true,
        own_stack: false,
        bg: Bg::None,
    },
    App {
        bundle: "com.example.game",
        name: "Game",
        category: "games",
        domains: &["play.game-example.gg", "assets.game-example.gg"],
        modes: &[],
        push: false,
        own_stack: false,
        bg: Bg::None,
    },
    App {
        bundle: "com.example.fitness",
        name: "Fitness",
        category: "health",
        domains: &["api.fit-example.app"],
        modes: &["fetch", "bluetooth-central"],
        push: false,
        own_stack: false,
        bg: Bg::Refresh,
    },
    App {
        bundle: "com.example.social",
        name: "Social",
        category: "social",
        domains: &["graph.social-example.com", "video.social-example.com"],
        modes: &["fetch", "remote-notification"],
        push: true,
        own_stack: true,
        bg: Bg::Refresh,
    },
];

const SDK_DOMAINS: &[&str] = &["events.analytics-sdk.example", "reports.crash-sdk.example"];
const GROUPS: &[&str] = &["sales", "engineering", "field-ops"];

fn ts_text(ns: u64) -> String {
    crate::mdm::format_rfc3339(ns)
}

/// Decodes a hex string (whitespace ignored).
fn unhex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s
        .bytes()
        .filter(u8::is_ascii_hexdigit)
        .map(|c| match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => c - b'A' + 10,
        })
        .collect();
    digits
        .chunks(2)
        .filter(|p| p.len() == 2)
        .map(|p| (p[0] << 4) | p[1])
        .collect()
}

/// A TLS ClientHello record with its server_name extension replaced by `name`.
/// Returns `None` when the record does not parse as a single-record ClientHello.
pub fn rewrite_sni(record: &[u8], name: &str) -> Option<Vec<u8>> {
    let rd = |b: &[u8], i: usize| -> Option<usize> {
        Some(usize::from(*b.get(i)?) << 8 | usize::from(*b.get(i + 1)?))
    };
    if record.first() != Some(&0x16) || record.get(5) != Some(&1) {
        return None;
    }
    let body = record.get(9..)?;
    let mut i = 2 + 32;
    i += 1 + usize::from(*body.get(i)?);
    i += 2 + rd(body, i)?;
    i += 1 + usize::from(*body.get(i)?);
    let ext_len = rd(body, i)?;
    let exts = body.get(i + 2..i + 2 + ext_len)?;
    let mut out_exts = Vec::new();
    let mut j = 0;
    let mut replaced = false;
    while j + 4 <= exts.len() {
        let ty = rd(exts, j)?;
        let len = rd(exts, j + 2)?;
        let data = exts.get(j + 4..j + 4 + len)?;
        if ty == 0 {
            let n = name.as_bytes();
            let mut d = Vec::new();
            d.extend_from_slice(&((n.len() + 3) as u16).to_be_bytes());
            d.push(0);
            d.extend_from_slice(&(n.len() as u16).to_be_bytes());
            d.extend_from_slice(n);
            out_exts.extend_from_slice(&0u16.to_be_bytes());
            out_exts.extend_from_slice(&(d.len() as u16).to_be_bytes());
            out_exts.extend_from_slice(&d);
            replaced = true;
        } else {
            out_exts.extend_from_slice(&exts[j..j + 4 + len]);
            let _ = data;
        }
        j += 4 + len;
    }
    if !replaced {
        return None;
    }
    let mut hs = body[..i].to_vec();
    hs.extend_from_slice(&(out_exts.len() as u16).to_be_bytes());
    hs.extend_from_slice(&out_exts);
    let mut out = vec![0x16, record[1], record[2]];
    out.extend_from_slice(&((hs.len() + 4) as u16).to_be_bytes());
    out.push(1);
    let l = hs.len() as u32;
    out.extend_from_slice(&l.to_be_bytes()[1..]);
    out.extend_from_slice(&hs);
    Some(out)
}

#[derive(Clone, Copy, PartialEq)]
enum Stack {
    System,
    AppOwn,
    Custom,
}

struct Device {
    id: String,
    mac: [u8; 6],
    ip: [u8; 4],
    apps: Vec<usize>,
    reported: bool,
    next_port: u16,
    group: &'static str,
}

/// One flow to synthesize.
struct FlowSpec {
    start: u64,
    duration: u64,
    name: String,
    stack: Stack,
    up: u64,
    down: u64,
    /// Small keep-alive exchanges every this many ns (long-lived flows).
    keepalive: Option<u64>,
}

struct Builder {
    rng: Rng,
    packets: Vec<(u64, Vec<u8>, u32)>,
    hellos: [Vec<u8>; 3],
    truth: Truth,
    events: Vec<String>,
    event_seq: u64,
}

const GW_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x00, 0x01];

fn server_ip(name: &str) -> [u8; 4] {
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let nets = [[203, 0, 113], [198, 51, 100], [192, 0, 2]];
    let n = nets[(h % 3) as usize];
    [n[0], n[1], n[2], 1 + ((h >> 8) % 250) as u8]
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from(c[0]) << 8
        };
        sum += u32::from(w);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet/IPv4/TCP frame with zero MAC addresses and no ACK number: the
/// synthetic packets of the benchmarks and the allocation test.
pub fn tcp_frame(
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    seq: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let len = payload.len() as u64;
    frame(
        [0; 6], [0; 6], src, dst, sport, dport, seq, 0, flags, payload, len,
    )
    .0
}

#[allow(clippy::too_many_arguments)]
fn frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
    claimed_payload: u64,
) -> (Vec<u8>, u32) {
    let ip_len = (20 + 20 + claimed_payload).min(65_535) as u16;
    let mut f = Vec::with_capacity(54 + payload.len());
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0];
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&ack.to_be_bytes());
    f.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend_from_slice(payload);
    let orig = (14 + u32::from(ip_len)).max(f.len() as u32);
    (f, orig)
}

impl Builder {
    #[allow(clippy::too_many_arguments)]
    fn emit_event(
        &mut self,
        device: &str,
        bundle: Option<&str>,
        kind: &str,
        ts: u64,
        observed: u64,
        source: &str,
        confidence: &str,
        version: Option<&str>,
    ) {
        self.event_seq += 1;
        let mut line = format!(
            r#"{{"id":"ev-{}","device_id":"{device}","kind":"{kind}","ts":"{}","observed_ts":"{}","source":"{source}","confidence":"{confidence}""#,
            self.event_seq,
            ts_text(ts),
            ts_text(observed.max(ts))
        );
        if let Some(b) = bundle {
            let _ = write!(line, r#","bundle_id":"{b}""#);
        }
        if let Some(v) = version {
            let _ = write!(line, r#","version":"{v}""#);
        }
        line.push('}');
        self.events.push(line);
    }

    #[allow(clippy::too_many_arguments)]
    fn flow(
        &mut self,
        dev: &mut Device,
        bundle: &str,
        spec: FlowSpec,
        distinctive: bool,
        malicious: bool,
    ) {
        let sport = dev.next_port;
        dev.next_port = if dev.next_port >= 65_000 {
            20_000
        } else {
            dev.next_port + 1
        };
        let dip = server_ip(&spec.name);
        let hello_src = match spec.stack {
            Stack::System => &self.hellos[0],
            Stack::AppOwn => &self.hellos[1],
            Stack::Custom => &self.hellos[2],
        };
        let hello = rewrite_sni(hello_src, &spec.name).unwrap_or_else(|| hello_src.clone());
        self.truth.flows.push(TruthFlow {
            device_id: dev.id.clone(),
            client_ip: format!("{}.{}.{}.{}", dev.ip[0], dev.ip[1], dev.ip[2], dev.ip[3]),
            client_port: sport,
            bundle_id: bundle.to_string(),
            server_name: spec.name.clone(),
            distinctive,
            malicious,
        });
        let (cm, sm, c, s) = (dev.mac, GW_MAC, dev.ip, dip);
        let mut cseq: u32 = (self.rng.next_u64() & 0xffff_ffff) as u32;
        let mut sseq: u32 = (self.rng.next_u64() & 0xffff_ffff) as u32;
        let t0 = spec.start;
        let rtt = 20_000_000 + self.rng.range(0, 30_000_000);
        let push = |pk: &mut Vec<(u64, Vec<u8>, u32)>,
                    t: u64,
                    from_client: bool,
                    flags: u8,
                    payload: &[u8],
                    claimed: u64,
                    cseq: &mut u32,
                    sseq: &mut u32| {
            let (f, orig) = if from_client {
                frame(
                    cm, sm, c, s, sport, 443, *cseq, *sseq, flags, payload, claimed,
                )
            } else {
                frame(
                    sm, cm, s, c, 443, sport, *sseq, *cseq, flags, payload, claimed,
                )
            };
            let adv = claimed as u32 + u32::from(flags & 0x03 != 0);
            if from_client {
                *cseq = cseq.wrapping_add(adv);
            } else {
                *sseq = sseq.wrapping_add(adv);
            }
            let mut f = f;
            f.truncate(SNAPLEN.max(54 + payload.len().min(2048)));
            pk.push((t, f, orig));
        };
        let pk = &mut self.packets;
        push(pk, t0, true, 0x02, &[], 0, &mut cseq, &mut sseq);
        push(pk, t0 + rtt / 2, false, 0x12, &[], 0, &mut cseq, &mut sseq);
        push(pk, t0 + rtt, true, 0x10, &[], 0, &mut cseq, &mut sseq);
        push(
            pk,
            t0 + rtt + 100_000,
            true,
            0x18,
            &hello,
            hello.len() as u64,
            &mut cseq,
            &mut sseq,
        );
        let server_first = [0x17u8, 0x03, 0x03, 0x00, 0x20];
        push(
            pk,
            t0 + 2 * rtt,
            false,
            0x18,
            &server_first,
            1400,
            &mut cseq,
            &mut sseq,
        );
        let data_start = t0 + 2 * rtt + 1_000_000;
        let end = t0 + spec.duration.max(3 * rtt);
        let span = end.saturating_sub(data_start).max(1);
        let rec = [0x17u8, 0x03, 0x03, 0x3e, 0x80];
        let n_up = spec.up.div_ceil(SEGMENT);
        for k in 0..n_up {
            let t = data_start + span * k / n_up.max(1);
            let len = SEGMENT.min(spec.up - k * SEGMENT);
            push(pk, t, true, 0x18, &rec, len, &mut cseq, &mut sseq);
            if k % 4 == 3 {
                push(pk, t + rtt / 2, false, 0x10, &[], 0, &mut cseq, &mut sseq);
            }
        }
        let n_down = spec.down.div_ceil(SEGMENT);
        for k in 0..n_down {
            let t = data_start + span * k / n_down.max(1) + 500_000;
            let len = SEGMENT.min(spec.down - k * SEGMENT);
            push(pk, t, false, 0x18, &rec, len, &mut cseq, &mut sseq);
            if k % 4 == 3 {
                push(pk, t + rtt / 2, true, 0x10, &[], 0, &mut cseq, &mut sseq);
            }
        }
        if let Some(every) = spec.keepalive {
            let mut t = data_start + every;
            while t + every < end {
                push(pk, t, true, 0x18, &rec, 60, &mut cseq, &mut sseq);
                push(pk, t + rtt, false, 0x18, &rec, 60, &mut cseq, &mut sseq);
                t += every;
            }
        }
        push(pk, end, true, 0x11, &[], 0, &mut cseq, &mut sseq);
        push(pk, end + rtt / 2, false, 0x11, &[], 0, &mut cseq, &mut sseq);
        push(pk, end + rtt, true, 0x10, &[], 0, &mut cseq, &mut sseq);
    }
}

fn app_stack(a: &App) -> Stack {
    if a.own_stack {
        Stack::AppOwn
    } else {
        Stack::System
    }
}

/// Whether device `index` gets malicious episodes on this scenario's day.
pub fn device_is_malicious(cfg: &ScenarioConfig, index: usize) -> bool {
    if !cfg.malicious {
        return false;
    }
    if cfg.malicious_share >= 1.0 {
        return true;
    }
    let mut r = Rng(cfg.seed ^ (u64::from(cfg.day) << 32) ^ (index as u64).wrapping_mul(0x9e37));
    r.f() < cfg.malicious_share
}

/// Generates one scenario.
pub fn generate(cfg: &ScenarioConfig) -> Scenario {
    let mut b = Builder {
        rng: Rng(cfg.seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ u64::from(cfg.day)),
        packets: Vec::new(),
        hellos: [
            unhex(HELLO_SYSTEM),
            unhex(HELLO_APP_STACK),
            unhex(HELLO_CUSTOM),
        ],
        truth: Truth {
            seed: cfg.seed,
            day: cfg.day,
            devices: cfg.devices,
            ..Truth::default()
        },
        events: Vec::new(),
        event_seq: u64::from(cfg.day) * 1_000_000,
    };
    // The fleet is a function of the seed only (same devices every day).
    let mut fleet_rng = Rng(cfg.seed ^ 0x5eed);
    let mut devices: Vec<Device> = (0..cfg.devices)
        .map(|i| {
            let mut apps: Vec<usize> = (0..APPS.len()).filter(|_| fleet_rng.chance(0.7)).collect();
            for must in [0, 1, 3] {
                if !apps.contains(&must) {
                    apps.push(must);
                }
            }
            apps.sort_unstable();
            Device {
                id: format!("dev-{:04}", i + 1),
                mac: [0x3c, 0x22, 0xfb, 0x10, (i >> 8) as u8, i as u8],
                ip: [10, 20, (i >> 8) as u8, (10 + i % 240) as u8],
                apps,
                reported: fleet_rng.f() < cfg.reported_share,
                next_port: 20_000 + (cfg.day as u16 % 4) * 10_000,
                group: GROUPS[i % GROUPS.len()],
            }
        })
        .collect();

    let day_start = DAY0_NS + u64::from(cfg.day) * 86_400 * S + 7 * 3600 * S;
    let day_end = day_start + u64::from(cfg.hours) * 3600 * S;
    for (index, dev) in devices.iter_mut().enumerate() {
        let malicious = device_is_malicious(cfg, index);
        if malicious {
            b.truth.malicious_devices.push(dev.id.clone());
        }
        // APNs: one long connection, keep-alive every 15 min.
        {
            let spec = FlowSpec {
                start: day_start + b.rng.range(0, 60) * S,
                duration: day_end - day_start - 120 * S,
                name: "17-courier.push.apple.com".into(),
                stack: Stack::System,
                up: 4000,
                down: 8000,
                keepalive: Some(900 * S),
            };
            b.flow(dev, "system", spec, false, false);
        }
        // Foreground sessions, not overlapping.
        let mut t = day_start + b.rng.range(300, 1800) * S;
        let mut sessions: Vec<(usize, u64, u64)> = Vec::new();
        while t < day_end - 3600 * S {
            let app = *b.rng.pick(&dev.apps);
            let dur = b.rng.range(60, 600) * S;
            sessions.push((app, t, t + dur));
            t += dur + b.rng.range(900, 4800) * S;
        }
        // Malicious plan: (kind, session index).
        let mut plans: Vec<(&'static str, usize)> = Vec::new();
        if malicious && !sessions.is_empty() {
            let n = 1 + usize::from(b.rng.chance(0.4));
            let kinds = [
                "upload_after_background",
                "beacon_new_domain",
                "custom_tls_stack",
            ];
            for _ in 0..n {
                let kind = *b.rng.pick(&kinds);
                let idx = (b.rng.next_u64() % sessions.len() as u64) as usize;
                if plans.iter().any(|p| p.1 == idx) {
                    continue;
                }
                // Pick an app that fits the kind and force the session to it.
                let fits: Vec<usize> = dev
                    .apps
                    .iter()
                    .copied()
                    .filter(|&a| match kind {
                        "upload_after_background" => APPS[a].modes.is_empty(),
                        "custom_tls_stack" => !APPS[a].modes.is_empty() && !APPS[a].own_stack,
                        _ => true,
                    })
                    .collect();
                if fits.is_empty() {
                    continue;
                }
                sessions[idx].0 = *b.rng.pick(&fits);
                plans.push((kind, idx));
            }
        }
        let mut last_bg: BTreeMap<usize, u64> = BTreeMap::new();
        for (si, &(ai, s0, s1)) in sessions.iter().enumerate() {
            let app = &APPS[ai];
            if dev.reported {
                b.emit_event(
                    &dev.id,
                    Some(app.bundle),
                    "app_foreground",
                    s0,
                    s0 + S,
                    "appconfig-sdk",
                    "reported",
                    None,
                );
                b.emit_event(
                    &dev.id,
                    Some(app.bundle),
                    "app_background",
                    s1,
                    s1 + S,
                    "appconfig-sdk",
                    "reported",
                    None,
                );
            }
            // Bursts through the session.
            let mut bt = s0;
            let mut first = true;
            while bt < s1 {
                let n = b.rng.range(3, 6);
                for k in 0..n {
                    let name = app.domains[(b.rng.next_u64() % app.domains.len() as u64) as usize]
                        .to_string();
                    let start = bt + k * b.rng.range(50, 400) * 1_000_000;
                    let dur = b.rng.range(300, 4000) * 1_000_000;
                    let (up, down) = (b.rng.range(1_000, 20_000), b.rng.range(5_000, 400_000));
                    {
                        let spec = FlowSpec {
                            start,
                            duration: dur,
                            name,
                            stack: app_stack(app),
                            up,
                            down,
                            keepalive: None,
                        };
                        b.flow(dev, app.bundle, spec, true, false);
                    }
                }
                if first || b.rng.chance(0.3) {
                    let sdk = (*b.rng.pick(SDK_DOMAINS)).to_string();
                    let start = bt + b.rng.range(100, 900) * 1_000_000;
                    {
                        let spec = FlowSpec {
                            start,
                            duration: 400_000_000,
                            name: sdk,
                            stack: Stack::System,
                            up: 3000,
                            down: 1500,
                            keepalive: None,
                        };
                        b.flow(dev, app.bundle, spec, false, false);
                    }
                }
                first = false;
                bt += b.rng.range(5, 40) * S;
            }
            // Malicious episodes tied to this session.
            for &(kind, idx) in &plans {
                if idx != si {
                    continue;
                }
                let (ms, me) = match kind {
                    "upload_after_background" => {
                        let start = s1 - b.rng.range(2, 10) * S;
                        let dur = b.rng.range(180, 600) * S;
                        let up = b.rng.range(2_000_000, 10_000_000);
                        let name = app.domains[0].to_string();
                        {
                            let spec = FlowSpec {
                                start,
                                duration: dur,
                                name,
                                stack: app_stack(app),
                                up,
                                down: up / 50,
                                keepalive: None,
                            };
                            b.flow(dev, app.bundle, spec, true, true);
                        }
                        (start, start + dur)
                    }
                    "beacon_new_domain" => {
                        let name = format!(
                            "{}.cdn-sync{}.net",
                            ["m", "api", "t", "v2"][(b.rng.next_u64() % 4) as usize],
                            b.rng.range(10, 9999)
                        );
                        // First contact while in the foreground.
                        let first = s0 + b.rng.range(1, 3) * S / 2;
                        {
                            let spec = FlowSpec {
                                start: first,
                                duration: 800_000_000,
                                name: name.clone(),
                                stack: app_stack(app),
                                up: 3000,
                                down: 2000,
                                keepalive: None,
                            };
                            b.flow(dev, app.bundle, spec, false, true);
                        }
                        let period = b.rng.range(60, 180) * S;
                        let count = b.rng.range(8, 20);
                        let mut bt = s1 + b.rng.range(45, 120) * S;
                        let start = bt;
                        for _ in 0..count {
                            let jitter = (b.rng.f() - 0.5) * 0.04 * period as f64;
                            let at = (bt as f64 + jitter) as u64;
                            {
                                let spec = FlowSpec {
                                    start: at,
                                    duration: 600_000_000,
                                    name: name.clone(),
                                    stack: app_stack(app),
                                    up: b.rng.range(2_000, 8_000),
                                    down: b.rng.range(1_000, 4_000),
                                    keepalive: None,
                                };
                                b.flow(dev, app.bundle, spec, false, true);
                            }
                            bt += period;
                        }
                        (start, bt)
                    }
                    _ => {
                        let mut bt = s1 + b.rng.range(90, 300) * S;
                        let start = bt;
                        let n = b.rng.range(3, 6);
                        for _ in 0..n {
                            let name = app.domains
                                [(b.rng.next_u64() % app.domains.len() as u64) as usize]
                                .to_string();
                            let dur = b.rng.range(5, 30) * S;
                            {
                                let spec = FlowSpec {
                                    start: bt,
                                    duration: dur,
                                    name,
                                    stack: Stack::Custom,
                                    up: b.rng.range(50_000, 300_000),
                                    down: b.rng.range(2_000, 20_000),
                                    keepalive: None,
                                };
                                b.flow(dev, app.bundle, spec, true, true);
                            }
                            bt += dur + b.rng.range(20, 90) * S;
                        }
                        (start, bt)
                    }
                };
                b.truth.episodes.push(TruthEpisode {
                    device_id: dev.id.clone(),
                    bundle_id: app.bundle.to_string(),
                    kind,
                    start: ts_text(ms),
                    end: ts_text(me),
                    start_ns: ms,
                    end_ns: me,
                });
            }
            // Legitimate background continuation of some apps after a session.
            if app.bg == Bg::Location && b.rng.chance(0.5) {
                let mut bt = s1 + 60 * S;
                for _ in 0..b.rng.range(6, 15) {
                    {
                        let spec = FlowSpec {
                            start: bt,
                            duration: 500_000_000,
                            name: "route.maps-example.net".into(),
                            stack: app_stack(app),
                            up: 1500,
                            down: 3000,
                            keepalive: None,
                        };
                        b.flow(dev, app.bundle, spec, true, false);
                    }
                    bt += 60 * S + b.rng.range(0, 2) * S;
                }
            }
            last_bg.insert(ai, s1);
        }
        // Background traffic by posture, spread through the day.
        for &ai in &dev.apps.clone() {
            let app = &APPS[ai];
            match app.bg {
                Bg::Voip => {
                    let start = day_start + b.rng.range(60, 600) * S;
                    {
                        let spec = FlowSpec {
                            start,
                            duration: b.rng.range(3, 8) * 3600 * S,
                            name: "voip.chat-example.net".into(),
                            stack: app_stack(app),
                            up: 20_000,
                            down: 20_000,
                            keepalive: Some(b.rng.range(30, 120) * S),
                        };
                        b.flow(dev, app.bundle, spec, true, false);
                    }
                }
                Bg::MailFetch => {
                    let mut t = day_start + b.rng.range(300, 900) * S;
                    while t < day_end {
                        for k in 0..b.rng.range(1, 2) {
                            {
                                let spec = FlowSpec {
                                    start: t + k * S,
                                    duration: b.rng.range(1, 5) * S,
                                    name: "imap.mail-example.com".into(),
                                    stack: app_stack(app),
                                    up: b.rng.range(2_000, 30_000),
                                    down: b.rng.range(5_000, 300_000),
                                    keepalive: None,
                                };
                                b.flow(dev, app.bundle, spec, true, false);
                            }
                        }
                        t += b.rng.range(600, 1500) * S;
                    }
                }
                Bg::Storage => {
                    for _ in 0..b.rng.range(1, 2) {
                        let t =
                            day_start + b.rng.range(1800, u64::from(cfg.hours) * 3600 - 1800) * S;
                        let dur = b.rng.range(120, 360) * S;
                        {
                            let spec = FlowSpec {
                                start: t,
                                duration: dur,
                                name: "cdn.drive-example.com".into(),
                                stack: app_stack(app),
                                up: b.rng.range(5_000, 50_000),
                                down: b.rng.range(20_000_000, 80_000_000),
                                keepalive: None,
                            };
                            b.flow(dev, app.bundle, spec, true, false);
                        }
                    }
                    let t = day_start + b.rng.range(1800, u64::from(cfg.hours) * 3600 - 1800) * S;
                    let dur = b.rng.range(180, 600) * S;
                    {
                        let spec = FlowSpec {
                            start: t,
                            duration: dur,
                            name: "upload.drive-example.com".into(),
                            stack: app_stack(app),
                            up: b.rng.range(5_000_000, 30_000_000),
                            down: b.rng.range(20_000, 200_000),
                            keepalive: None,
                        };
                        b.flow(dev, app.bundle, spec, true, false);
                    }
                }
                Bg::Refresh => {
                    for _ in 0..b.rng.range(2, 4) {
                        let t = day_start + b.rng.range(600, u64::from(cfg.hours) * 3600 - 600) * S;
                        let name = app.domains[0].to_string();
                        {
                            let spec = FlowSpec {
                                start: t,
                                duration: b.rng.range(1, 8) * S,
                                name,
                                stack: app_stack(app),
                                up: b.rng.range(1_000, 10_000),
                                down: b.rng.range(10_000, 500_000),
                                keepalive: None,
                            };
                            b.flow(dev, app.bundle, spec, true, false);
                        }
                    }
                }
                Bg::Location | Bg::None => {}
            }
            if app.push {
                for _ in 0..b.rng.range(3, 12) {
                    let t = day_start + b.rng.range(600, u64::from(cfg.hours) * 3600 - 600) * S;
                    if dev.reported {
                        b.emit_event(
                            &dev.id,
                            Some(app.bundle),
                            "push_wake",
                            t,
                            t + S,
                            "appconfig-sdk",
                            "reported",
                            None,
                        );
                    }
                    let name = app.domains[0].to_string();
                    {
                        let spec = FlowSpec {
                            start: t + S,
                            duration: b.rng.range(1, 4) * S,
                            name,
                            stack: app_stack(app),
                            up: b.rng.range(1_000, 6_000),
                            down: b.rng.range(2_000, 40_000),
                            keepalive: None,
                        };
                        b.flow(dev, app.bundle, spec, true, false);
                    }
                }
            }
        }
        // iCloud sync now and then (system).
        for _ in 0..b.rng.range(2, 6) {
            let t = day_start + b.rng.range(600, u64::from(cfg.hours) * 3600 - 600) * S;
            {
                let spec = FlowSpec {
                    start: t,
                    duration: 2 * S,
                    name: "gateway.icloud.com".into(),
                    stack: Stack::System,
                    up: 5_000,
                    down: 20_000,
                    keepalive: None,
                };
                b.flow(dev, "system", spec, false, false);
            }
        }
        // MDM check-in, reported.
        b.emit_event(
            &dev.id,
            None,
            "checkin",
            day_start + 3600 * S,
            day_start + 3600 * S + 30 * S,
            "mdm",
            "reported",
            None,
        );
    }

    // pcap
    let mut packets = std::mem::take(&mut b.packets);
    packets.sort_by_key(|p| p.0);
    let mut pcap = Vec::with_capacity(24 + packets.iter().map(|p| 16 + p.1.len()).sum::<usize>());
    pcap.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    pcap.extend_from_slice(&2u16.to_le_bytes());
    pcap.extend_from_slice(&4u16.to_le_bytes());
    pcap.extend_from_slice(&[0; 8]);
    pcap.extend_from_slice(&65_535u32.to_le_bytes());
    pcap.extend_from_slice(&1u32.to_le_bytes());
    for (t, data, orig) in &packets {
        pcap.extend_from_slice(&((t / S) as u32).to_le_bytes());
        pcap.extend_from_slice(&(((t % S) / 1000) as u32).to_le_bytes());
        pcap.extend_from_slice(&(data.len() as u32).to_le_bytes());
        pcap.extend_from_slice(&(*orig).max(data.len() as u32).to_le_bytes());
        pcap.extend_from_slice(data);
    }

    // Inventory, catalog, events.
    let mut inv = String::from("{\"devices\": [\n");
    for (i, d) in devices.iter().enumerate() {
        let apps: Vec<String> = d
            .apps
            .iter()
            .map(|&a| {
                format!(
                    r#"{{"bundle_id": "{}", "version": "1.0", "managed": true}}"#,
                    APPS[a].bundle
                )
            })
            .collect();
        let _ = write!(
            inv,
            r#"  {{"id": "{}", "wifi_mac": "{}", "model": "iPhone15,2", "os_version": "17.4.1", "ownership": "corporate", "groups": ["{}"], "apps": [{}]}}{}"#,
            d.id,
            d.mac
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":"),
            d.group,
            apps.join(", "),
            if i + 1 < devices.len() { ",\n" } else { "\n" }
        );
    }
    inv.push_str("]}\n");
    let app_stack_ja4 = "t00d1815h2_a30347de7a75_2a77702ff8e0";
    let apps_json: Vec<String> = APPS
        .iter()
        .map(|a| {
            let q = |v: &[&str]| v.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ");
            format!(
                r#"{{"bundle_id": "{}", "name": "{}", "category": "{}", "domains": [{}], "background_modes": [{}], "push": {}, "ja4": [{}]}}"#,
                a.bundle,
                a.name,
                a.category,
                q(a.domains),
                q(a.modes),
                a.push,
                if a.own_stack { format!("\"{app_stack_ja4}\"") } else { String::new() }
            )
        })
        .collect();
    let catalog_json = format!(
        "{{\"apps\": [\n  {}\n],\n \"shared_sdks\": [{{\"name\": \"Example Analytics\", \"domains\": [\"*.analytics-sdk.example\"]}}, {{\"name\": \"Example Crash Reporter\", \"domains\": [\"*.crash-sdk.example\"]}}],\n \"system\": {{\"domains\": [\"*.apple.com\", \"*.icloud.com\", \"*.push.apple.com\"]}}}}\n",
        apps_json.join(",\n  ")
    );
    let mut events = std::mem::take(&mut b.events);
    events.sort();
    let mut events_ndjson = events.join("\n");
    events_ndjson.push('\n');
    Scenario {
        pcap,
        inventory_json: inv,
        events_ndjson,
        catalog_json,
        truth: b.truth,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_rewrite_keeps_a_parseable_hello() {
        for hex in [HELLO_SYSTEM, HELLO_APP_STACK, HELLO_CUSTOM] {
            let rec = unhex(hex);
            let out = rewrite_sni(&rec, "api.example-app.com").expect("rewrites");
            let body = &out[5..];
            let ch = crate::proto::tls::parse_client_hello(
                &body[4..],
                crate::proto::tls::Transport::Tcp,
            );
            let ch = ch.expect("parses");
            assert_eq!(ch.sni.as_deref(), Some("api.example-app.com"));
        }
        assert!(rewrite_sni(&[0x17, 3, 3, 0, 0], "x").is_none());
    }

    #[test]
    fn deterministic_by_seed() {
        let cfg = ScenarioConfig {
            devices: 2,
            hours: 3,
            malicious: true,
            ..ScenarioConfig::default()
        };
        let a = generate(&cfg);
        let b = generate(&cfg);
        assert_eq!(a.pcap, b.pcap);
        assert_eq!(a.events_ndjson, b.events_ndjson);
        let c = generate(&ScenarioConfig { seed: 2, ..cfg });
        assert_ne!(a.pcap, c.pcap);
    }
}
