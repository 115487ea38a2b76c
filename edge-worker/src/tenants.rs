//! Tenants: whose guest module ranks a request, and the instances it runs on.
//!
//! Each tenant (the `tenant=` of a feed request, [`DEFAULT_TENANT`] when it
//! names none) has one guest module and its [`InstancePool`]. A module is
//! swapped in whole ([`Tenants::swap`]): requests already ranking keep the
//! module they started with (they hold its pool's `Arc`), later ones get the
//! new one. [`Tenants::install_from_origin`] is the admin route's swap: fetch
//! the module by digest, verify it ([`crate::modules`]), compile it for the
//! sandbox, prove it with a canary ranking, then swap.
//!
//! Rankings of every tenant share the [`Tenants::slot`] permits, so no more
//! run at once than [`GuestOptions::concurrency`] allows, and the guest
//! metrics ([`GuestMetrics`]). Built with [`Tenants::builder`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use edgewise_core::Digest;

use crate::cache::Cache;
use crate::compiled::CompiledCache;
use crate::config::GuestConfig;
use crate::guest::{GuestError, GuestModule, Limits};
use crate::metrics::GuestMetrics;
use crate::modules::ModuleError;
use crate::pool::{InstanceMode, InstancePool};

/// The tenant a feed request uses when it names none.
pub const DEFAULT_TENANT: &str = "default";

/// How rankings get guest instances, and how many run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestOptions {
    /// Fresh or pooled instances.
    pub mode: InstanceMode,
    /// Idle instances kept per tenant (pooled mode).
    pub max_idle: usize,
    /// Rankings that run at once; later ones wait their turn. `0`: one per core.
    pub concurrency: usize,
}

impl Default for GuestOptions {
    /// The options of the default `[guest]` configuration.
    fn default() -> Self {
        Self::from(&GuestConfig::default())
    }
}

impl From<&GuestConfig> for GuestOptions {
    fn from(g: &GuestConfig) -> Self {
        Self { mode: g.instances, max_idle: g.max_idle, concurrency: g.concurrency }
    }
}

impl GuestOptions {
    /// `concurrency` with `0` resolved to the number of cores.
    pub fn concurrency(&self) -> usize {
        if self.concurrency > 0 {
            self.concurrency
        } else {
            std::thread::available_parallelism().map_or(1, usize::from)
        }
    }
}

/// One tenant's module.
#[derive(Debug, Clone)]
struct Tenant {
    pool: Arc<InstancePool>,
    /// Where the module came from: a file path or `origin:<digest>`.
    source: String,
}

/// One tenant's state as `/readyz` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantHealth {
    /// The tenant's name.
    pub tenant: String,
    /// Where its module came from: a file path or `origin:<digest>`.
    pub source: String,
    /// Fewer than [`crate::pool::UNHEALTHY_AFTER`] of its rankings in a row failed.
    pub can_rank: bool,
}

/// Why a module could not be swapped in from the origin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SwapError {
    /// The edge was built without a sandbox engine ([`TenantsBuilder::sandbox`]).
    #[error("this edge was started without a sandbox engine; modules cannot be swapped")]
    NoSandbox,
    /// Fetching or verifying the module failed.
    #[error(transparent)]
    Module(#[from] ModuleError),
    /// The module compiled badly or failed its canary ranking.
    #[error("module {digest} cannot rank: {source}")]
    CannotRank {
        /// The module's digest.
        digest: Digest,
        /// What the guest did.
        source: GuestError,
    },
    /// The blocking compile-and-canary task died.
    #[error("the module check task failed: {0}")]
    Task(String),
}

/// The guest modules by tenant, and what every ranking shares.
pub struct Tenants {
    tenants: RwLock<HashMap<String, Tenant>>,
    /// The engine and limits new modules are compiled for (swaps).
    sandbox: Option<(wasmtime::Engine, Limits)>,
    compiled_cache: Option<CompiledCache>,
    public_key: Option<ed25519_dalek::VerifyingKey>,
    metrics: GuestMetrics,
    options: GuestOptions,
    /// Permits for rankings running at once.
    slots: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Tenants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenants").field("options", &self.options).finish_non_exhaustive()
    }
}

/// Builds [`Tenants`]: every part is optional.
#[derive(Debug, Default)]
#[must_use]
pub struct TenantsBuilder {
    default_module: Option<(GuestModule, String)>,
    options: GuestOptions,
    sandbox: Option<(wasmtime::Engine, Limits)>,
    compiled_cache: Option<CompiledCache>,
    public_key: Option<ed25519_dalek::VerifyingKey>,
}

impl TenantsBuilder {
    /// The [`DEFAULT_TENANT`]'s module, and where it came from (a path, `origin:<digest>`).
    pub fn default_module(mut self, module: GuestModule, source: impl Into<String>) -> Self {
        self.default_module = Some((module, source.into()));
        self
    }

    /// How rankings get instances [default: [`GuestOptions::default`]].
    pub fn options(mut self, options: GuestOptions) -> Self {
        self.options = options;
        self
    }

    /// The engine and limits swapped-in modules are compiled for; without
    /// one, [`Tenants::install_from_origin`] refuses ([`SwapError::NoSandbox`]).
    pub fn sandbox(mut self, engine: wasmtime::Engine, limits: Limits) -> Self {
        self.sandbox = Some((engine, limits));
        self
    }

    /// Where swapped-in modules' compiled code is cached on disk.
    pub fn compiled_cache(mut self, cache: Option<CompiledCache>) -> Self {
        self.compiled_cache = cache;
        self
    }

    /// The key swapped-in modules must be signed by.
    pub fn public_key(mut self, key: Option<ed25519_dalek::VerifyingKey>) -> Self {
        self.public_key = key;
        self
    }

    /// The tenants, with their (unregistered) guest metrics.
    pub fn build(self) -> Result<Tenants, prometheus::Error> {
        let t = Tenants {
            tenants: RwLock::default(),
            sandbox: self.sandbox,
            compiled_cache: self.compiled_cache,
            public_key: self.public_key,
            metrics: GuestMetrics::new()?,
            slots: Arc::new(tokio::sync::Semaphore::new(self.options.concurrency())),
            options: self.options,
        };
        if let Some((module, source)) = self.default_module {
            t.swap(DEFAULT_TENANT, module, source);
        }
        Ok(t)
    }
}

impl Tenants {
    /// A builder: no tenant, default options, no sandbox for swaps.
    pub fn builder() -> TenantsBuilder {
        TenantsBuilder::default()
    }

    /// The default tenant's module and instances.
    pub fn guest(&self) -> Option<Arc<InstancePool>> {
        self.guest_for(DEFAULT_TENANT)
    }

    /// A tenant's module and instances.
    pub fn guest_for(&self, tenant: &str) -> Option<Arc<InstancePool>> {
        self.read().get(tenant).map(|t| t.pool.clone())
    }

    /// The guest options.
    pub fn options(&self) -> GuestOptions {
        self.options
    }

    /// Guest failures and timings (registered by the server's `/metrics`).
    pub fn metrics(&self) -> &GuestMetrics {
        &self.metrics
    }

    /// Every tenant, where its module came from, and whether it can rank; by name.
    pub fn tenant_health(&self) -> Vec<TenantHealth> {
        let mut v: Vec<TenantHealth> = self
            .read()
            .iter()
            .map(|(k, v)| TenantHealth { tenant: k.clone(), source: v.source.clone(), can_rank: v.pool.healthy() })
            .collect();
        v.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        v
    }

    /// Every tenant and where its module came from, by name.
    pub fn tenants(&self) -> Vec<(String, String)> {
        self.tenant_health().into_iter().map(|t| (t.tenant, t.source)).collect()
    }

    /// Replaces (or adds) a tenant's module. Requests already ranking keep
    /// the module they started with (they hold its `Arc`); later ones get the
    /// new one. The old module's idle instances go with it.
    pub fn swap(&self, tenant: &str, module: GuestModule, source: String) {
        let pool = InstancePool::new(module, self.options.mode, self.options.max_idle);
        let t = Tenant { pool: Arc::new(pool), source };
        self.tenants.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(tenant.to_string(), t);
    }

    /// Replaces a tenant's module with module `digest` from the origin,
    /// verified (sha256; ed25519 when a public key is configured), compiled
    /// for the sandbox, and proven by a canary ranking. A module that fails
    /// any step is refused and the old one keeps serving.
    pub async fn install_from_origin(&self, cache: &Cache, tenant: &str, digest: Digest) -> Result<(), SwapError> {
        let Some((engine, limits)) = self.sandbox.clone() else { return Err(SwapError::NoSandbox) };
        let bytes = crate::modules::fetch_verified(cache, digest, self.public_key.as_ref()).await?;
        let compiled = self.compiled_cache.clone();
        let module = tokio::task::spawn_blocking(move || {
            let (module, _) = GuestModule::sandboxed_cached(&engine, &bytes, limits, compiled.as_ref())?;
            module.canary()?;
            Ok::<_, GuestError>(module)
        })
        .await
        .map_err(|e| SwapError::Task(e.to_string()))?
        .map_err(|source| SwapError::CannotRank { digest, source })?;
        self.swap(tenant, module, format!("origin:{digest}"));
        Ok(())
    }

    /// Waits for a ranking slot; the ranking runs while the permit is held.
    pub async fn slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        // The semaphore is never closed, so this only waits.
        self.slots.clone().acquire_owned().await.ok()
    }

    /// Counts a failed ranking of `kind` (a [`GuestError::kind`], or `model`,
    /// `no-module`, `panic`).
    pub fn count_failure(&self, kind: &'static str) {
        self.metrics.failures.with_label_values(&[kind]).inc();
    }

    /// Failures of `kind` so far.
    pub fn failures(&self, kind: &str) -> u64 {
        self.metrics.failures.with_label_values(&[kind]).get()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Tenant>> {
        self.tenants.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
