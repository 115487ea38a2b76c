//! Feedback events, per-user state, and time-decayed trending counters.
//!
//! # Event-time rules
//! Events may arrive late or out of order. An older event never overwrites
//! newer state:
//! * sets (seen, hidden) are unions, so order does not matter;
//! * ordered lists (recent items, engaged creators) are kept sorted by event
//!   time, so a late event lands at its place instead of at the top;
//! * vectors (the base embedding, the content profile, the session embedding)
//!   move only for events at least as new as the last one that moved them;
//!   a late event still counts for the sets, lists and trending.
//! * trending counters decay exponentially, so a late event is added with the
//!   weight it has at the counter's time: exact whatever the arrival order.

use serde::{Deserialize, Serialize};

use edgewise_core::session::{SessionConfig, SessionState, Signal};

use crate::item::Item;
use crate::trending::TrendBump;
use edgewise_core::context::UserView;

/// Cap on the recent-items list.
pub const RECENT_CAP: usize = 50;
/// Cap on the seen set (oldest entries are forgotten first).
pub const SEEN_CAP: usize = 5_000;
/// Cap on the engaged-creators list.
pub const CREATORS_CAP: usize = 20;
/// Step of the long-term embedding's exponential moving average, per positive event.
pub const BASE_ALPHA: f32 = 0.1;

/// Kinds of feedback. The discriminants are the interaction log's codes: never reorder them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum EventKind {
    /// Shown.
    Impression = 0,
    /// Opened.
    Click,
    /// Liked.
    Like,
    /// Scrolled past.
    Skip,
    /// "Not interested".
    Hide,
    /// Stayed on screen (`dwell_ms`).
    Dwell,
}

/// One feedback event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Idempotency key (1–128 bytes).
    pub event_id: String,
    /// User id.
    pub user: u64,
    /// Item id.
    pub item: u64,
    /// Kind.
    pub kind: EventKind,
    /// Event time, ms since the Unix epoch.
    pub time: u64,
    /// Region index (0–31) the event happened in.
    pub region: u8,
    /// Dwell time for `dwell` events.
    #[serde(default)]
    pub dwell_ms: Option<u32>,
}

/// What the store needs to know about an event.
pub trait EventRecord {
    /// Idempotency key.
    fn id(&self) -> &str;
    /// User id.
    fn user(&self) -> u64;
    /// Event time, ms since the Unix epoch.
    fn time_ms(&self) -> u64;
    /// Item id.
    fn item(&self) -> u64;
    /// Kind, as a stable one-byte code.
    fn kind_code(&self) -> u8;
}

impl EventRecord for Event {
    fn id(&self) -> &str {
        &self.event_id
    }
    fn user(&self) -> u64 {
        self.user
    }
    fn time_ms(&self) -> u64 {
        self.time
    }
    fn item(&self) -> u64 {
        self.item
    }
    fn kind_code(&self) -> u8 {
        self.kind.code()
    }
}

impl EventKind {
    /// Every kind, in code order.
    pub const ALL: [EventKind; 6] =
        [EventKind::Impression, EventKind::Click, EventKind::Like, EventKind::Skip, EventKind::Hide, EventKind::Dwell];

    /// The stable one-byte code stored in the interaction log.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The kind of a stored code.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code)).copied()
    }
}

impl Event {
    /// Parses and validates one JSON event, received at `now_ms`: its time
    /// may be at most `max_future_ms` ahead of the server's clock (a time from
    /// the far future would never decay in trending and would freeze the
    /// user's vectors, which only move for events at least as new).
    pub fn from_json(v: serde_json::Value, now_ms: u64, max_future_ms: u64) -> Result<Self, String> {
        if !v.is_object() {
            return Err("an event is a JSON object".into());
        }
        let e: Event = serde_json::from_value(v).map_err(|e| e.to_string())?;
        if e.time > now_ms.saturating_add(max_future_ms) {
            return Err(format!(
                "time {} is {} ms ahead of the server's clock; at most {max_future_ms} ms are accepted (ingest.max_future_ms)",
                e.time,
                e.time - now_ms
            ));
        }
        if e.event_id.is_empty() || e.event_id.len() > 128 {
            return Err(format!("event_id must be 1 to 128 bytes, got {}", e.event_id.len()));
        }
        edgewise_core::Region::new(e.region).map_err(|err| err.to_string())?;
        match (e.kind, e.dwell_ms) {
            (EventKind::Dwell, None) => return Err("a dwell event needs dwell_ms".into()),
            (k, Some(_)) if k != EventKind::Dwell => return Err("dwell_ms is only valid on dwell events".into()),
            _ => {}
        }
        Ok(e)
    }

    /// The core session signal of this event.
    pub fn signal(&self) -> Signal {
        match self.kind {
            EventKind::Impression => Signal::Impression,
            EventKind::Click => Signal::Click,
            EventKind::Like => Signal::Like,
            EventKind::Skip => Signal::Skip,
            EventKind::Hide => Signal::Hide,
            EventKind::Dwell => Signal::Dwell { ms: self.dwell_ms.unwrap_or(0) },
        }
    }
}

impl EventKind {
    /// Whether the kind is positive engagement (click, like, dwell): what a
    /// ranker's history holds.
    pub fn is_positive(self) -> bool {
        matches!(self, EventKind::Click | EventKind::Like | EventKind::Dwell)
    }

    /// [`EventKind::is_positive`] of a log code (an unknown code is not).
    pub fn is_positive_code(code: u8) -> bool {
        EventKind::from_code(code).is_some_and(EventKind::is_positive)
    }
}

/// What an import knows about a user beyond their events: a home region and
/// context features (MovieLens: age, gender, occupation), kept as strings under
/// their names. The ranker does not read them yet: the core model has no
/// user-context input (ARCHITECTURE.md).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserProfile {
    /// Home region, if known.
    pub region: Option<u8>,
    /// Context features by name.
    pub context: std::collections::BTreeMap<String, String>,
}

/// Everything the origin keeps about a user.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserState {
    /// Long-term embedding (empty until the first positive event or training).
    pub base: Vec<f32>,
    /// Event time of the last event that moved `base`.
    pub base_ms: u64,
    /// Content profile (empty unless the content index is on).
    pub content: Vec<f32>,
    /// Event time of the last event that moved `content`.
    pub content_ms: u64,
    /// The core session state, `EWSS`-encoded (empty: none yet).
    pub session: Vec<u8>,
    /// Positively engaged items, newest first: (item, event time).
    pub recent: Vec<(u64, u64)>,
    /// Items shown or interacted with, oldest first.
    pub seen: Vec<u64>,
    /// Items the user hid.
    pub hidden: Vec<u64>,
    /// Engaged creators, newest first: (creator, event time).
    pub creators: Vec<(u32, u64)>,
}

fn ema(v: &mut Vec<f32>, x: &[f32], alpha: f32) {
    if v.len() != x.len() {
        // First update, or the dimension changed (a retrained catalogue): restart from the item.
        v.clear();
        v.extend_from_slice(x);
        return;
    }
    for (a, b) in v.iter_mut().zip(x) {
        *a = (1.0 - alpha) * *a + alpha * b;
    }
}

impl UserState {
    /// Applies one event; `item` is the catalogue entry if it still exists.
    /// Returns the trending increment the event causes, if any.
    pub fn apply(&mut self, e: &Event, item: Option<&Item>, session_cfg: &SessionConfig) -> Option<TrendBump> {
        if !self.seen.contains(&e.item) {
            self.seen.push(e.item);
            if self.seen.len() > SEEN_CAP {
                self.seen.remove(0);
            }
        }
        if e.kind == EventKind::Hide && !self.hidden.contains(&e.item) {
            self.hidden.push(e.item);
        }
        let signal = e.signal();
        let weight = session_cfg.weight(signal);
        let item = item?;
        let dim = item.embedding.len();
        let mut s = match SessionState::decode(&self.session) {
            Ok((s, _)) if s.dim() == dim => s,
            _ => SessionState::new(dim),
        };
        // Vectors move only for events at least as new as the last one that moved them.
        if e.time >= s.last_ms() && s.observe(session_cfg, signal, &item.embedding, e.time).is_ok() {
            self.session = s.encode();
        }
        if weight <= 0.0 {
            return (e.kind == EventKind::Impression).then_some(TrendBump {
                region: e.region,
                item: e.item,
                weight: 0.05,
                at_ms: e.time,
            });
        }
        // Ordered lists: insert at the event's place in time.
        self.recent.retain(|&(i, _)| i != e.item);
        let at = self.recent.partition_point(|&(_, t)| t > e.time);
        self.recent.insert(at, (e.item, e.time));
        self.recent.truncate(RECENT_CAP);
        let prev = self.creators.iter().find(|(c, _)| *c == item.creator).map_or(0, |&(_, t)| t);
        self.creators.retain(|&(c, _)| c != item.creator);
        let t = prev.max(e.time);
        let at = self.creators.partition_point(|&(_, ct)| ct > t);
        self.creators.insert(at, (item.creator, t));
        self.creators.truncate(CREATORS_CAP);
        if e.time >= self.base_ms {
            ema(&mut self.base, &item.embedding, BASE_ALPHA);
            self.base_ms = e.time;
        }
        if let Some(c) = &item.content
            && e.time >= self.content_ms
        {
            ema(&mut self.content, c, BASE_ALPHA);
            self.content_ms = e.time;
        }
        Some(TrendBump { region: e.region, item: e.item, weight: f64::from(weight), at_ms: e.time })
    }

    /// The parts of this user the ranker reads.
    pub fn view(&self) -> UserView<'_> {
        UserView { base: &self.base, session: &self.session, seen: &self.seen, hidden: &self.hidden }
    }

    /// The query for collaborative retrieval: the base embedding blended with
    /// the session ([`edgewise_core::context::blend_query`]).
    pub fn query(&self, session_cfg: &SessionConfig, now_ms: u64, dim: usize) -> Option<Vec<f32>> {
        self.view().query(session_cfg, now_ms, dim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trending::{trending_merge, trending_value};
    use proptest::prelude::*;

    fn item(id: u64, creator: u32, e: Vec<f32>) -> Item {
        Item {
            id,
            embedding: e,
            content: None,
            creator,
            categories: vec![],
            region_mask: u32::MAX,
            created_at_ms: 0,
            features: vec![],
        }
    }

    fn ev(id: &str, item: u64, kind: EventKind, time: u64) -> Event {
        Event { event_id: id.into(), user: 1, item, kind, time, region: 2, dwell_ms: None }
    }

    #[test]
    fn late_events_never_overwrite_newer_state() {
        let cfg = SessionConfig::default();
        let (a, b) = (item(1, 10, vec![1.0, 0.0]), item(2, 20, vec![0.0, 1.0]));
        let mut s = UserState::default();
        s.apply(&ev("x", 2, EventKind::Click, 200), Some(&b), &cfg);
        let after_new = s.clone();
        s.apply(&ev("y", 1, EventKind::Click, 100), Some(&a), &cfg);
        assert_eq!(s.recent, vec![(2, 200), (1, 100)], "the late event lands below the newer one");
        assert_eq!(s.creators[0], (20, 200));
        assert_eq!(s.base, after_new.base, "a late event does not move the base embedding");
        assert_eq!(s.session, after_new.session, "nor the session embedding");
        assert!(s.seen.contains(&1), "but it still counts as seen");
    }

    #[test]
    fn kind_codes_round_trip() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::from_code(k.code()), Some(k));
        }
        assert_eq!(EventKind::from_code(6), None);
        assert_eq!(EventKind::Dwell.code(), 5, "stored codes never change");
    }

    #[test]
    fn the_interaction_log_keeps_applied_events_once_in_user_and_time_order() {
        let dir = std::env::temp_dir().join(format!("ew-log-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = crate::store::Store::open(&dir).expect("store");
        let cfg = SessionConfig::default();
        let mut evs = vec![ev("b", 2, EventKind::Like, 300), ev("a", 1, EventKind::Click, 100)];
        evs.push(Event { user: 0, ..ev("c", 3, EventKind::Skip, 200) });
        let apply = |events: &[Event]| {
            store
                .apply_events(events, |e, st| st.apply(e, None, &cfg), |c, b| trending_merge(c, b, 1000.0))
                .expect("applies")
        };
        apply(&evs);
        apply(&evs[..1]); // a duplicate id changes nothing
        let mut log = Vec::new();
        assert_eq!(store.for_each_interaction(|i| log.push(i)).expect("reads"), 3);
        let got: Vec<(u64, u64, u64, Option<EventKind>)> =
            log.iter().map(|i| (i.user, i.time_ms, i.item, EventKind::from_code(i.kind))).collect();
        assert_eq!(
            got,
            vec![
                (0, 200, 3, Some(EventKind::Skip)),
                (1, 100, 1, Some(EventKind::Click)),
                (1, 300, 2, Some(EventKind::Like))
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn event_validation() {
        let ok = serde_json::json!({"event_id": "e", "user": 1, "item": 2, "kind": "dwell", "time": 5, "region": 1, "dwell_ms": 9000});
        assert!(Event::from_json(ok, 10, 0).is_ok());
        for (v, want) in [
            (
                serde_json::json!({"event_id": "e", "user": 1, "item": 2, "kind": "dwell", "time": 5, "region": 1}),
                "needs dwell_ms",
            ),
            (
                serde_json::json!({"event_id": "e", "user": 1, "item": 2, "kind": "poke", "time": 5, "region": 1}),
                "unknown variant",
            ),
            (
                serde_json::json!({"event_id": "", "user": 1, "item": 2, "kind": "click", "time": 5, "region": 1}),
                "1 to 128",
            ),
            (
                serde_json::json!({"event_id": "e", "user": 1, "item": 2, "kind": "click", "time": 5, "region": 77}),
                "out of range",
            ),
            (
                serde_json::json!({"event_id": "e", "user": 1, "item": 2, "kind": "like", "time": 32_503_680_000_000u64, "region": 1}),
                "ahead of the server's clock",
            ),
            (
                serde_json::json!({"event_id": "e", "user": 1, "item": 2, "kind": "like", "time": u64::MAX, "region": 1}),
                "ahead of the server's clock",
            ),
            (
                serde_json::json!({"event_id": "e", "user": 1, "item": 2, "kind": "like", "time": 6_000, "region": 1}),
                "ahead of the server's clock",
            ),
            (serde_json::json!(["e", 1, 2, "like", 5, 1]), "JSON object"),
        ] {
            let err = Event::from_json(v, 1_000, 4_000).expect_err("invalid");
            assert!(err.contains(want), "{err}");
        }
    }

    proptest! {
        #[test]
        fn trending_is_independent_of_arrival_order(mut bumps in proptest::collection::vec((0u64..1_000_000, 0.1f64..5.0), 1..20), seed in any::<u64>()) {
            let half = 100_000.0;
            let total = |order: &[(u64, f64)]| {
                let mut c = None;
                for &(at, w) in order {
                    c = Some(trending_merge(c, &TrendBump { region: 0, item: 1, weight: w, at_ms: at }, half));
                }
                c.map(|c| trending_value(c, 2_000_000, half)).unwrap_or(0.0)
            };
            let a = total(&bumps);
            let mut rng = seed;
            for i in (1..bumps.len()).rev() {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                bumps.swap(i, (rng >> 33) as usize % (i + 1));
            }
            let b = total(&bumps);
            prop_assert!((a - b).abs() <= 1e-9 * a.max(1.0), "{a} vs {b}");
        }
    }
}
