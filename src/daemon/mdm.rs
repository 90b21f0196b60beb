//! The MDM adapter tasks `nightjar run` starts on its control-plane runtime, as the
//! config asks: the Jamf Pro poller (`[mdm.jamf]`), the Intune poller
//! (`[mdm.intune]`), the webhook receiver (`[mdm.webhook]`: `POST /webhook/jamf` when
//! Jamf is configured, `/webhook/micromdm` and `/webhook/nanomdm` with
//! `micromdm = true`) and the MicroMDM/NanoMDM consumer behind it.
//!
//! Each adapter keeps its last good inventory and poll cursor in `[state] dir`
//! (`mdm::adapter::state`) and publishes its current inventory on a `watch` channel;
//! a forwarding task per adapter turns those into `(adapter, inventory)` messages on
//! one bounded queue ([`INVENTORY_QUEUE`]), and every adapter's lifecycle events share
//! another ([`EVENT_QUEUE`]). Both are awaited by the control loop, which hands them to
//! [`super::inputs::Inputs`]. The adapters wait (never drop) when these are full.
//!
//! Invariants: secrets are read after the privilege drop (systemd credentials are
//! readable by the service user) and never logged; a missing secret stops the start
//! with one line; the Jamf task's webhook queue stays open for the daemon's life even
//! without a receiver, so the poller never ends early.

use super::DaemonError;
use crate::config::Config;
use crate::mdm::adapter::intune::{self, Intune};
use crate::mdm::adapter::jamf::{self, Jamf, JamfHook};
use crate::mdm::adapter::micromdm::{self, MicroMdm};
use crate::mdm::adapter::run::{run_intune, run_jamf, run_micromdm, Outputs};
use crate::mdm::adapter::webhook::{self, Routes, WebhookOptions};
use crate::mdm::adapter::{read_secret, AdapterStats, HttpOptions, InventoryTracker};
use crate::mdm::{Inventory, LifecycleEvent};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Inventory publications queued to the control loop: each is one `Arc`, and a
/// publication only matters until the next one of the same adapter.
pub const INVENTORY_QUEUE: usize = 16;
/// Lifecycle events queued from the adapters to the control loop; the adapters wait
/// when it is full (the control loop drains it into a bounded, counted buffer).
pub const EVENT_QUEUE: usize = 4096;

/// The running adapters.
pub struct Adapters {
    /// `(adapter, counters)` for `/metrics`; the receiver is "webhook".
    pub stats: Vec<(&'static str, Arc<AdapterStats>)>,
    /// Current inventories as the adapters publish them.
    pub inventories: mpsc::Receiver<(&'static str, Arc<Inventory>)>,
    /// Derived and reported lifecycle events.
    pub events: mpsc::Receiver<LifecycleEvent>,
    tasks: Vec<JoinHandle<()>>,
    /// Keeps the Jamf task's webhook queue open when no receiver feeds it.
    _jamf_hooks: Option<mpsc::Sender<JamfHook>>,
}

impl Adapters {
    /// True when no adapter runs.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Stops every task (state files are written atomically, so a stop mid-write
    /// leaves the previous one).
    pub fn stop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for Adapters {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn forward(
    adapter: &'static str,
    mut rx: watch::Receiver<Arc<Inventory>>,
    tx: mpsc::Sender<(&'static str, Arc<Inventory>)>,
) {
    loop {
        let inv = Arc::clone(&rx.borrow_and_update());
        if tx.send((adapter, inv)).await.is_err() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Starts what `cfg` asks for. Must run inside the runtime (it spawns tasks);
/// `webhook` is the receiver's listener, bound before the privilege drop.
pub fn start(
    cfg: &Config,
    webhook_listener: Option<std::net::TcpListener>,
) -> Result<Adapters, DaemonError> {
    let (inv_tx, inv_rx) = mpsc::channel(INVENTORY_QUEUE);
    let (ev_tx, ev_rx) = mpsc::channel(EVENT_QUEUE);
    let mut a = Adapters {
        stats: Vec::new(),
        inventories: inv_rx,
        events: ev_rx,
        tasks: Vec::new(),
        _jamf_hooks: None,
    };
    let dir = Some(cfg.state_dir.as_path());
    let outputs = |name: &'static str, tracker: &InventoryTracker, tasks: &mut Vec<_>| {
        let (wtx, wrx) = watch::channel(tracker.current());
        tasks.push(tokio::spawn(forward(name, wrx, inv_tx.clone())));
        Outputs {
            inventory: wtx,
            events: ev_tx.clone(),
        }
    };
    let mut routes = Routes::default();
    if let Some(j) = &cfg.mdm.jamf {
        let s = Arc::new(AdapterStats::default());
        let client = Jamf::new(j, HttpOptions::default(), Arc::clone(&s))?;
        let tracker = InventoryTracker::open(jamf::NAME, dir, Arc::clone(&s));
        let out = outputs(jamf::NAME, &tracker, &mut a.tasks);
        let (hook_tx, hook_rx) = mpsc::channel(webhook::DEFAULT_QUEUE);
        a.tasks.push(tokio::spawn(run_jamf(
            client,
            tracker,
            j.poll_interval,
            hook_rx,
            out,
        )));
        routes.jamf = Some(hook_tx.clone());
        a._jamf_hooks = Some(hook_tx);
        a.stats.push((jamf::NAME, s));
    }
    if let Some(i) = &cfg.mdm.intune {
        let s = Arc::new(AdapterStats::default());
        let client = Intune::new(i, HttpOptions::default(), Arc::clone(&s))?;
        let tracker = InventoryTracker::open(intune::NAME, dir, Arc::clone(&s));
        let out = outputs(intune::NAME, &tracker, &mut a.tasks);
        a.tasks.push(tokio::spawn(run_intune(
            client,
            tracker,
            i.poll_interval,
            out,
        )));
        a.stats.push((intune::NAME, s));
    }
    if let (Some(w), Some(listener)) = (&cfg.mdm.webhook, webhook_listener) {
        let secret = read_secret(&w.secret_file)?;
        if w.micromdm {
            let s = Arc::new(AdapterStats::default());
            let tracker = InventoryTracker::open(micromdm::NAME, dir, Arc::clone(&s));
            let out = outputs(micromdm::NAME, &tracker, &mut a.tasks);
            let (hook_tx, hook_rx) = mpsc::channel(webhook::DEFAULT_QUEUE);
            a.tasks.push(tokio::spawn(run_micromdm(
                MicroMdm::new(tracker, Arc::clone(&s)),
                Arc::clone(&s),
                hook_rx,
                out,
            )));
            routes.micromdm = Some(hook_tx);
            a.stats.push((micromdm::NAME, s));
        }
        let listener = tokio::net::TcpListener::from_std(listener).map_err(DaemonError::Start)?;
        let s = Arc::new(AdapterStats::default());
        let stats = Arc::clone(&s);
        let addr = w.listen;
        let opts = WebhookOptions {
            auth: w.auth,
            ..WebhookOptions::default()
        };
        a.tasks.push(tokio::spawn(async move {
            if let Err(e) = webhook::serve(listener, secret, opts, stats, routes).await {
                eprintln!("nightjar: mdm webhook receiver on {addr} stopped: {e}");
            }
        }));
        a.stats.push(("webhook", s));
    }
    Ok(a)
}
