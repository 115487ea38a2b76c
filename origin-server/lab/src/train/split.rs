//! The time-ordered leave-last-out split, and replaying a user's history.
//!
//! Each user's interactions are ordered by (time, item). The user's **last
//! positive** interaction (click, like or dwell) is the held-out test item;
//! the training split is everything before it. Interactions after it (only
//! skips or impressions, by construction) are dropped from both, so training
//! never sees the future of the test item. A user with fewer than two
//! positives keeps everything in training and has no test item.
//!
//! The ranker needs examples the embeddings were not fitted on, so
//! [`Split::holdout`] takes a further `n` positives off the end of each
//! training history (the same rule, applied again).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use edgewise_core::session::SessionConfig;

use edgewise_origin::item::Item;
use edgewise_origin::store::Interaction;
use edgewise_origin::trending::TrendBump;
use edgewise_origin::user::{Event, EventKind, UserState};

/// Whether an interaction kind is positive engagement.
pub fn is_positive(kind: u8) -> bool {
    EventKind::is_positive_code(kind)
}

/// A held-out interaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// User.
    pub user: u64,
    /// The held-out item.
    pub item: u64,
    /// Its time; the request is evaluated as of this moment.
    pub time_ms: u64,
}

/// Per-user histories split in time.
#[derive(Debug, Clone, Default)]
pub struct Split {
    /// Each user's training interactions, in (time, item) order.
    pub train: BTreeMap<u64, Vec<Interaction>>,
    /// Each user's held-out positive, in user order.
    pub test: Vec<Held>,
}

impl Split {
    /// Splits the interaction log (any order) with leave-last-positive-out.
    pub fn leave_last_out(log: impl IntoIterator<Item = Interaction>) -> Self {
        let mut by_user: BTreeMap<u64, Vec<Interaction>> = BTreeMap::new();
        for i in log {
            by_user.entry(i.user).or_default().push(i);
        }
        for h in by_user.values_mut() {
            h.sort_by_key(|i| (i.time_ms, i.item, i.kind));
        }
        Self::from_histories(by_user)
    }

    fn from_histories(by_user: BTreeMap<u64, Vec<Interaction>>) -> Self {
        let mut out = Split::default();
        for (user, mut h) in by_user {
            let positives = h.iter().filter(|i| is_positive(i.kind)).count();
            if positives >= 2
                && let Some(p) = h.iter().rposition(|i| is_positive(i.kind))
            {
                let held = h[p];
                h.truncate(p);
                out.test.push(Held { user, item: held.item, time_ms: held.time_ms });
            }
            out.train.insert(user, h);
        }
        out
    }

    /// Takes up to `n` more positives off the end of every training history:
    /// returns (the shortened histories, the positives taken, oldest first per user).
    pub fn holdout(&self, n: usize) -> (Split, Vec<Held>) {
        let mut train = self.train.clone();
        let mut held = Vec::new();
        for _ in 0..n {
            let next = Split::from_histories(std::mem::take(&mut train));
            held.extend(next.test);
            train = next.train;
        }
        held.sort_by_key(|h| (h.user, h.time_ms, h.item));
        (Split { train, test: Vec::new() }, held)
    }

    /// The user's training interactions before `held` (all of them when
    /// `held` is not among them): what serving knew just before it.
    pub fn before(&self, held: &Held) -> &[Interaction] {
        let history = self.train.get(&held.user).map_or(&[][..], Vec::as_slice);
        let at = history.iter().position(|i| i.time_ms == held.time_ms && i.item == held.item);
        &history[..at.unwrap_or(history.len())]
    }

    /// Every training interaction.
    pub fn train_interactions(&self) -> impl Iterator<Item = &Interaction> {
        self.train.values().flatten()
    }
}

/// Rebuilds a user's state from their history, as the event path would have
/// built it ([`UserState::apply`]), with the given item embeddings.
pub fn replay(history: &[Interaction], items: &HashMap<u64, Arc<Item>>, session: &SessionConfig) -> UserState {
    replay_with(history, items, session, 0, |_| {})
}

/// [`replay`], with the events placed in `region` and every trending bump they
/// cause handed to `bump`.
pub fn replay_with(
    history: &[Interaction],
    items: &HashMap<u64, Arc<Item>>,
    session: &SessionConfig,
    region: u8,
    mut bump: impl FnMut(TrendBump),
) -> UserState {
    let mut state = UserState::default();
    for i in history {
        let Some(kind) = EventKind::from_code(i.kind) else { continue };
        let e = Event {
            event_id: String::new(),
            user: i.user,
            item: i.item,
            kind,
            time: i.time_ms,
            region,
            dwell_ms: (kind == EventKind::Dwell).then_some(0),
        };
        if let Some(b) = state.apply(&e, items.get(&i.item).map(Arc::as_ref), session) {
            bump(b);
        }
    }
    state
}

/// The history after all of `interactions` (in time order): the origin's
/// rule ([`edgewise_origin::store::history_from_log`]) over them, newest first.
pub fn history_of(interactions: &[Interaction], items: &HashMap<u64, Arc<Item>>) -> edgewise_core::history::History {
    edgewise_origin::store::history_from_log(interactions.iter().rev(), |id| {
        items.get(&id).map(|i| i.embedding.as_slice())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ix(user: u64, time_ms: u64, item: u64, kind: EventKind) -> Interaction {
        Interaction { user, time_ms, item, kind: kind.code() }
    }

    #[test]
    fn the_last_positive_is_held_out_and_later_skips_are_dropped() {
        let log = vec![
            ix(1, 30, 3, EventKind::Skip),
            ix(1, 10, 1, EventKind::Like),
            ix(1, 20, 2, EventKind::Click),
            ix(1, 25, 5, EventKind::Skip),
            ix(2, 5, 9, EventKind::Like),
        ];
        let s = Split::leave_last_out(log);
        assert_eq!(s.test, vec![Held { user: 1, item: 2, time_ms: 20 }]);
        let items: Vec<u64> = s.train[&1].iter().map(|i| i.item).collect();
        assert_eq!(items, vec![1], "the skip after the test item is dropped");
        assert_eq!(s.train[&2].len(), 1, "one positive: no test item, all training");
    }

    #[test]
    fn holdout_takes_further_positives_from_the_end() {
        let log: Vec<Interaction> = (0..6).map(|t| ix(1, t, 100 + t, EventKind::Click)).collect();
        let s = Split::leave_last_out(log);
        assert_eq!(s.test[0].item, 105);
        let (rest, held) = s.holdout(2);
        assert_eq!(held.iter().map(|h| h.item).collect::<Vec<_>>(), vec![103, 104]);
        assert_eq!(rest.train[&1].len(), 3);
    }
}
