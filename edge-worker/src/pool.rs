//! Guest instances for rankings: a fresh one per request, or reused ones that
//! keep their model loaded.
//!
//! A ranking needs an instance of the tenant's module with the bundle's model
//! loaded. There are two ways to get one ([`InstanceMode`]):
//!
//! * **fresh**: instantiate from the module's `InstancePre` (a pooling-allocator
//!   slot, a few microseconds), load the model, rank, drop the instance. Every
//!   request starts from clean guest memory.
//! * **pooled** (the default): idle instances are kept, each with the model it
//!   last loaded. A request takes one whose model matches, ranks, and gives it
//!   back. Loading the model (decoding and checking the artifact inside the
//!   guest) costs far more than instantiating, so this removes most of the
//!   guest time of a cache-hit ranking; the feed benchmark (`cargo bench -p
//!   edgewise-conformance --bench feed`) measures both side by side and
//!   BENCHMARKS.md records the figures.
//!
//! A reused instance only ever serves the tenant whose module it runs: each
//! tenant has its own [`InstancePool`], dropped when the tenant's module is
//! swapped (requests in flight keep the old one through their `Arc`). An
//! instance whose call trapped or ran out of time or fuel is poisoned and is
//! never given back; one whose model failed to load is dropped too.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use edgewise_core::Digest;
use edgewise_core::abi::ModelMatch;
use edgewise_core::rank::{RankContext, RankOutput};

use crate::guest::{GuestError, GuestInstance, GuestModule};

pub use crate::config::InstanceMode;

/// What one ranking cost, besides the ranking itself.
#[derive(Debug, Clone)]
pub struct Ranked {
    /// The guest's ranking: the items, and what happened to every row.
    pub output: RankOutput,
    /// Whether the bundle named the loaded model.
    pub model_match: ModelMatch,
    /// Time spent instantiating, if this ranking needed a new instance.
    pub instantiated: Option<Duration>,
    /// Whether the model had to be loaded into the instance.
    pub model_loaded: bool,
}

/// One tenant's module and its idle instances.
pub struct InstancePool {
    module: GuestModule,
    mode: InstanceMode,
    /// Idle instances and the digest of the model each has loaded; the most
    /// recently returned last.
    idle: Mutex<Vec<(Digest, GuestInstance)>>,
    max_idle: usize,
    /// Rankings in a row that failed (reset by a success); `/readyz` reports
    /// a tenant past [`UNHEALTHY_AFTER`] as unable to rank.
    failures_in_a_row: std::sync::atomic::AtomicU32,
}

/// Failed rankings in a row after which a tenant counts as unable to rank.
pub const UNHEALTHY_AFTER: u32 = 3;

impl std::fmt::Debug for InstancePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstancePool").field("mode", &self.mode).field("max_idle", &self.max_idle).finish()
    }
}

impl InstancePool {
    /// A pool for `module`. In [`InstanceMode::Pooled`] at most `max_idle`
    /// instances are kept between rankings (each holds a pooling-allocator slot).
    pub fn new(module: GuestModule, mode: InstanceMode, max_idle: usize) -> Self {
        Self { module, mode, idle: Mutex::new(Vec::new()), max_idle, failures_in_a_row: Default::default() }
    }

    /// Records the outcome of a ranking for [`InstancePool::healthy`].
    pub fn record(&self, ok: bool) {
        use std::sync::atomic::Ordering;
        if ok {
            self.failures_in_a_row.store(0, Ordering::Relaxed);
        } else {
            self.failures_in_a_row.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether fewer than [`UNHEALTHY_AFTER`] rankings in a row have failed.
    pub fn healthy(&self) -> bool {
        self.failures_in_a_row.load(std::sync::atomic::Ordering::Relaxed) < UNHEALTHY_AFTER
    }

    /// The module its instances are made from.
    pub fn module(&self) -> &GuestModule {
        &self.module
    }

    /// How instances are obtained.
    pub fn mode(&self) -> InstanceMode {
        self.mode
    }

    /// Idle instances right now.
    pub fn idle(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Digest, GuestInstance)>> {
        self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An instance with the model `digest` loaded: an idle one that has it
    /// (one that also keeps `bundle` loaded first), else an idle one that
    /// loads it, else a new one.
    fn checkout(&self, digest: Digest, bundle: Option<Digest>) -> (Option<GuestInstance>, bool) {
        if self.mode == InstanceMode::Fresh {
            return (None, false);
        }
        let mut idle = self.lock();
        let keeps = |i: &GuestInstance| bundle.is_some() && i.kept() == bundle;
        if let Some(pos) = idle.iter().rposition(|(d, i)| *d == digest && keeps(i)) {
            return (Some(idle.swap_remove(pos).1), true);
        }
        if let Some(pos) = idle.iter().rposition(|(d, _)| *d == digest) {
            return (Some(idle.swap_remove(pos).1), true);
        }
        if idle.is_empty() { (None, false) } else { (Some(idle.remove(0).1), false) }
    }

    fn checkin(&self, digest: Digest, inst: GuestInstance) {
        if self.mode == InstanceMode::Fresh || inst.is_poisoned() || self.max_idle == 0 {
            return;
        }
        let mut idle = self.lock();
        if idle.len() >= self.max_idle {
            idle.remove(0);
        }
        idle.push((digest, inst));
    }

    /// Ranks `bundle` for `ctx` with `model`, whose sha256 is `digest`.
    pub fn rank(&self, digest: Digest, model: &[u8], bundle: &[u8], ctx: &RankContext) -> Result<Ranked, GuestError> {
        let mut output = RankOutput::default();
        let cost = self.rank_inner(digest, model, bundle, None, ctx, &mut output)?;
        Ok(cost.with(output))
    }

    /// [`InstancePool::rank`] for a bundle whose sha256 is `bundle_digest`,
    /// left loaded in the instance ([`GuestInstance::rank_kept`]): ranking the
    /// same bundle again (an edge ranks its region's bundle for every user)
    /// neither copies it into the guest nor validates it again, when a pooled
    /// instance that keeps it is idle. Bit for bit the same result.
    pub fn rank_kept(
        &self,
        digest: Digest,
        model: &[u8],
        bundle: &[u8],
        bundle_digest: Digest,
        ctx: &RankContext,
    ) -> Result<Ranked, GuestError> {
        let mut output = RankOutput::default();
        let cost = self.rank_inner(digest, model, bundle, Some(bundle_digest), ctx, &mut output)?;
        Ok(cost.with(output))
    }

    /// [`InstancePool::rank_kept`] into `out`, reusing its buffers (the
    /// edge's feed keeps one per ranking thread): no allocation per ranking
    /// on the host once `out` has grown.
    pub fn rank_kept_into(
        &self,
        digest: Digest,
        model: &[u8],
        bundle: &[u8],
        bundle_digest: Digest,
        ctx: &RankContext,
        out: &mut RankOutput,
    ) -> Result<RankCost, GuestError> {
        self.rank_inner(digest, model, bundle, Some(bundle_digest), ctx, out)
    }

    /// [`InstancePool::rank`] into `out`, leaving no bundle loaded: for a
    /// bundle ranked once (a user's kept bundle merged with the regional
    /// one), which must not push a shared bundle out of an idle instance.
    pub fn rank_into(
        &self,
        digest: Digest,
        model: &[u8],
        bundle: &[u8],
        ctx: &RankContext,
        out: &mut RankOutput,
    ) -> Result<RankCost, GuestError> {
        self.rank_inner(digest, model, bundle, None, ctx, out)
    }

    fn rank_inner(
        &self,
        digest: Digest,
        model: &[u8],
        bundle: &[u8],
        bundle_digest: Option<Digest>,
        ctx: &RankContext,
        out: &mut RankOutput,
    ) -> Result<RankCost, GuestError> {
        let (inst, has_model) = self.checkout(digest, bundle_digest);
        let mut instantiated = None;
        let mut inst = match inst {
            Some(i) => i,
            None => {
                let t = Instant::now();
                let i = self.module.instantiate()?;
                instantiated = Some(t.elapsed());
                i
            }
        };
        if !has_model {
            // A failed load leaves the instance without a usable model: it is dropped.
            inst.load_model(model)?;
        }
        let result = match bundle_digest {
            Some(b) => inst.rank_kept_into(bundle, b, ctx, out),
            None => inst.rank_into(bundle, ctx, out),
        };
        // A ranking the guest refused (a status error) leaves a healthy
        // instance; a trap or an interruption poisons it and `checkin` drops it.
        self.checkin(digest, inst);
        Ok(RankCost { model_match: result?, instantiated, model_loaded: !has_model })
    }
}

/// What one ranking cost, its output written to a caller's buffer
/// ([`InstancePool::rank_kept_into`]).
#[derive(Debug, Clone, Copy)]
pub struct RankCost {
    /// Whether the bundle named the loaded model.
    pub model_match: ModelMatch,
    /// Time spent instantiating, if this ranking needed a new instance.
    pub instantiated: Option<Duration>,
    /// Whether the model had to be loaded into the instance.
    pub model_loaded: bool,
}

impl RankCost {
    fn with(self, output: RankOutput) -> Ranked {
        Ranked {
            output,
            model_match: self.model_match,
            instantiated: self.instantiated,
            model_loaded: self.model_loaded,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::{Limits, sandboxed_engine};
    use edgewise_core::synth;

    /// The core guest, sandboxed under `limits`; a missing module fails the test.
    fn module(limits: Limits) -> GuestModule {
        let path = crate::guest::default_module_path();
        let wasm = std::fs::read(&path).unwrap_or_else(|e| {
            panic!("the guest module is missing at {}: run `cargo xtask guest` ({e})", path.display())
        });
        let engine = sandboxed_engine(&limits).expect("engine");
        GuestModule::sandboxed(&engine, &wasm, limits).expect("module")
    }

    /// A ranking's `EWRS` bytes: compared as bytes, not with `==`, because
    /// unranked rows carry NaN scores.
    fn bytes(r: &Ranked) -> Vec<u8> {
        let mut v = Vec::new();
        edgewise_core::abi::encode_result(&r.output, r.model_match, &mut v);
        v
    }

    #[test]
    fn mode_parses() {
        assert_eq!("fresh".parse::<InstanceMode>(), Ok(InstanceMode::Fresh));
        assert_eq!("pooled".parse::<InstanceMode>(), Ok(InstanceMode::Pooled));
        assert!("warm".parse::<InstanceMode>().expect_err("not a mode").to_string().contains("warm"));
    }

    /// Pooled and fresh instances give the same bytes for a sequence of
    /// different requests and two models, and the pool reuses instances.
    #[test]
    fn pooled_equals_fresh() {
        let module = module(Limits::default());
        let pooled = InstancePool::new(module.clone(), InstanceMode::Pooled, 2);
        let fresh = InstancePool::new(module, InstanceMode::Fresh, 2);
        let now = 1_700_000_000_000;
        let models: Vec<(Digest, Vec<u8>)> = [3u64, 4]
            .iter()
            .map(|&seed| {
                let spec = synth::Spec::new(300, 32, seed);
                let m = synth::model(&spec, &[16], 100, seed).encode().expect("model");
                (edgewise_core::model::digest(&m), m)
            })
            .collect();
        let mut loads = 0;
        for i in 0..12u64 {
            let spec = synth::Spec::new(300, 32, 10 + i);
            let bundle = synth::bundle(&spec, now);
            let ctx = synth::context(&spec, 10, now, 100 + i);
            let (digest, model) = &models[(i / 3 % 2) as usize];
            let a = pooled.rank(*digest, model, &bundle, &ctx).expect("pooled");
            let b = fresh.rank(*digest, model, &bundle, &ctx).expect("fresh");
            assert!(bytes(&a) == bytes(&b), "request {i}: pooled and fresh results differ");
            assert!(b.model_loaded && b.instantiated.is_some());
            loads += usize::from(a.model_loaded);
        }
        // One instance serves the sequential requests; it reloads only when the model changes.
        assert_eq!(loads, 4, "model loads of the pooled instance");
        assert_eq!(pooled.idle(), 1);
        assert_eq!(fresh.idle(), 0);
    }

    /// A kept bundle ranks to the bytes of a bundle sent each time, for many
    /// contexts, across two bundles and a model change; the pooled instance
    /// keeps the last bundle it ranked, and a fresh one keeps nothing.
    #[test]
    fn kept_bundles_rank_like_bundles_sent_each_time() {
        let module = module(Limits::default());
        assert!(module.instantiate().expect("instance").keeps_bundles(), "the core guest has the optional exports");
        let pooled = InstancePool::new(module.clone(), InstanceMode::Pooled, 2);
        let fresh = InstancePool::new(module, InstanceMode::Fresh, 2);
        let now = 1_700_000_000_000;
        let spec = synth::Spec::new(300, 32, 5);
        let models: Vec<(Digest, Vec<u8>)> = [3u64, 4]
            .iter()
            .map(|&seed| {
                let m = synth::model(&spec, &[16], 100, seed).encode().expect("model");
                (edgewise_core::model::digest(&m), m)
            })
            .collect();
        let bundles: Vec<(Digest, Vec<u8>)> = [now, now + 1]
            .iter()
            .map(|&t| {
                let b = synth::bundle(&spec, t);
                (Digest::of(&b), b)
            })
            .collect();
        for i in 0..16u64 {
            let (bd, bundle) = &bundles[(i / 4 % 2) as usize];
            let (md, model) = &models[(i / 8) as usize];
            let ctx = RankContext { checksum_verified: i % 2 == 0, ..synth::context(&spec, 10, now, 200 + i) };
            let want = bytes(&fresh.rank(*md, model, bundle, &ctx).expect("sent"));
            let kept = pooled.rank_kept(*md, model, bundle, *bd, &ctx).expect("kept");
            assert!(bytes(&kept) == want, "request {i}: a kept bundle ranks differently");
            let again = fresh.rank_kept(*md, model, bundle, *bd, &ctx).expect("fresh, kept");
            assert!(bytes(&again) == want, "request {i}: a fresh instance ranks differently");
            let idle = pooled.lock();
            assert_eq!(idle.len(), 1);
            assert_eq!(idle[0].1.kept(), Some(*bd), "request {i}: the pooled instance keeps the bundle");
        }
        assert_eq!(fresh.idle(), 0);
    }

    /// A bundle above the keep limit is sent with the call (one copy in the
    /// guest), ranked the same, and not kept.
    #[test]
    fn big_bundles_are_sent_not_kept() {
        let limits =
            Limits { memory_bytes: 32 << 20, deadline: std::time::Duration::from_secs(5), ..Limits::default() };
        let module = module(limits);
        let pooled = InstancePool::new(module, InstanceMode::Pooled, 1);
        let now = 1_700_000_000_000;
        let spec = synth::Spec::new(30_000, 128, 8);
        let bundle = synth::bundle(&spec, now);
        assert!(bundle.len() > (32 << 20) / crate::guest::KEEP_SHARE, "{} bytes", bundle.len());
        let m = synth::model(&spec, &[8], 100, 8).encode().expect("model");
        let md = edgewise_core::model::digest(&m);
        let ctx = synth::context(&spec, 10, now, 3);
        let sent = pooled.rank(md, &m, &bundle, &ctx).expect("sent");
        let kept = pooled.rank_kept(md, &m, &bundle, Digest::of(&bundle), &ctx).expect("ranked");
        assert_eq!(
            kept.output.items.iter().map(|i| i.id).collect::<Vec<_>>(),
            sent.output.items.iter().map(|i| i.id).collect::<Vec<_>>()
        );
        assert_eq!(pooled.lock()[0].1.kept(), None, "too big to keep");
    }
}
