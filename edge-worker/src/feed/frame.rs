//! One bundle into one frame: fetch it (a shared bundle through the cache, a
//! user's own passed through with their token), learn what it is once per
//! stored response ([`BundleFacts`]), get the model it names ([`Models`]),
//! rank it with the tenant's guest on a blocking thread, and fall back to the
//! bundle's retrieval order when the guest or the model fails.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use bytes::Bytes;
use edgewise_core::bundle::BundleHeader;
use edgewise_core::rank::RankContext;
use edgewise_core::{Bundle, Digest};
use edgewise_wire::{Frame, FrameItem, FrameKind, ModelManifest, RankedBy, Timings, paths};

use super::Feed;
use crate::cache::{Cache, CacheError, Served, Status};
use crate::guest::GuestError;

/// What the feed needs to know about a bundle body, computed once per stored
/// response ([`crate::cache::Stored::derived`]) rather than once per request.
#[derive(Debug, Clone, Copy)]
pub struct BundleFacts {
    /// The sha256 of the body (the frame names the bundle by it).
    pub digest: Digest,
    /// The header of a body that passed the full bundle check (structure
    /// and checksum); `None` for one that did not.
    pub header: Option<BundleHeader>,
}

impl BundleFacts {
    /// Checks `body` and reads its header.
    pub fn of(body: &[u8]) -> Self {
        BundleFacts { digest: Digest::of(body), header: Bundle::decode(body).ok().map(|b| *b.header()) }
    }

    /// Whether the body passed the full check, so that the guest checks its structure only.
    pub fn verified(&self) -> bool {
        self.header.is_some()
    }

    /// The model its header names (`None`: any model, or not a valid bundle).
    pub fn model(&self) -> Option<Digest> {
        self.header.and_then(|h| h.model_digest)
    }
}

/// Why no model could be had for a bundle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The origin's current-model manifest could not be fetched.
    #[error("model manifest: {0}")]
    Manifest(CacheError),
    /// The manifest is not a [`ModelManifest`].
    #[error("the model manifest is not valid: {0}")]
    ManifestJson(#[from] serde_json::Error),
    /// The model could not be fetched.
    #[error("model {digest}: {source}")]
    Fetch {
        /// The model that was asked for.
        digest: Digest,
        /// Why the cache could not serve it.
        source: CacheError,
    },
    /// The bytes that came are not the model asked for.
    #[error("model {expected} failed verification: its sha256 is {actual}")]
    Mismatch {
        /// The model asked for.
        expected: Digest,
        /// The sha256 of what came.
        actual: Digest,
    },
}

/// Models verified against their digest, kept for every later ranking.
#[derive(Debug, Default)]
pub struct Models {
    verified: RwLock<HashMap<Digest, Arc<Vec<u8>>>>,
}

impl Models {
    /// Model `digest` (the origin's current one when `None`), fetched through
    /// `cache` and verified against its sha256 the first time.
    pub async fn get(&self, cache: &Cache, digest: Option<Digest>) -> Result<(Digest, Arc<Vec<u8>>), ModelError> {
        let digest = match digest {
            Some(d) => d,
            None => {
                let m = cache.get(paths::MODEL_CURRENT).await.map_err(ModelError::Manifest)?;
                serde_json::from_slice::<ModelManifest>(&m.response.body)?.digest
            }
        };
        if let Some(m) = self.verified.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(&digest) {
            return Ok((digest, m.clone()));
        }
        let served = cache.get(&paths::model(&digest)).await.map_err(|source| ModelError::Fetch { digest, source })?;
        let actual = Digest::of(&served.response.body);
        if actual != digest {
            return Err(ModelError::Mismatch { expected: digest, actual });
        }
        let bytes = Arc::new(served.response.body.to_vec());
        self.verified.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(digest, bytes.clone());
        Ok((digest, bytes))
    }
}

/// The bundle's rows in retrieval order (the fallback ranking,
/// [`edgewise_wire::feed::retrieval_order`]); nothing for bytes that are not a bundle.
pub fn retrieval_order(bundle: &[u8], ctx: &RankContext) -> Vec<FrameItem> {
    Bundle::decode(bundle).map(|b| edgewise_wire::feed::retrieval_order(&b, ctx)).unwrap_or_default()
}

/// A bundle as the feed got it, ready to rank.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The bundle's bytes.
    pub bundle: Bytes,
    /// What they are (the digest the frame names them by, the header once checked).
    pub facts: BundleFacts,
    /// How the cache served them.
    pub status: Status,
    /// Milliseconds the fetch took.
    pub fetch_ms: f64,
    /// Whether the guest keeps it loaded for the next ranking of the same
    /// bytes (shared bundles); a bundle ranked once (a merge) is sent instead.
    pub keep_loaded: bool,
}

impl Feed {
    /// Fetches the bundle at `path`: with `token` a user's own (fetched with
    /// their token, never cached), without a shared one through the cache.
    pub(super) async fn fetch(&self, path: &str, token: Option<&str>) -> Result<Fetched, CacheError> {
        let t0 = Instant::now();
        let served: Served = match token {
            Some(t) => self.cache.pass_through(path, t).await?,
            None => self.cache.get(path).await?,
        };
        let facts = *served.response.derived(|body| BundleFacts::of(body));
        Ok(Fetched {
            bundle: served.response.body.clone(),
            facts,
            status: served.status,
            fetch_ms: t0.elapsed().as_secs_f64() * 1e3,
            keep_loaded: true,
        })
    }

    /// Ranks a fetched bundle into a `kind` frame.
    pub(super) async fn rank_frame(&self, kind: FrameKind, f: &Fetched, ctx: &RankContext, tenant: &str) -> Frame {
        let t1 = Instant::now();
        let (items, ranked_by, model) = self.rank(f, ctx, tenant).await;
        Frame {
            frame: kind,
            items,
            ranked_by,
            bundle_digest: f.facts.digest,
            bundle_cache: f.status,
            model,
            timings_ms: Timings { fetch: f.fetch_ms, rank: t1.elapsed().as_secs_f64() * 1e3 },
            merged: None,
            kept_bundle: None,
        }
    }

    /// Ranks a fetched bundle with the tenant's guest and the model it names;
    /// the retrieval order when either is missing or the guest fails (each
    /// failure counted by kind, and against the tenant's health).
    async fn rank(&self, f: &Fetched, ctx: &RankContext, tenant: &str) -> (Vec<FrameItem>, RankedBy, Option<Digest>) {
        let (bundle, facts, keep_loaded) = (&f.bundle, f.facts, f.keep_loaded);
        let fallback = || retrieval_order(bundle, ctx);
        let (digest, model) = match self.models.get(&self.cache, facts.model()).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "no usable model; falling back to retrieval order");
                self.tenants.count_failure("model");
                return (fallback(), RankedBy::RetrievalOrder, None);
            }
        };
        let Some(guest) = self.tenants.guest_for(tenant) else {
            self.tenants.count_failure("no-module");
            return (fallback(), RankedBy::RetrievalOrder, Some(digest));
        };
        let pool = guest.clone();
        let ctx2 = RankContext { checksum_verified: facts.verified(), ..ctx.clone() };
        let b2 = bundle.clone();
        let m = self.tenants.metrics().clone();
        let permit = self.tenants.slot().await;
        let r = tokio::task::spawn_blocking(move || -> Result<Vec<FrameItem>, GuestError> {
            let _permit = permit;
            let t = Instant::now();
            // One output buffer per ranking thread, reused: the result is
            // decoded into it without allocating once it has grown.
            thread_local! {
                static OUT: std::cell::RefCell<edgewise_core::rank::RankOutput> = Default::default();
            }
            OUT.with_borrow_mut(|out| {
                let r = if keep_loaded {
                    pool.rank_kept_into(digest, &model, &b2, facts.digest, &ctx2, out)
                } else {
                    pool.rank_into(digest, &model, &b2, &ctx2, out)
                };
                m.rank_seconds.observe(t.elapsed().as_secs_f64());
                let r = r?;
                match r.instantiated {
                    Some(d) => {
                        m.instantiate_seconds.observe(d.as_secs_f64());
                        m.instances.with_label_values(&["new"]).inc();
                    }
                    None => m.instances.with_label_values(&["reused"]).inc(),
                }
                if r.model_loaded {
                    m.model_loads.inc();
                }
                Ok(out.items.iter().map(|i| FrameItem { id: i.id, score: i.score }).collect())
            })
        })
        .await;
        match r {
            Ok(Ok(items)) => {
                guest.record(true);
                (items, RankedBy::Guest, Some(digest))
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, kind = e.kind(), "guest ranking failed; falling back to retrieval order");
                self.tenants.count_failure(e.kind());
                guest.record(false);
                (fallback(), RankedBy::RetrievalOrder, Some(digest))
            }
            Err(e) => {
                tracing::error!(error = %e, "ranking task failed; falling back to retrieval order");
                self.tenants.count_failure("panic");
                guest.record(false);
                (fallback(), RankedBy::RetrievalOrder, Some(digest))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgewise_core::{BundleBuilder, BundleHeader, Candidate, Region};

    fn bundle(model: Option<Digest>) -> Vec<u8> {
        let mut h = BundleHeader::new(2, 0, 1);
        h.model_digest = model;
        let mut b = BundleBuilder::new(h).expect("header");
        for (id, mask, score) in [(1u64, 0b01u32, 0.9f32), (2, 0b10, 0.8), (3, 0b11, 0.7), (4, 0b01, 0.6)] {
            b.push(&Candidate {
                id,
                embedding: &[0.5, -0.5],
                features: &[],
                source_ranks: &[0],
                creator: 0,
                category: 0,
                region_mask: mask,
                retrieval_score: score,
            })
            .expect("row");
        }
        b.finish()
    }

    #[test]
    fn facts_name_the_digest_and_the_model() {
        let model = Digest::of(b"model");
        let bytes = bundle(Some(model));
        let f = BundleFacts::of(&bytes);
        assert_eq!((f.digest, f.verified(), f.model()), (Digest::of(&bytes), true, Some(model)));
        let any = BundleFacts::of(&bundle(None));
        assert_eq!((any.verified(), any.model()), (true, None), "a bundle for any model");
        let junk = BundleFacts::of(b"not a bundle");
        assert_eq!((junk.verified(), junk.model()), (false, None));
    }

    #[test]
    fn the_fallback_keeps_the_region_rule_and_drops_seen_items() {
        let bytes = bundle(None);
        let mut ctx = RankContext::new(10, 0);
        let ids = |ctx: &RankContext| retrieval_order(&bytes, ctx).iter().map(|i| i.id).collect::<Vec<_>>();
        assert_eq!(ids(&ctx), [1, 2, 3, 4], "no region: every item, best retrieval score first");
        ctx.region = Region::new(1).ok();
        assert_eq!(ids(&ctx), [2, 3], "region 1: bit 1 of the mask");
        ctx.region = Region::new(0).ok();
        ctx.seen = vec![1];
        ctx.k = 1;
        assert_eq!(ids(&ctx), [3], "seen items are removed, then k kept");
        assert!(retrieval_order(b"junk", &ctx).is_empty());
    }
}
