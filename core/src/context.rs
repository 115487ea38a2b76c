//! From what a server knows about a user to what the ranker needs.
//!
//! Two rules live here and nowhere else, so the origin's retrieval, the
//! origin's `/v1/rank`, the offline evaluation and the edge all agree:
//! - [`blend_query`]: the query vector, the long-term embedding blended with the
//!   real-time session (`(1−β)·base + β·session`, β decaying with the session's age);
//! - [`UserView::rank_context`]: a [`RankContext`] from a stored user.

use alloc::vec::Vec;

use crate::region::Region;
use crate::session::{SessionConfig, SessionState};

/// What the caller knows about the request.
#[derive(Debug, Clone, Default)]
pub struct RankContext {
    /// Current time, ms since the Unix epoch (the core never reads a clock).
    pub now_ms: u64,
    /// How many items to return.
    pub k: u32,
    /// The user's region (`None`: no region filter).
    pub region: Option<Region>,
    /// Items the user has already seen.
    pub seen: Vec<u64>,
    /// Creators the user blocked.
    pub blocked_creators: Vec<u32>,
    /// The long-term user embedding; empty for an anonymous user, or to use
    /// the one a personal bundle carries ([`crate::bundle::Bundle::user_embedding`]).
    pub base: Vec<f32>,
    /// The real-time session state (may be empty).
    pub session: SessionState,
    /// Session blending parameters.
    pub session_config: SessionConfig,
    /// Overrides the model's pre-rank keep count when non-zero.
    pub prerank_keep: u32,
    /// For the guest ABI: the host already verified the bundle's checksum
    /// ([`crate::bundle::verify_checksum`]), so the guest checks its structure only.
    pub checksum_verified: bool,
    /// The user's recent interactions, newest first, for a model with a
    /// history block (empty: none; a model without the block ignores it).
    pub history: crate::history::History,
}

impl RankContext {
    /// A context with no history, returning `k` items, with region filtering off.
    pub fn new(k: u32, now_ms: u64) -> Self {
        Self { k, now_ms, region: None, ..Self::default() }
    }
}

/// Why a query cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[allow(missing_docs)] // variant fields are described by each variant's error message
pub enum QueryError {
    /// A non-empty input whose length is not the embedding dimension.
    #[error("{what} has dimension {found}, expected {expected}")]
    Dimension {
        /// `"base user embedding"` or `"session state"`.
        what: &'static str,
        expected: usize,
        /// The input's dimension.
        found: usize,
    },
    /// NaN or infinity in an input or in the blend.
    #[error("non-finite value in the {0}")]
    NonFinite(&'static str),
}

/// Writes the query into `out` (resized to `dim`) and says whether there was
/// anything to build it from.
///
/// - no base and an empty session: `out` is zero and the answer is `false`;
/// - a base only: the base;
/// - a session: `(1−β)·base + β·session` with β = [`SessionState::share`], or
///   the session alone for an anonymous user.
///
/// An empty `base` means "anonymous". A non-empty one, or a non-empty session,
/// of the wrong dimension is an error, and so is a non-finite value.
pub fn blend_query(
    base: &[f32],
    session: &SessionState,
    cfg: &SessionConfig,
    now_ms: u64,
    dim: usize,
    out: &mut Vec<f32>,
) -> Result<bool, QueryError> {
    if !base.is_empty() && base.len() != dim {
        return Err(QueryError::Dimension { what: "base user embedding", expected: dim, found: base.len() });
    }
    if base.iter().any(|x| !x.is_finite()) {
        return Err(QueryError::NonFinite("base user embedding"));
    }
    out.clear();
    out.resize(dim, 0.0);
    if session.is_empty() {
        if !base.is_empty() {
            out.copy_from_slice(base);
        }
        return Ok(!base.is_empty());
    }
    if session.dim() != dim {
        return Err(QueryError::Dimension { what: "session state", expected: dim, found: session.dim() });
    }
    let (ema, mass) = session.parts();
    let inv_mass = if mass > 0.0 { 1.0 / mass } else { 0.0 };
    if base.is_empty() {
        for (o, &e) in out.iter_mut().zip(ema) {
            *o = e * inv_mass;
        }
    } else {
        let beta = session.share(cfg, now_ms);
        for ((o, &e), &x) in out.iter_mut().zip(ema).zip(base) {
            *o = (1.0 - beta) * x + beta * e * inv_mass;
        }
    }
    if out.iter().any(|x| !x.is_finite()) {
        return Err(QueryError::NonFinite("session query"));
    }
    Ok(true)
}

/// A stored user as the ranker sees it (the origin keeps more).
#[derive(Debug, Clone, Copy, Default)]
pub struct UserView<'a> {
    /// The long-term embedding (empty: none yet).
    pub base: &'a [f32],
    /// The `EWSS`-encoded session state (empty: none yet).
    pub session: &'a [u8],
    /// Items already shown or interacted with.
    pub seen: &'a [u64],
    /// Items the user hid.
    pub hidden: &'a [u64],
}

impl UserView<'_> {
    /// The decoded session, if it is present, valid and of dimension `dim`.
    pub fn session_state(&self, dim: usize) -> Option<SessionState> {
        SessionState::decode(self.session).ok().map(|(s, _)| s).filter(|s| s.dim() == dim)
    }

    /// The query for retrieval at `now_ms`: [`blend_query`] over the parts of
    /// this user that have dimension `dim` (a stale part, e.g. from before a
    /// retrain that changed the dimension, is left out rather than refused).
    pub fn query(&self, cfg: &SessionConfig, now_ms: u64, dim: usize) -> Option<Vec<f32>> {
        let base = if self.base.len() == dim { self.base } else { &[] };
        let session = self.session_state(dim).unwrap_or_default();
        let mut q = Vec::new();
        blend_query(base, &session, cfg, now_ms, dim, &mut q).ok().filter(|&any| any).map(|_| q)
    }

    /// The ranking context for this user: seen and hidden items filtered, the
    /// base embedding and session that have dimension `dim`.
    pub fn rank_context(
        &self,
        k: u32,
        now_ms: u64,
        region: Option<Region>,
        dim: usize,
        cfg: SessionConfig,
    ) -> RankContext {
        let mut ctx = RankContext::new(k, now_ms);
        ctx.region = region;
        ctx.seen = self.seen.iter().chain(self.hidden).copied().collect();
        ctx.seen.sort_unstable();
        ctx.seen.dedup();
        if self.base.len() == dim {
            ctx.base = self.base.to_vec();
        }
        ctx.session = self.session_state(dim).unwrap_or_default();
        ctx.session_config = cfg;
        ctx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Signal;

    fn session(dim: usize, x: f32, at: u64) -> SessionState {
        let mut s = SessionState::new(dim);
        s.observe(&SessionConfig::default(), Signal::Like, &alloc::vec![x; dim], at).expect("observe");
        s
    }

    #[test]
    fn anonymous_without_session_has_no_query() {
        let mut q = Vec::new();
        let any = blend_query(&[], &SessionState::new(3), &SessionConfig::default(), 0, 3, &mut q);
        assert_eq!(any, Ok(false));
        assert_eq!(q, [0.0; 3]);
        assert_eq!(UserView::default().query(&SessionConfig::default(), 0, 3), None);
    }

    #[test]
    fn blend_weights_base_and_session() {
        let cfg = SessionConfig::default();
        let s = session(2, 1.0, 1_000);
        let mut q = Vec::new();
        assert_eq!(blend_query(&[0.0, 0.0], &s, &cfg, 1_000, 2, &mut q), Ok(true));
        let beta = s.share(&cfg, 1_000);
        assert!(beta > 0.0 && beta <= 1.0);
        for x in &q {
            assert!((x - beta).abs() < 1e-6, "{x} vs β {beta}");
        }
        // The session alone for an anonymous user.
        assert_eq!(blend_query(&[], &s, &cfg, 1_000, 2, &mut q), Ok(true));
        assert!((q[0] - 1.0).abs() < 1e-6);
        // A base only.
        assert_eq!(blend_query(&[0.5, 0.25], &SessionState::new(2), &cfg, 0, 2, &mut q), Ok(true));
        assert_eq!(q, [0.5, 0.25]);
    }

    #[test]
    fn wrong_dimensions_and_non_finite_are_errors() {
        let cfg = SessionConfig::default();
        let mut q = Vec::new();
        assert!(matches!(
            blend_query(&[1.0], &SessionState::new(2), &cfg, 0, 2, &mut q),
            Err(QueryError::Dimension { what: "base user embedding", .. })
        ));
        assert!(matches!(
            blend_query(&[], &session(3, 1.0, 0), &cfg, 0, 2, &mut q),
            Err(QueryError::Dimension { what: "session state", .. })
        ));
        assert_eq!(
            blend_query(&[f32::NAN, 0.0], &SessionState::new(2), &cfg, 0, 2, &mut q),
            Err(QueryError::NonFinite("base user embedding"))
        );
    }

    #[test]
    fn user_view_context_drops_stale_parts_and_merges_hidden() {
        let enc = session(4, 1.0, 5).encode();
        let user = UserView { base: &[1.0, 2.0], session: &enc, seen: &[9, 3], hidden: &[3, 7] };
        let ctx = user.rank_context(10, 100, Region::new(2).ok(), 4, SessionConfig::default());
        assert_eq!(ctx.seen, [3, 7, 9]);
        assert!(ctx.base.is_empty(), "a base of another dimension is left out");
        assert_eq!(ctx.session.dim(), 4);
        assert_eq!(ctx.region.map(Region::get), Some(2));
        let ctx = user.rank_context(10, 100, None, 2, SessionConfig::default());
        assert_eq!(ctx.base, [1.0, 2.0]);
        assert!(ctx.session.is_empty(), "a session of another dimension is left out");
    }
}
