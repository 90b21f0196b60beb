//! The adapter tasks of the control plane: a one-shot pull of every configured API
//! adapter ([`sync_once`], behind `nightjar mdm sync`), the Jamf Pro poller with
//! webhook-triggered device re-pulls ([`run_jamf`]), the Intune poller
//! ([`run_intune`]) and the MicroMDM/NanoMDM webhook consumer ([`run_micromdm`]).
//!
//! Invariants: a task publishes an inventory only after a successful pull (the
//! [`InventoryTracker`] keeps the last good one), sends every derived or reported event
//! once, and ends when its input queue closes or its outputs are dropped.

use super::intune::Intune;
use super::jamf::{Jamf, JamfHook};
use super::micromdm::{MdmHook, MicroMdm};
use super::{merge, wall_clock_ns, AdapterError, AdapterStats, HttpOptions, InventoryTracker};
use crate::config::MdmConfig;
use crate::mdm::{Inventory, LifecycleEvent};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Where a task publishes: the current inventory (swapped as an `Arc`) and lifecycle
/// events (a bounded channel to the correlator).
#[derive(Clone)]
pub struct Outputs {
    /// The adapter's current inventory.
    pub inventory: watch::Sender<Arc<Inventory>>,
    /// Derived and reported lifecycle events.
    pub events: mpsc::Sender<LifecycleEvent>,
}

impl Outputs {
    async fn publish(&self, inv: Arc<Inventory>, events: Vec<LifecycleEvent>) -> bool {
        self.inventory.send_replace(inv);
        for e in events {
            if self.events.send(e).await.is_err() {
                return false;
            }
        }
        !self.events.is_closed()
    }
}

/// The result of [`sync_once`]: the merged inventory and each adapter's counters.
pub struct SyncResult {
    /// All configured adapters' devices, merged.
    pub inventory: Inventory,
    /// `(adapter, counters)` in configuration order.
    pub stats: Vec<(&'static str, Arc<AdapterStats>)>,
}

/// One pull from every configured API adapter (`[mdm.jamf]`, `[mdm.intune]`), merged.
/// Any adapter failing fails the whole sync (an operator checking credentials wants to
/// know). Nothing is persisted.
pub async fn sync_once(cfg: &MdmConfig, opts: &HttpOptions) -> Result<SyncResult, AdapterError> {
    let mut parts = Vec::new();
    let mut stats = Vec::new();
    if let Some(j) = &cfg.jamf {
        let s = Arc::new(AdapterStats::default());
        let jamf = Jamf::new(j, opts.clone(), Arc::clone(&s))?;
        stats.push((super::jamf::NAME, Arc::clone(&s)));
        let inv = jamf.pull().await?;
        AdapterStats::inc(&s.pulls_ok);
        parts.push(inv);
    }
    if let Some(i) = &cfg.intune {
        let s = Arc::new(AdapterStats::default());
        let intune = Intune::new(i, opts.clone(), Arc::clone(&s))?;
        stats.push((super::intune::NAME, Arc::clone(&s)));
        let inv = intune.pull().await?;
        AdapterStats::inc(&s.pulls_ok);
        parts.push(inv);
    }
    let merged_stats = AdapterStats::default();
    let refs: Vec<&Inventory> = parts.iter().collect();
    let inventory = match refs.as_slice() {
        [] => Inventory::default(),
        [one] => (*one).clone(),
        many => merge(many, &merged_stats)?,
    };
    Ok(SyncResult { inventory, stats })
}

/// Counts a full pull and diffs its inventory into the tracker (the derived events),
/// or logs and counts its failure, keeping the last good inventory.
fn apply_pull(
    pulled: Result<Inventory, AdapterError>,
    tracker: &mut InventoryTracker,
    stats: &AdapterStats,
) -> Vec<LifecycleEvent> {
    match pulled {
        Ok(inv) => {
            AdapterStats::inc(&stats.pulls_ok);
            tracker.apply(inv, wall_clock_ns())
        }
        Err(e) => {
            tracker.fail(&e, wall_clock_ns());
            Vec::new()
        }
    }
}

/// Time until the next poll: `interval` after the last success (persisted across
/// restarts), now if that is past or unknown.
fn first_delay(last_success_ns: Option<u64>, interval: Duration, now_ns: u64) -> Duration {
    let interval_ns = u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX);
    match last_success_ns {
        Some(last) => Duration::from_nanos(last.saturating_add(interval_ns).saturating_sub(now_ns)),
        None => Duration::ZERO,
    }
}

/// The Jamf Pro task: a full pull every `interval` (the first one `interval` after the
/// last persisted success), and for each webhook its reported event plus a targeted
/// re-pull of the device it names.
pub async fn run_jamf(
    jamf: Jamf,
    mut tracker: InventoryTracker,
    interval: Duration,
    mut hooks: mpsc::Receiver<JamfHook>,
    out: Outputs,
) {
    let stats = Arc::clone(jamf.stats());
    out.inventory.send_replace(tracker.current());
    let poll = tokio::time::sleep(first_delay(
        tracker.saved_last_success(),
        interval,
        wall_clock_ns(),
    ));
    tokio::pin!(poll);
    loop {
        tokio::select! {
            () = &mut poll => {
                let events = apply_pull(jamf.pull().await, &mut tracker, &stats);
                if !out.publish(tracker.current(), events).await {
                    return;
                }
                poll.as_mut().reset(tokio::time::Instant::now() + interval);
            }
            hook = hooks.recv() => {
                let Some(hook) = hook else { return };
                if hook.event.is_some() {
                    AdapterStats::inc(&stats.events_emitted);
                }
                let mut events: Vec<LifecycleEvent> = hook.event.into_iter().collect();
                if let Some(jamf_id) = hook.jamf_id {
                    let now = wall_clock_ns();
                    let known = tracker.current().devices().iter()
                        .find(|d| d.mdm_ids.get(super::jamf::NAME) == Some(&jamf_id))
                        .map(|d| d.id.clone());
                    let result = match jamf.pull_device(&jamf_id).await {
                        Ok(Some(entry)) => {
                            let id = known.unwrap_or_else(|| entry.0.id.clone());
                            tracker.apply_device(&id, Some(entry), now)
                        }
                        Ok(None) => match known {
                            Some(id) => tracker.apply_device(&id, None, now),
                            None => Ok(Vec::new()),
                        },
                        Err(e) => Err(e),
                    };
                    match result {
                        Ok(derived) => {
                            AdapterStats::inc(&stats.device_pulls_ok);
                            events.extend(derived);
                        }
                        Err(e) => stats.failure(super::jamf::NAME, &stats.device_pulls_failed, &e, now),
                    }
                }
                if !out.publish(tracker.current(), events).await {
                    return;
                }
            }
        }
    }
}

/// The Intune task: a full pull every `interval`.
pub async fn run_intune(
    intune: Intune,
    mut tracker: InventoryTracker,
    interval: Duration,
    out: Outputs,
) {
    let stats = Arc::clone(intune.stats());
    out.inventory.send_replace(tracker.current());
    tokio::time::sleep(first_delay(
        tracker.saved_last_success(),
        interval,
        wall_clock_ns(),
    ))
    .await;
    loop {
        let events = apply_pull(intune.pull().await, &mut tracker, &stats);
        if !out.publish(tracker.current(), events).await {
            return;
        }
        tokio::time::sleep(interval).await;
    }
}

/// The MicroMDM/NanoMDM task: applies each webhook to the inventory.
pub async fn run_micromdm(
    mut mdm: MicroMdm,
    stats: Arc<AdapterStats>,
    mut hooks: mpsc::Receiver<MdmHook>,
    out: Outputs,
) {
    out.inventory.send_replace(mdm.current());
    while let Some(hook) = hooks.recv().await {
        let now = wall_clock_ns();
        let events = match mdm.apply(hook, now) {
            Ok(ev) => ev,
            Err(e) => {
                stats.failure(super::micromdm::NAME, &stats.device_pulls_failed, &e, now);
                Vec::new()
            }
        };
        if !out.publish(mdm.current(), events).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resumes_the_schedule() {
        let i = Duration::from_secs(900);
        assert_eq!(first_delay(None, i, 5), Duration::ZERO);
        assert_eq!(
            first_delay(Some(100), i, 100 + 300_000_000_000),
            Duration::from_secs(600)
        );
        assert_eq!(first_delay(Some(0), i, 10_000_000_000_000), Duration::ZERO);
    }
}
