//! `nightjar run` on a live interface, in network namespaces made by the test.
//!
//! Each test makes two namespaces joined by a veth pair (no addresses, IPv6
//! off, so the kernel sends nothing of its own), runs the daemon on one end
//! and `tcpreplay`s captures into the other. These tests need root (or
//! CAP_NET_ADMIN + CAP_NET_RAW), `ip` and `tcpreplay`. Without them a test
//! prints `SKIPPED: <why>` and returns; with NIGHTJAR_LIVE_TESTS=require (CI
//! sets it) a missing prerequisite is a failure instead, so CI can never pass
//! these tests without running them.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Longest a step may take before the test fails (a hang is a failure).
const LIMIT: Duration = Duration::from_secs(60);

fn prerequisites() -> Result<(), String> {
    // /proc tells the effective uid.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or("");
    if euid != "0" {
        return Err(format!("needs root for network namespaces (euid {euid})"));
    }
    for tool in ["ip", "tcpreplay"] {
        let ok = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !ok {
            return Err(format!("{tool} is not installed"));
        }
    }
    Ok(())
}

/// Whether `tool` runs (`tool --version`); false (and why) when the test must
/// skip, a failure under NIGHTJAR_LIVE_TESTS=require (`.ci/run` installs it).
fn has_tool(test: &str, tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        if std::env::var("NIGHTJAR_LIVE_TESTS").as_deref() == Ok("require") {
            panic!("{test}: {tool} is not installed (NIGHTJAR_LIVE_TESTS=require)");
        }
        eprintln!("SKIPPED {test}: {tool} is not installed");
    }
    ok
}

/// Returns false (and says why) when the test cannot run here.
fn can_run(test: &str) -> bool {
    match prerequisites() {
        Ok(()) => true,
        Err(why) => {
            if std::env::var("NIGHTJAR_LIVE_TESTS").as_deref() == Ok("require") {
                panic!("{test}: {why} (NIGHTJAR_LIVE_TESTS=require)");
            }
            eprintln!("SKIPPED {test}: {why}");
            false
        }
    }
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run command");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces and a veth pair; removed on drop.
struct Netns {
    tx_ns: String,
    rx_ns: String,
    tx_if: String,
    rx_if: String,
    dir: PathBuf,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        let id = format!("{}{}", tag, std::process::id() % 100_000);
        let n = Netns {
            tx_ns: format!("njt-{id}"),
            rx_ns: format!("njr-{id}"),
            tx_if: format!("t{id}"),
            rx_if: format!("r{id}"),
            dir: std::env::temp_dir().join(format!("nightjar-live-{id}")),
        };
        let _ = std::fs::remove_dir_all(&n.dir);
        std::fs::create_dir_all(n.dir.join("state")).unwrap();
        for ns in [&n.tx_ns, &n.rx_ns] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
            sh(&["ip", "netns", "add", ns]);
            for key in ["all", "default"] {
                sh(&[
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    "sysctl",
                    "-qw",
                    &format!("net.ipv6.conf.{key}.disable_ipv6=1"),
                ]);
            }
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        sh(&[
            "ip", "link", "add", &n.tx_if, "netns", &n.tx_ns, "type", "veth", "peer", "name",
            &n.rx_if, "netns", &n.rx_ns,
        ]);
        // The largest MTU a veth takes, so no captured frame is too long to send.
        sh(&[
            "ip", "-n", &n.tx_ns, "link", "set", &n.tx_if, "mtu", "65535", "up",
        ]);
        sh(&[
            "ip", "-n", &n.rx_ns, "link", "set", &n.rx_if, "mtu", "65535", "up",
        ]);
        n
    }

    fn config(&self, workers: usize, extra_flow: &str) -> PathBuf {
        let text = format!(
            "[capture]\ninterfaces = [\"{}\"]\nworkers = {workers}\n\
             [flow]\n{extra_flow}\n\
             [output]\npath = \"{}\"\n[state]\ndir = \"{}\"\n\
             [metrics]\nlisten = \"127.0.0.1:9464\"\n",
            self.rx_if,
            self.out().display(),
            self.dir.join("state").display()
        );
        let p = self.dir.join("nightjar.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    fn out(&self) -> PathBuf {
        self.dir.join("out.json")
    }

    /// Sends the captures into the transmit end; `rate` is tcpreplay's timing flag.
    fn replay(&self, files: &[PathBuf], rate: &[&str]) -> Child {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.tx_ns,
                "tcpreplay",
                "-q",
                "-i",
                &self.tx_if,
            ])
            .args(rate)
            .args(files)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tcpreplay")
    }

    /// GET `path` from the daemon's metrics endpoint (inside its namespace).
    fn http_get(&self, path: &str) -> String {
        let script = format!(
            "exec 3<>/dev/tcp/127.0.0.1/9464 && printf 'GET {path} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' >&3 && cat <&3"
        );
        let out = Command::new("ip")
            .args(["netns", "exec", &self.rx_ns, "bash", "-c", &script])
            .output()
            .expect("run bash");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in [&self.tx_ns, &self.rx_ns] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A running `nightjar run`, its stderr lines arriving on a channel.
struct Daemon {
    child: Child,
    stderr: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Daemon {
    fn start(ns: &Netns, config: &Path) -> Daemon {
        Daemon::start_with(ns, config, &[])
    }

    fn start_with(ns: &Netns, config: &Path, env: &[(&str, &str)]) -> Daemon {
        let mut child = Command::new("ip")
            .envs(env.iter().copied())
            .args(["netns", "exec", &ns.rx_ns, bin(), "run", "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nightjar run");
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut d = Daemon {
            child,
            stderr: rx,
            seen: Vec::new(),
        };
        d.wait_for("nightjar: ready");
        d
    }

    fn wait_for(&mut self, needle: &str) {
        let deadline = Instant::now() + LIMIT;
        loop {
            if self.seen.iter().any(|l| l.contains(needle)) {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => panic!("no {needle:?} from nightjar; stderr: {:?}", self.seen),
            }
        }
    }

    fn signal(&self, sig: &str) {
        // `ip netns exec` execs the daemon: the child's pid is nightjar's.
        sh(&["kill", &format!("-{sig}"), &self.child.id().to_string()]);
    }

    /// SIGTERM, then the exit status.
    fn stop(mut self) -> (std::process::ExitStatus, Vec<String>) {
        self.signal("TERM");
        let deadline = Instant::now() + LIMIT;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("nightjar did not stop after SIGTERM: {:?}", self.seen);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.seen.extend(self.stderr.try_iter());
        (status, std::mem::take(&mut self.seen))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_child(mut c: Child) {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(s) = c.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = c.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            assert!(s.success(), "tcpreplay failed: {err}");
            return;
        }
        assert!(Instant::now() < deadline, "tcpreplay did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Parses the samples of a text exposition: "name{labels}" → value.
fn metrics(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// Polls the metrics until `name` reaches `want` (the data plane publishes
/// every quarter second); returns the last scrape.
fn metrics_when(ns: &Netns, name: &str, want: f64) -> BTreeMap<String, f64> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let m = metrics(&ns.http_get("/metrics"));
        if m.get(name).copied().unwrap_or(-1.0) >= want {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never reached {want}: {m:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn read_records(p: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(p).unwrap_or_default();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "partial last line in {}",
        p.display()
    );
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {e}: {l}")))
        .collect()
}

/// Ethernet captures with TLS, QUIC, DNS and a GRE tunnel, no two reusing a
/// flow's addresses and ports.
fn captures() -> Vec<PathBuf> {
    let mut v = vec![repo().join("pcaps/demo.pcap")];
    if let Some(c) = corpus() {
        for f in [
            "arkime/tests/pcap/gre-sample.pcap",
            "zeek/testing/btest/Traces/tls/tls13draft16-chrome55.0.2879.0-canary.pcap",
            "zeek/testing/btest/Traces/dns-https.pcap",
        ] {
            if c.join(f).exists() {
                v.push(c.join(f));
            }
        }
    }
    v
}

/// Big flow timeouts, so the pcaps' own time gaps (years between the joined
/// captures) and the replay's compressed timing end no flow differently.
const LONG_TIMEOUTS: &str = "tcp_timeout = \"1d\"\nudp_timeout = \"1d\"\n\
    other_timeout = \"1d\"\ntcp_closed_timeout = \"1d\"\nactive_timeout = \"7d\"";

/// A flow record without what depends on when packets arrived: times, the
/// timing profile, the flow id (derived from the start time) and the
/// termination of flows still open at the end (checked separately).
fn timeless(r: &Value) -> String {
    let mut r = r.clone();
    if let Some(o) = r.as_object_mut() {
        o.remove("@timestamp");
    }
    if let Some(e) = r["event"].as_object_mut() {
        for k in ["start", "end", "duration"] {
            e.remove(k);
        }
    }
    if let Some(f) = r["nightjar"]["flow"].as_object_mut() {
        for k in ["profile", "id", "termination"] {
            f.remove(k);
        }
    }
    r.to_string()
}

fn flows(recs: &[Value]) -> Vec<&Value> {
    recs.iter()
        .filter(|r| dataset(r) == "nightjar.flow")
        .collect()
}

fn stats(recs: &[Value]) -> &Value {
    recs.iter()
        .rev()
        .find(|r| dataset(r) == "nightjar.stats")
        .expect("a nightjar.stats record")
}

/// The records `nightjar replay` makes of `files` with `cfg`.
fn replay_offline(cfg: &Path, files: &[PathBuf]) -> Vec<Value> {
    let mut args = vec!["replay", "--quiet", "--config", cfg.to_str().unwrap()];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    let out = run(&args, LIMIT);
    assert!(out.status.success());
    records(&out)
}

fn live_equals_replay(workers: usize, test: &str) {
    if !can_run(test) {
        return;
    }
    let ns = Netns::new(&format!("e{workers}"));
    let cfg = ns.config(workers, LONG_TIMEOUTS);
    let files = captures();
    let d = Daemon::start(&ns, &cfg);
    wait_child(ns.replay(&files, &["--topspeed"]));

    // Every frame arrives; the metrics say so and agree with the records below.
    let offline = replay_offline(&cfg, &files);
    let want_packets = stats(&offline)["nightjar"]["stats"]["packets"]
        .as_f64()
        .unwrap();
    let iface = format!("{{interface=\"{}\"}}", ns.rx_if);
    let m = metrics_when(&ns, &format!("nightjar_packets_total{iface}"), want_packets);
    // The fanout spread the flows over every worker.
    for w in 0..workers {
        let k = format!(
            "nightjar_worker_packets_total{{interface=\"{}\",worker=\"{w}\"}}",
            ns.rx_if
        );
        assert!(m[&k] > 0.0, "worker {w} got no packets: {m:?}");
    }
    let health = ns.http_get("/healthz");
    assert!(
        health.starts_with("HTTP/1.1 200") && health.ends_with("ok\n"),
        "{health}"
    );

    let (status, log) = d.stop();
    assert!(status.success(), "nightjar run exited {status:?}: {log:?}");
    let live = read_records(&ns.out());

    // Flows, counters and fingerprints are the replay's.
    let mut a: Vec<String> = flows(&offline).into_iter().map(timeless).collect();
    let mut b: Vec<String> = flows(&live).into_iter().map(timeless).collect();
    a.sort();
    b.sort();
    assert!(a.len() >= 5, "too few flows to compare: {}", a.len());
    assert_eq!(a, b, "live flows differ from the replay's");
    // Flows still open at SIGTERM end as "shutdown"; the replay ended them by
    // its own clock (idle timeout, FIN/RST or end of input), never otherwise.
    for f in flows(&live) {
        let t = f["nightjar"]["flow"]["termination"].as_str().unwrap();
        assert!(
            ["shutdown", "fin", "rst"].contains(&t),
            "live termination {t}"
        );
    }

    // The metrics scraped after the traffic agree with the records.
    let s = &stats(&live)["nightjar"]["stats"];
    assert_eq!(
        m[&format!("nightjar_packets_total{iface}")],
        s["packets"].as_f64().unwrap()
    );
    assert_eq!(
        m[&format!("nightjar_bytes_total{iface}")],
        s["wire_bytes"].as_f64().unwrap()
    );
    assert_eq!(m["nightjar_flows_created_total"], flows(&live).len() as f64);
    assert_eq!(m["nightjar_flows_active"], flows(&live).len() as f64);
    assert_eq!(m[&format!("nightjar_kernel_drops_total{iface}")], 0.0);
    assert_eq!(m["nightjar_queue_drops_total{stage=\"correlator\"}"], 0.0);
    assert_eq!(
        m[&format!("nightjar_capture_workers{iface}")],
        workers as f64
    );
    let state = std::fs::read_to_string(ns.dir.join("state/last-run.json")).unwrap();
    let state: Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["records_written"].as_u64(), Some(live.len() as u64));
}

#[test]
fn live_one_worker_equals_replay() {
    live_equals_replay(1, "live_one_worker_equals_replay");
}

#[test]
fn live_fanout_two_workers_equals_replay() {
    live_equals_replay(2, "live_fanout_two_workers_equals_replay");
}

#[test]
fn sigterm_during_traffic_loses_no_flow() {
    let test = "sigterm_during_traffic_loses_no_flow";
    if !can_run(test) {
        return;
    }
    let ns = Netns::new("t");
    let cfg = ns.config(2, LONG_TIMEOUTS);
    let d = Daemon::start(&ns, &cfg);
    // Slow enough that SIGTERM lands while packets are still arriving.
    let files = captures();
    let mut sender = ns.replay(&files, &["--pps", "50"]);
    let iface = format!("{{interface=\"{}\"}}", ns.rx_if);
    metrics_when(&ns, &format!("nightjar_packets_total{iface}"), 20.0);
    let (status, log) = d.stop();
    let _ = sender.kill();
    let _ = sender.wait();
    assert!(status.success(), "nightjar run exited {status:?}: {log:?}");
    let live = read_records(&ns.out());
    let s = &stats(&live)["nightjar"]["stats"];
    let total: u64 = flows(&live)
        .iter()
        .map(|f| f["network"]["packets"].as_u64().unwrap())
        .sum();
    // Every flow created became a record, and every keyed packet is in one.
    assert!(s["flows"]["created"].as_u64().unwrap() > 0);
    assert_eq!(
        s["flows"]["created"].as_u64().unwrap(),
        flows(&live).len() as u64
    );
    let anomalies: u64 = s["decode_anomalies"]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    assert_eq!(
        total + anomalies + s["unkeyed_packets"].as_u64().unwrap(),
        s["packets"].as_u64().unwrap()
    );
    assert!(flows(&live)
        .iter()
        .any(|f| f["nightjar"]["flow"]["termination"] == "shutdown"));
}

#[test]
fn sighup_after_mv_continues_into_a_new_file() {
    let test = "sighup_after_mv_continues_into_a_new_file";
    if !can_run(test) {
        return;
    }
    let ns = Netns::new("h");
    // Short timeouts: flows end (and are written) while the daemon runs.
    let cfg = ns.config(
        1,
        "tcp_timeout = \"1s\"\nudp_timeout = \"1s\"\nother_timeout = \"1s\"\ntcp_closed_timeout = \"1s\"",
    );
    let mut d = Daemon::start(&ns, &cfg);
    let first = vec![repo().join("pcaps/demo.pcap")];
    wait_child(ns.replay(&first, &["--topspeed"]));
    metrics_when(&ns, "nightjar_records_written_total", 1.0);
    let rotated = ns.dir.join("out.json.1");
    std::fs::rename(ns.out(), &rotated).unwrap();
    d.signal("HUP");
    d.wait_for("SIGHUP: reopening output");
    // The reopen is done once the new file exists.
    let deadline = Instant::now() + LIMIT;
    while !ns.out().exists() {
        assert!(Instant::now() < deadline, "no new output file after SIGHUP");
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_child(ns.replay(&first, &["--topspeed"]));
    // Stop only once the second copy has been read from the ring.
    let offline = run(&["replay", "--quiet", first[0].to_str().unwrap()], LIMIT);
    let per_copy = stats(&records(&offline))["nightjar"]["stats"]["packets"]
        .as_f64()
        .unwrap();
    let iface = format!("{{interface=\"{}\"}}", ns.rx_if);
    metrics_when(
        &ns,
        &format!("nightjar_packets_total{iface}"),
        2.0 * per_copy,
    );
    let (status, log) = d.stop();
    assert!(status.success(), "{log:?}");
    let old = read_records(&rotated);
    let new = read_records(&ns.out());
    assert!(
        !flows(&old).is_empty(),
        "nothing written before the rotation"
    );
    assert!(
        !flows(&new).is_empty(),
        "nothing written after the rotation"
    );
    // The stats record (written at shutdown) went to the new file.
    assert!(new.iter().any(|r| dataset(r) == "nightjar.stats"));
    let s = &stats(&new)["nightjar"]["stats"];
    assert_eq!(
        s["flows"]["created"].as_u64().unwrap(),
        (flows(&old).len() + flows(&new).len()) as u64
    );
}

#[test]
fn drops_to_the_configured_user_without_capabilities() {
    let test = "drops_to_the_configured_user_without_capabilities";
    if !can_run(test) {
        return;
    }
    let Some(nobody) = std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("nobody:"))
        .and_then(|l| l.split(':').nth(2).map(str::to_string))
    else {
        return eprintln!("SKIPPED {test}: no user \"nobody\" to switch to");
    };
    let ns = Netns::new("p");
    let cfg = ns.config(2, LONG_TIMEOUTS);
    let text = std::fs::read_to_string(&cfg).unwrap() + "[daemon]\nuser = \"nobody\"\n";
    std::fs::write(&cfg, text).unwrap();
    // The unprivileged user writes the output and the state.
    sh(&["chown", "-R", &nobody, ns.dir.to_str().unwrap()]);
    let d = Daemon::start(&ns, &cfg);
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.child.id())).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l[name.len()..].split_whitespace().collect::<Vec<_>>())
            .unwrap()
    };
    assert!(field("Uid:").iter().all(|u| *u == nobody), "{status}");
    for set in ["CapEff:", "CapPrm:", "CapInh:", "CapAmb:", "CapBnd:"] {
        assert_eq!(field(set), ["0000000000000000"], "{set} {status}");
    }
    assert_eq!(field("NoNewPrivs:"), ["1"]);
    // Capture still works on the sockets opened before the switch.
    wait_child(ns.replay(&[repo().join("pcaps/demo.pcap")], &["--topspeed"]));
    let iface = format!("{{interface=\"{}\"}}", ns.rx_if);
    metrics_when(&ns, &format!("nightjar_packets_total{iface}"), 47.0);
    let (st, log) = d.stop();
    assert!(st.success(), "{log:?}");
    assert!(flows(&read_records(&ns.out())).len() >= 5);
}

#[test]
fn tells_systemd_ready_and_feeds_the_watchdog() {
    let test = "tells_systemd_ready_and_feeds_the_watchdog";
    if !can_run(test) {
        return;
    }
    let ns = Netns::new("n");
    let cfg = ns.config(1, LONG_TIMEOUTS);
    let sock_path = ns.dir.join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(LIMIT)).unwrap();
    let d = Daemon::start_with(
        &ns,
        &cfg,
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while !got.iter().any(|m: &String| m == "WATCHDOG=1") {
        let n = sock.recv(&mut buf).expect("a notification from nightjar");
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(
        got[0].starts_with("READY=1\nSTATUS=capturing on "),
        "{got:?}"
    );
    let (status, _) = d.stop();
    assert!(status.success());
    let mut last = String::new();
    while last != "STOPPING=1" {
        let n = sock.recv(&mut buf).expect("STOPPING=1 from nightjar");
        last = String::from_utf8_lossy(&buf[..n]).into_owned();
    }
}

// ---------------------------------------------------------------------------
// The correlator's inputs in the daemon: SIGHUP reloads, the Jamf poller, and
// AN1717 detection.
// ---------------------------------------------------------------------------

/// The demo capture's client whose flow the inventory tests look at.
const DEMO_MAC: &str = "80:a9:97:0d:af:a1";

/// Flows end (and are written) a second after their last packet.
const SHORT_TIMEOUTS: &str = "tcp_timeout = \"1s\"\nudp_timeout = \"1s\"\nother_timeout = \"1s\"\ntcp_closed_timeout = \"1s\"";

fn append(cfg: &Path, text: &str) {
    let old = std::fs::read_to_string(cfg).unwrap();
    std::fs::write(cfg, old + text).unwrap();
}

/// `device.id` of each flow record from the demo client, in output order.
fn demo_client_devices(recs: &[Value]) -> Vec<String> {
    let mac = DEMO_MAC.to_uppercase().replace(':', "-");
    flows(recs)
        .into_iter()
        .filter(|f| f["source"]["mac"] == mac.as_str())
        .map(|f| f["device"]["id"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Waits until `packets` frames were captured and every flow they made was written.
fn all_written(ns: &Netns, packets: f64) {
    let iface = format!("nightjar_packets_total{{interface=\"{}\"}}", ns.rx_if);
    let deadline = Instant::now() + LIMIT;
    loop {
        let m = metrics(&ns.http_get("/metrics"));
        let got = m.get(&iface).copied().unwrap_or(0.0);
        let created = m
            .get("nightjar_flows_created_total")
            .copied()
            .unwrap_or(f64::MAX);
        let written = m
            .get("nightjar_records_written_total")
            .copied()
            .unwrap_or(0.0);
        if got >= packets && m.get("nightjar_flows_active") == Some(&0.0) && written >= created {
            return;
        }
        assert!(Instant::now() < deadline, "flows never all written: {m:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends the demo capture, stops the daemon once it was read, and gives
/// [`demo_client_devices`] of what was written.
fn demo_devices_after_replay(ns: &Netns, d: Daemon) -> Vec<String> {
    wait_child(ns.replay(&[repo().join("pcaps/demo.pcap")], &["--topspeed"]));
    let iface = format!("{{interface=\"{}\"}}", ns.rx_if);
    metrics_when(ns, &format!("nightjar_packets_total{iface}"), 47.0);
    let (status, log) = d.stop();
    assert!(status.success(), "{log:?}");
    demo_client_devices(&read_records(&ns.out()))
}

fn write_inventory(path: &Path, device: &str) {
    let inv = serde_json::json!({"devices": [{"id": device, "wifi_mac": DEMO_MAC, "apps": []}]});
    std::fs::write(path, inv.to_string()).unwrap();
}

#[test]
fn sighup_reloads_the_inventory_for_later_flows() {
    let test = "sighup_reloads_the_inventory_for_later_flows";
    if !can_run(test) {
        return;
    }
    let ns = Netns::new("i");
    let inv = ns.dir.join("inventory.json");
    write_inventory(&inv, "ipad-before");
    let cfg = ns.config(1, SHORT_TIMEOUTS);
    append(
        &cfg,
        &format!(
            "[mdm]\ninventory = \"{}\"\n[daemon]\ncoverage_interval = \"1s\"\n",
            inv.display()
        ),
    );
    let demo = vec![repo().join("pcaps/demo.pcap")];
    let offline = run(&["replay", "--quiet", demo[0].to_str().unwrap()], LIMIT);
    let per_copy = stats(&records(&offline))["nightjar"]["stats"]["packets"]
        .as_f64()
        .unwrap();

    let mut d = Daemon::start(&ns, &cfg);
    wait_child(ns.replay(&demo, &["--topspeed"]));
    // Every flow of the first copy is written before the inventory changes.
    all_written(&ns, per_copy);
    write_inventory(&inv, "ipad-after");
    d.signal("HUP");
    d.wait_for("SIGHUP: inputs reloaded");
    wait_child(ns.replay(&demo, &["--topspeed"]));
    all_written(&ns, 2.0 * per_copy);

    // A file that does not load keeps the previous inventory, says so once, counts it.
    std::fs::write(&inv, "{\"devices\": [").unwrap();
    d.signal("HUP");
    d.wait_for("keeping the previous inventory");
    let m = metrics_when(
        &ns,
        "nightjar_reload_failures_total{file=\"mdm.inventory\"}",
        1.0,
    );
    assert_eq!(
        m["nightjar_reload_failures_total{file=\"mdm.inventory\"}"],
        1.0
    );
    assert_eq!(m["nightjar_reloads_total"], 2.0);
    wait_child(ns.replay(&demo, &["--topspeed"]));
    all_written(&ns, 3.0 * per_copy);

    let (status, log) = d.stop();
    assert!(status.success(), "{log:?}");
    let failures: Vec<&String> = log.iter().filter(|l| l.contains("mdm.inventory")).collect();
    assert_eq!(failures.len(), 1, "{log:?}");
    // Flows written before the reload carry the old identity, every later one the new.
    let recs = read_records(&ns.out());
    let ids = demo_client_devices(&recs);
    let before = ids.iter().take_while(|i| *i == "ipad-before").count();
    assert!(before >= 1, "{ids:?}");
    assert!(ids.len() >= before + 2, "{ids:?}");
    assert!(ids[before..].iter().all(|i| i == "ipad-after"), "{ids:?}");
    // Coverage is written every second while running (the copies were seconds
    // apart), not only at shutdown: some comes before the last flow record.
    let last_flow = recs
        .iter()
        .rposition(|r| dataset(r) == "nightjar.flow")
        .unwrap();
    assert!(
        recs[..last_flow]
            .iter()
            .any(|r| dataset(r) == "nightjar.coverage" && r["device"]["id"] == "ipad-before"),
        "no periodic coverage record"
    );
}

/// Answers one request of a Jamf Pro API: the token endpoint, and one page of
/// `/api/v2/mobile-devices/detail` holding `device`.
fn jamf_answer(stream: std::net::TcpStream, device: &Value) {
    use std::io::{Read, Write};
    let mut r = BufReader::new(stream);
    let mut head = String::new();
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
        if head.is_empty() {
            head = line;
        }
    }
    let mut body = vec![0; len];
    let _ = r.read_exact(&mut body);
    let target = head.split_whitespace().nth(1).unwrap_or("");
    let (status, reply) = if target == "/api/oauth/token" {
        (
            "200 OK",
            serde_json::json!({"access_token": "t1", "token_type": "Bearer", "expires_in": 1199}),
        )
    } else if target.starts_with("/api/v2/mobile-devices/detail?") {
        let results = if target.contains("page=0&") || target.ends_with("page=0") {
            vec![device.clone()]
        } else {
            Vec::new()
        };
        (
            "200 OK",
            serde_json::json!({"totalCount": 1, "results": results}),
        )
    } else {
        ("404 Not Found", serde_json::json!({"httpStatus": 404}))
    };
    let text = reply.to_string();
    let mut s = r.into_inner();
    let _ = write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
}

/// Serves a Jamf Pro API on 127.0.0.1 inside network namespace `ns` (where the
/// daemon runs); returns its port. The thread lives as long as the test process.
fn jamf_in_namespace(ns: &str, device: Value) -> u16 {
    use std::os::fd::AsRawFd;
    let (tx, rx) = mpsc::channel();
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).expect("open the namespace");
        // SAFETY: setns with a valid descriptor of a network namespace changes the
        // namespace of this thread only; no memory is shared with the call.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}");
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        tx.send(l.local_addr().unwrap().port()).unwrap();
        for s in l.incoming().map_while(Result::ok) {
            jamf_answer(s, &device);
        }
    });
    rx.recv_timeout(LIMIT).expect("the Jamf server starts")
}

#[test]
fn jamf_poller_feeds_the_inventory_used_on_flows() {
    let test = "jamf_poller_feeds_the_inventory_used_on_flows";
    if !can_run(test) {
        return;
    }
    let ns = Netns::new("j");
    let udid = "00008110-000A1B2C3D4E5F60";
    let device = serde_json::json!({
        "mobileDeviceId": "7",
        "deviceType": "iOS",
        "general": {"udid": udid, "displayName": "Lab iPad", "osVersion": "17.4.1",
                    "supervised": true, "managed": true, "deviceOwnershipType": "Institutional"},
        "hardware": {"serialNumber": "DMPXK0AAPL07", "wifiMacAddress": DEMO_MAC,
                     "model": "iPad Air", "modelIdentifier": "iPad13,16"},
        "applications": [{"identifier": "com.example.chat", "name": "Chat", "version": "420",
                          "shortVersion": "4.2", "managementStatus": "Managed"}]
    });
    let port = jamf_in_namespace(&ns.rx_ns, device);
    let secret = ns.dir.join("jamf-secret");
    std::fs::write(&secret, "jamf-secret\n").unwrap();
    let cfg = ns.config(2, LONG_TIMEOUTS);
    append(
        &cfg,
        &format!(
            "[mdm.jamf]\nurl = \"http://127.0.0.1:{port}\"\nclient_id = \"nj-client\"\n\
             client_secret_file = \"{}\"\npoll_interval = \"1h\"\n",
            secret.display()
        ),
    );
    let d = Daemon::start(&ns, &cfg);
    // The first pull happens at start; its inventory reaches the correlator.
    let m = metrics_when(
        &ns,
        "nightjar_mdm_polls_total{adapter=\"jamf\",result=\"success\"}",
        1.0,
    );
    let m = if m.get("nightjar_inventory_devices").copied() == Some(1.0) {
        m
    } else {
        metrics_when(&ns, "nightjar_inventory_devices", 1.0)
    };
    assert_eq!(
        m["nightjar_mdm_polls_total{adapter=\"jamf\",result=\"failure\"}"],
        0.0
    );
    assert!(m.contains_key("nightjar_mdm_inventory_age_seconds{adapter=\"jamf\"}"));
    assert_eq!(demo_devices_after_replay(&ns, d), [udid]);
    // The last good inventory is kept for the next start.
    let saved = std::fs::read_to_string(ns.dir.join("state/mdm-jamf-inventory.json")).unwrap();
    assert!(saved.contains(udid), "{saved}");
}

/// Records of `dataset`, each as its JSON text, sorted.
fn of_dataset(recs: &[Value], dataset_name: &str) -> Vec<String> {
    let mut v: Vec<String> = recs
        .iter()
        .filter(|r| dataset(r) == dataset_name)
        .map(Value::to_string)
        .collect();
    v.sort();
    v
}

#[test]
fn an1717_alerts_live_equal_the_replay_of_what_was_captured() {
    let test = "an1717_alerts_live_equal_the_replay_of_what_was_captured";
    if !can_run(test) {
        return;
    }
    if !has_tool(test, "tcpdump") {
        return;
    }
    let ns = Netns::new("a");
    let demo = repo().join("config/demo");
    let cfg = ns.config(2, LONG_TIMEOUTS);
    // tcpreplay squeezes the demo's 8 hours into well under a second, so every app
    // flow starts within the default 5 s APNs wake window of some APNs activity and
    // would be explained as a push wake; 1 ms keeps that inference to its scale.
    append(
        &cfg,
        &format!(
            "[mdm]\ninventory = \"{0}/inventory.json\"\nevents = \"{0}/events.ndjson\"\n\
             catalog = \"{0}/catalog.json\"\n\
             [detect]\napns_wake_window = \"1ms\"\n",
            demo.display()
        ),
    );
    let pcap = repo().join("pcaps/demo-an1717.pcap");
    let d = Daemon::start(&ns, &cfg);
    let offline = run(&["replay", "--quiet", pcap.to_str().unwrap()], LIMIT);
    let want = stats(&records(&offline))["nightjar"]["stats"]["packets"]
        .as_f64()
        .unwrap();
    // What reached the interface, with the kernel's timestamps, for the replay.
    // tcpdump stops by itself after the demo's packet count: stopped by a signal, it
    // would leave packets it had received but not yet written.
    let recorded = ns.dir.join("recorded.pcap");
    let count = format!("{want}");
    let mut tcpdump = Command::new("ip")
        .args(["netns", "exec", &ns.rx_ns, "tcpdump", "-n", "-c", &count])
        .args(["-B", "65536", "--time-stamp-precision=nano"])
        .args(["-i", &ns.rx_if, "-w"])
        .arg(&recorded)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tcpdump");
    let mut err = BufReader::new(tcpdump.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("listening on") {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "tcpdump did not start"
        );
    }
    wait_child(ns.replay(std::slice::from_ref(&pcap), &["--topspeed"]));
    let iface = format!("{{interface=\"{}\"}}", ns.rx_if);
    metrics_when(&ns, &format!("nightjar_packets_total{iface}"), want);
    let deadline = Instant::now() + LIMIT;
    while tcpdump.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = tcpdump.kill();
            panic!("tcpdump did not see the {want} packets");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut err, &mut rest);
    assert!(tcpdump.wait().unwrap().success(), "tcpdump: {rest}");
    let (status, log) = d.stop();
    assert!(status.success(), "{log:?}");
    let live = read_records(&ns.out());

    // Replay takes the events and catalog as flags (the config's are the daemon's).
    let file = |name: &str| demo.join(name).to_str().unwrap().to_string();
    let replayed = run(
        &[
            "replay",
            "--quiet",
            "--config",
            cfg.to_str().unwrap(),
            "--events",
            &file("events.ndjson"),
            "--catalog",
            &file("catalog.json"),
            recorded.to_str().unwrap(),
        ],
        LIMIT,
    );
    assert!(replayed.status.success());
    let replayed = records(&replayed);
    assert_eq!(
        stats(&replayed)["nightjar"]["stats"]["packets"].as_f64(),
        Some(want),
        "tcpdump missed packets: {rest}"
    );
    let alerts = of_dataset(&live, "nightjar.alert");
    assert!(!alerts.is_empty(), "no alert from the live daemon");
    for ds in ["nightjar.alert", "nightjar.coverage", "nightjar.governance"] {
        assert_eq!(
            of_dataset(&live, ds),
            of_dataset(&replayed, ds),
            "{ds}: live differs from the replay of the same packets"
        );
    }
    assert_eq!(
        stats(&live)["nightjar"]["stats"]["records"]["alert"].as_u64(),
        Some(alerts.len() as u64)
    );
    // The baselines learnt are kept for the next start.
    assert!(ns.dir.join("state/baselines.json").exists());
}

#[test]
fn identity_socket_lines_name_the_device() {
    let test = "identity_socket_lines_name_the_device";
    if !can_run(test) {
        return;
    }
    let ns = Netns::new("s");
    let sock = ns.dir.join("identity.sock");
    let cfg = ns.config(1, LONG_TIMEOUTS);
    append(
        &cfg,
        &format!("[identity]\nsocket = \"{}\"\n", sock.display()),
    );
    let d = Daemon::start(&ns, &cfg);
    // A VPN hook says who holds the demo client's address from a minute ago on.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let ts = nightjar::mdm::format_rfc3339(now - 60_000_000_000);
    let line = serde_json::json!({"ts": ts, "ip": "10.15.33.65", "device_id": "vpn-ipad-9",
                                  "user": "alice", "source": "strongswan"});
    {
        use std::io::Write;
        let mut s = std::os::unix::net::UnixStream::connect(&sock).expect("the identity socket");
        writeln!(s, "{line}").unwrap();
        writeln!(s, "not a feed line").unwrap();
    }
    let m = metrics_when(
        &ns,
        "nightjar_identity_socket_lines_total{result=\"bad\"}",
        1.0,
    );
    assert_eq!(
        m["nightjar_identity_socket_lines_total{result=\"accepted\"}"],
        1.0
    );
    assert_eq!(demo_devices_after_replay(&ns, d), ["vpn-ipad-9"]);
    assert!(!sock.exists(), "the socket file is removed at stop");
}

#[test]
fn micromdm_webhooks_feed_the_inventory_used_on_flows() {
    let test = "micromdm_webhooks_feed_the_inventory_used_on_flows";
    if !can_run(test) {
        return;
    }
    let ns = Netns::new("w");
    let secret = ns.dir.join("webhook-secret");
    std::fs::write(&secret, "hook-secret\n").unwrap();
    let cfg = ns.config(1, LONG_TIMEOUTS);
    append(
        &cfg,
        &format!(
            "[mdm.webhook]\nlisten = \"127.0.0.1:9465\"\nsecret_file = \"{}\"\nmicromdm = true\n",
            secret.display()
        ),
    );
    let d = Daemon::start(&ns, &cfg);
    let udid = "00008030-001A2B3C4D5E6F70";
    let info = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><plist version=\"1.0\"><dict>\
         <key>CommandUUID</key><string>c1</string><key>QueryResponses</key><dict>\
         <key>SerialNumber</key><string>F2LXK0AAPLJM</string>\
         <key>WiFiMAC</key><string>{DEMO_MAC}</string></dict>\
         <key>Status</key><string>Acknowledged</string><key>UDID</key><string>{udid}</string>\
         </dict></plist>"
    );
    let body = nightjar::mdm::adapter::micromdm::envelope("mdm.Connect", udid, &info);
    // A wrong secret is refused; the right one accepted.
    for (auth, want) in [("Bearer nope", "401"), ("Bearer hook-secret", "202")] {
        let req = format!(
            "POST /webhook/nanomdm HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let file = ns.dir.join("request");
        std::fs::write(&file, req).unwrap();
        let script = format!(
            "exec 3<>/dev/tcp/127.0.0.1/9465 && cat {} >&3 && cat <&3",
            file.display()
        );
        let out = Command::new("ip")
            .args(["netns", "exec", &ns.rx_ns, "bash", "-c", &script])
            .output()
            .expect("run bash");
        let answer = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(answer.starts_with(&format!("HTTP/1.1 {want}")), "{answer}");
    }
    let m = metrics_when(&ns, "nightjar_inventory_devices", 1.0);
    assert_eq!(
        m["nightjar_mdm_webhooks_total{adapter=\"webhook\",result=\"unauthorized\"}"],
        1.0
    );
    assert_eq!(
        m["nightjar_mdm_webhooks_total{adapter=\"webhook\",result=\"accepted\"}"],
        1.0
    );
    assert_eq!(demo_devices_after_replay(&ns, d), [udid]);
}

/// Tansu (a Kafka-protocol broker) on the receive namespace's loopback, with
/// the topics made; killed when dropped.
struct Broker(Child);

impl Broker {
    fn start(ns: &Netns, topics: &[&str]) -> Broker {
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.rx_ns, "tansu", "broker"])
            .args(["--listener-url", "tcp://127.0.0.1:9092"])
            .args(["--advertised-listener-url", "tcp://127.0.0.1:9092"])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        let broker = Broker(child);
        let deadline = Instant::now() + LIMIT;
        for t in topics {
            loop {
                let ok = Command::new("ip")
                    .args(["netns", "exec", &ns.rx_ns, "tansu", "topic", "create"])
                    .args(["--broker", "tcp://127.0.0.1:9092", "--partitions", "1", t])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if ok {
                    break;
                }
                assert!(Instant::now() < deadline, "tansu did not take topic {t}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        broker
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `nightjar run` as a fleet sensor: what it captures goes through a broker, and
/// a correlator (`nightjar correlate`) makes of it the flow records a replay of
/// the same captures makes; the sensor's counters say everything was delivered.
#[test]
fn live_sensor_through_a_broker_gives_the_replay_flows() {
    let test = "live_sensor_through_a_broker_gives_the_replay_flows";
    if !can_run(test) {
        return;
    }
    if !has_tool(test, "tansu") {
        return;
    }
    let ns = Netns::new("k");
    let _broker = Broker::start(&ns, &["nj.obs", "nj.rec", "nj.bl"]);
    let cfg = ns.config(1, LONG_TIMEOUTS);
    let fleet = |role: &str| {
        format!(
            "[fleet]\nrole = \"{role}\"\nbrokers = [\"127.0.0.1:9092\"]\n\
             observations_topic = \"nj.obs\"\nrecords_topic = \"nj.rec\"\n\
             baselines_topic = \"nj.bl\"\ngroup_id = \"nj\"\nspool_dir = \"{}\"\n",
            ns.dir.join("spool").display()
        )
    };
    let files = captures();
    // The replay runs every stage in one process: before the config names a role.
    let offline = replay_offline(&cfg, &files);
    let want = stats(&offline)["nightjar"]["stats"]["packets"]
        .as_f64()
        .unwrap();
    append(&cfg, &fleet("sensor"));
    let d = Daemon::start(&ns, &cfg);
    wait_child(ns.replay(&files, &["--topspeed"]));
    let iface = format!("{{interface=\"{}\"}}", ns.rx_if);
    metrics_when(&ns, &format!("nightjar_packets_total{iface}"), want);
    let (status, log) = d.stop();
    assert!(status.success(), "{log:?}");
    // Only the stats record is local: the observations went to the broker.
    let local = read_records(&ns.out());
    assert!(flows(&local).is_empty(), "a sensor writes no flow records");
    let summary = log
        .iter()
        .find(|l| l.contains("nightjar: sensor:"))
        .unwrap_or_else(|| panic!("no sensor summary: {log:?}"));
    assert!(
        summary.contains(" 0 produce errors,") && summary.ends_with("(0 bytes left), 0 dropped"),
        "{summary}"
    );

    // The correlator, in the same namespace, reads the topic to its end.
    let ccfg = ns.dir.join("correlator.toml");
    std::fs::write(
        &ccfg,
        format!(
            "[output]\npath = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:9465\"\n{}",
            ns.dir.join("correlated.json").display(),
            fleet("correlator")
        ),
    )
    .unwrap();
    let c = Command::new("ip")
        .args(["netns", "exec", &ns.rx_ns])
        .arg(bin())
        .args(["correlate", "--until-idle", "3s", "--config"])
        .arg(&ccfg)
        .output()
        .expect("run nightjar correlate");
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
    let correlated = read_records(&ns.dir.join("correlated.json"));
    let mut a: Vec<String> = flows(&offline).into_iter().map(timeless).collect();
    let mut b: Vec<String> = flows(&correlated).into_iter().map(timeless).collect();
    a.sort();
    b.sort();
    assert!(a.len() >= 5, "too few flows to compare: {}", a.len());
    assert_eq!(a, b, "flows through the broker differ from the replay's");
}
