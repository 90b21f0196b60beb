//! Per device and app timelines: when the app was active, in its background grace,
//! in the background or idle, and the background episodes (app traffic past the grace).
//!
//! A pure function of the app's flows and lifecycle marks held for one device
//! ([`build`]); the detector calls it again whenever a flow or a (late) lifecycle
//! event arrives, so a revised input gives a revised timeline.
//!
//! Rules:
//! - reported or derived `app_foreground` / `app_launched` … `app_background` marks
//!   give the active intervals when the app has any of them in the window; otherwise
//!   activity is inferred from traffic: a run of at least `fg_min_flows` flow starts,
//!   each within `fg_burst_gap` of the previous, is active from its first start to its
//!   last start plus `fg_hold`;
//! - after an active interval the app has `grace` (iOS gives a plain app about 30 s);
//!   a `push_wake` (reported, or inferred by the detector from activity on the
//!   device's APNs connection just before a new flow of the app) explains
//!   `push_window` of traffic after it;
//! - a flow's background portion is its time outside active, grace and push windows;
//!   its bytes are apportioned by time (uniform rate: a flow record carries totals,
//!   not a per-second series; interim records refine this);
//! - background portions closer than `episode_idle` form one episode.
//!
//! Invariant: output sizes are bounded by the input sizes; no allocation per call
//! beyond the output.

use crate::mdm::{Confidence, EventKind};
use serde::Serialize;

/// Timeline tunables.
#[derive(Clone, Copy, Debug)]
pub struct TimelineConfig {
    /// Background time iOS gives a plain app after it leaves the foreground.
    pub grace_ns: u64,
    /// Largest gap between flow starts of one inferred foreground burst.
    pub fg_burst_gap_ns: u64,
    /// Flows starting in one burst for it to mark the app active.
    pub fg_min_flows: usize,
    /// How long an inferred burst keeps the app active after its last flow start.
    pub fg_hold_ns: u64,
    /// Quiet time that ends a background episode.
    pub episode_idle_ns: u64,
    /// Traffic a push wake explains.
    pub push_window_ns: u64,
}

impl Default for TimelineConfig {
    fn default() -> Self {
        const S: u64 = 1_000_000_000;
        TimelineConfig {
            grace_ns: 30 * S,
            fg_burst_gap_ns: 10 * S,
            fg_min_flows: 3,
            fg_hold_ns: 20 * S,
            episode_idle_ns: 300 * S,
            push_window_ns: 30 * S,
        }
    }
}

/// App state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Active,
    Background,
    Idle,
}

/// One flow of the app, as the timeline needs it.
#[derive(Clone, Copy, Debug)]
pub struct AppFlow {
    pub start_ns: u64,
    pub end_ns: u64,
}

/// One lifecycle mark of the app (or device).
#[derive(Clone, Copy, Debug)]
pub struct Mark {
    pub ts_ns: u64,
    pub kind: EventKind,
    pub confidence: Confidence,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Segment {
    pub state: State,
    pub start_ns: u64,
    pub end_ns: u64,
    #[serde(serialize_with = "ser_conf")]
    pub confidence: Confidence,
}

fn ser_conf<S: serde::Serializer>(c: &Confidence, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(c.as_str())
}

/// A background episode: indexes into the input flows with the share of each flow's
/// bytes that fell past the grace.
#[derive(Clone, Debug, PartialEq)]
pub struct Episode {
    pub start_ns: u64,
    pub end_ns: u64,
    pub flows: Vec<(usize, f64)>,
    /// End of the last active interval before the episode, if any.
    pub after_active_ns: Option<u64>,
    /// Push wakes (reported or inferred) inside the episode.
    pub push_wakes: usize,
    /// Of those, push wakes inferred from APNs activity.
    pub push_wakes_inferred: usize,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timeline {
    pub segments: Vec<Segment>,
    pub episodes: Vec<Episode>,
    /// How the active intervals are known.
    pub state_confidence: Option<Confidence>,
}

fn is_state_mark(k: EventKind) -> bool {
    matches!(
        k,
        EventKind::AppForeground | EventKind::AppBackground | EventKind::AppLaunched
    )
}

/// Builds the timeline of one app on one device. `flows` in any order; `marks` in any
/// order (only app marks of this app should be passed).
pub fn build(flows: &[AppFlow], marks: &[Mark], cfg: &TimelineConfig) -> Timeline {
    let mut order: Vec<usize> = (0..flows.len()).collect();
    order.sort_by_key(|&i| (flows[i].start_ns, i));
    let mut marks: Vec<Mark> = marks.to_vec();
    marks.sort_by_key(|m| m.ts_ns);
    let last_flow_end = flows.iter().map(|f| f.end_ns).max().unwrap_or(0);

    // Active intervals.
    let mut active: Vec<(u64, u64)> = Vec::new();
    let state_marks: Vec<&Mark> = marks
        .iter()
        .filter(|m| is_state_mark(m.kind) && m.confidence != Confidence::Inferred)
        .collect();
    let confidence;
    if state_marks.is_empty() {
        confidence = Confidence::Inferred;
        let mut i = 0;
        while i < order.len() {
            let mut j = i;
            while j + 1 < order.len()
                && flows[order[j + 1]]
                    .start_ns
                    .saturating_sub(flows[order[j]].start_ns)
                    <= cfg.fg_burst_gap_ns
            {
                j += 1;
            }
            if j + 1 - i >= cfg.fg_min_flows {
                active.push((
                    flows[order[i]].start_ns,
                    flows[order[j]].start_ns + cfg.fg_hold_ns,
                ));
            }
            i = j + 1;
        }
    } else {
        confidence = if state_marks
            .iter()
            .any(|m| m.confidence == Confidence::Reported)
        {
            Confidence::Reported
        } else {
            Confidence::Derived
        };
        let mut open: Option<u64> = None;
        for m in &state_marks {
            match m.kind {
                EventKind::AppForeground | EventKind::AppLaunched => {
                    open.get_or_insert(m.ts_ns);
                }
                EventKind::AppBackground => {
                    if let Some(s) = open.take() {
                        active.push((s, m.ts_ns));
                    }
                }
                _ => {}
            }
        }
        if let Some(s) = open {
            active.push((s, last_flow_end.max(s)));
        }
    }
    active.sort_unstable();
    let active = merge(active);

    // Explained: active + grace, and push windows.
    let mut explained: Vec<(u64, u64)> = active
        .iter()
        .map(|&(s, e)| (s, e.saturating_add(cfg.grace_ns)))
        .collect();
    let pushes: Vec<(u64, bool)> = marks
        .iter()
        .filter(|m| m.kind == EventKind::PushWake)
        .map(|m| (m.ts_ns, m.confidence == Confidence::Inferred))
        .collect();
    explained.extend(
        pushes
            .iter()
            .map(|&(t, _)| (t, t.saturating_add(cfg.push_window_ns))),
    );
    explained.sort_unstable();
    let explained = merge(explained);

    // Background portions of each flow.
    let mut portions: Vec<(u64, u64, usize, f64)> = Vec::new();
    for &i in &order {
        let f = flows[i];
        let (s, e) = (f.start_ns, f.end_ns.max(f.start_ns));
        if e == s {
            if !explained.iter().any(|&(a, b)| a <= s && s <= b) {
                portions.push((s, e, i, 1.0));
            }
            continue;
        }
        let mut cursor = s;
        let mut unexplained = 0u64;
        let (mut first, mut last) = (None, 0u64);
        for &(a, b) in explained.iter().filter(|&&(a, b)| b > s && a < e) {
            if a > cursor {
                unexplained += a - cursor;
                first.get_or_insert(cursor);
                last = a;
            }
            cursor = cursor.max(b);
        }
        if cursor < e {
            unexplained += e - cursor;
            first.get_or_insert(cursor);
            last = e;
        }
        if let Some(first) = first {
            portions.push((first, last, i, unexplained as f64 / (e - s) as f64));
        }
    }
    portions.sort_by_key(|p| (p.0, p.2));

    let mut episodes: Vec<Episode> = Vec::new();
    for (s, e, i, share) in portions {
        match episodes.last_mut() {
            Some(ep) if s <= ep.end_ns.saturating_add(cfg.episode_idle_ns) => {
                ep.end_ns = ep.end_ns.max(e);
                ep.flows.push((i, share));
            }
            _ => episodes.push(Episode {
                start_ns: s,
                end_ns: e,
                flows: vec![(i, share)],
                after_active_ns: active.iter().rev().find(|a| a.1 <= s).map(|a| a.1),
                push_wakes: 0,
                push_wakes_inferred: 0,
            }),
        }
    }
    for ep in &mut episodes {
        let near = |t: u64| t >= ep.start_ns.saturating_sub(cfg.push_window_ns) && t <= ep.end_ns;
        ep.push_wakes = pushes.iter().filter(|p| near(p.0)).count();
        ep.push_wakes_inferred = pushes.iter().filter(|p| p.1 && near(p.0)).count();
    }

    // Segments: active, then background until the next active or the quiet after the
    // last background activity, then idle.
    let mut segments = Vec::new();
    for (k, &(s, e)) in active.iter().enumerate() {
        segments.push(Segment {
            state: State::Active,
            start_ns: s,
            end_ns: e,
            confidence,
        });
        let next = active.get(k + 1).map(|a| a.0);
        let last_bg = episodes
            .iter()
            .filter(|ep| ep.start_ns >= e && next.is_none_or(|n| ep.start_ns < n))
            .map(|ep| ep.end_ns)
            .max()
            .unwrap_or(e + cfg.grace_ns);
        let bg_end = (last_bg + cfg.episode_idle_ns).min(next.unwrap_or(u64::MAX));
        segments.push(Segment {
            state: State::Background,
            start_ns: e,
            end_ns: bg_end,
            confidence,
        });
        if let Some(n) = next {
            if n > bg_end {
                segments.push(Segment {
                    state: State::Idle,
                    start_ns: bg_end,
                    end_ns: n,
                    confidence,
                });
            }
        }
    }
    // Episodes with no active interval before them are background by inference alone.
    for ep in episodes.iter().filter(|ep| ep.after_active_ns.is_none()) {
        segments.push(Segment {
            state: State::Background,
            start_ns: ep.start_ns,
            end_ns: ep.end_ns,
            confidence: Confidence::Inferred,
        });
    }
    segments.sort_by_key(|s| (s.start_ns, s.end_ns));

    Timeline {
        segments,
        episodes,
        state_confidence: Some(confidence),
    }
}

fn merge(sorted: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(sorted.len());
    for (s, e) in sorted {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    const S: u64 = 1_000_000_000;

    fn f(s: u64, e: u64) -> AppFlow {
        AppFlow {
            start_ns: s * S,
            end_ns: e * S,
        }
    }

    #[test]
    fn inferred_burst_then_upload_past_grace() {
        let cfg = TimelineConfig::default();
        // Foreground burst at 100 s (3 flows), upload from 105 s to 405 s.
        let flows = [f(100, 101), f(102, 103), f(104, 106), f(105, 405)];
        let t = build(&flows, &[], &cfg);
        assert_eq!(t.state_confidence, Some(Confidence::Inferred));
        assert_eq!(t.segments[0].state, State::Active);
        // The upload's start joins the burst: active until 105 s + hold.
        assert_eq!(t.segments[0].end_ns, 125 * S);
        assert_eq!(t.episodes.len(), 1);
        let ep = &t.episodes[0];
        assert_eq!(ep.start_ns, 155 * S); // active end + grace
        assert_eq!(ep.flows.len(), 1);
        assert_eq!(ep.flows[0].0, 3);
        assert!((ep.flows[0].1 - 250.0 / 300.0).abs() < 1e-9);
        assert_eq!(ep.after_active_ns, Some(125 * S));
    }

    #[test]
    fn traffic_within_grace_is_no_episode() {
        let cfg = TimelineConfig::default();
        let flows = [f(100, 101), f(102, 103), f(104, 110), f(130, 140)];
        assert!(build(&flows, &[], &cfg).episodes.is_empty());
    }

    #[test]
    fn reported_marks_override_inference_and_split_episodes() {
        let cfg = TimelineConfig::default();
        let marks = [
            Mark {
                ts_ns: 100 * S,
                kind: EventKind::AppForeground,
                confidence: Confidence::Reported,
            },
            Mark {
                ts_ns: 200 * S,
                kind: EventKind::AppBackground,
                confidence: Confidence::Reported,
            },
            Mark {
                ts_ns: 2000 * S,
                kind: EventKind::PushWake,
                confidence: Confidence::Reported,
            },
        ];
        // A burst at 300 s would be "active" by inference, but marks say background.
        let flows = [
            f(300, 301),
            f(301, 302),
            f(302, 303),
            f(1000, 1001),
            f(2001, 2002),
        ];
        let t = build(&flows, &marks, &cfg);
        assert_eq!(t.state_confidence, Some(Confidence::Reported));
        assert_eq!(t.episodes.len(), 2, "{:?}", t.episodes);
        assert_eq!(t.episodes[0].flows.len(), 3);
        assert_eq!(t.episodes[1].flows.len(), 1);
        // The flow right after the push wake is explained.
        assert!(t.episodes.iter().all(|e| e.flows.iter().all(|x| x.0 != 4)));
    }

    #[test]
    fn an_inferred_push_wake_explains_the_flow_after_it() {
        let cfg = TimelineConfig::default();
        let flows = [f(1000, 1003)];
        assert_eq!(build(&flows, &[], &cfg).episodes.len(), 1);
        let push = Mark {
            ts_ns: 999 * S,
            kind: EventKind::PushWake,
            confidence: Confidence::Inferred,
        };
        let t = build(&flows, &[push], &cfg);
        assert!(t.episodes.is_empty(), "{:?}", t.episodes);
        // A push long before explains nothing.
        let early = Mark {
            ts_ns: 900 * S,
            ..push
        };
        let t = build(&flows, &[early], &cfg);
        assert_eq!(t.episodes.len(), 1);
    }

    #[test]
    fn quiet_time_splits_episodes() {
        let cfg = TimelineConfig::default();
        let flows = [f(1000, 1001), f(1200, 1201), f(2000, 2001)];
        let t = build(&flows, &[], &cfg);
        assert_eq!(t.episodes.len(), 2);
        assert!(t.episodes[0].after_active_ns.is_none());
    }
}
