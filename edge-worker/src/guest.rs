//! Hosting the core guest module in wasmtime.
//!
//! [`GuestModule`] compiles `edgewise_core.wasm` once and checks it: zero
//! imports, every export of [`edgewise_core::abi::EXPORTS`], and a known ABI
//! version. [`GuestInstance`] is one instantiated guest with a loaded model;
//! [`GuestInstance::rank`] copies a bundle and a context into the guest, calls
//! `ew_rank`, and decodes the result. Guest buffers are reused between calls.
//!
//! # The sandbox
//! An edge node runs guests it did not write next to other tenants, so
//! [`sandboxed_engine`] builds an engine whose guests cannot take more than
//! their share ([`Limits`]):
//! * **time**: epoch interruption. A ticker thread advances the engine's epoch
//!   every [`EPOCH_TICK`], and every operation (loading a model, ranking a
//!   bundle) gets a deadline in ticks; past it the guest traps and the call
//!   returns [`GuestError::Deadline`];
//! * **memory**: each instance's linear memory is capped (`memory.grow`
//!   beyond the cap returns −1 to the guest, as the spec says);
//! * **fuel** (optional): a deterministic instruction budget, for tests;
//! * **instances** come from wasmtime's pooling allocator through an
//!   [`InstancePre`], so instantiation is a few microseconds.
//!
//! A guest that traps or runs out of time or fuel fails only that operation.
//! Its instance is then *poisoned* (its allocator may have been interrupted
//! half-way) and refuses further calls ([`GuestError::Poisoned`]): the host
//! drops it and instantiates a fresh one. [`default_engine`] has no limits;
//! the command-line tools and the conformance tests use it.

use std::path::Path;
use std::time::Duration;

use edgewise_core::abi::{self, ABI_VERSION, ModelMatch, Status};
use edgewise_core::rank::{RankContext, RankOutput};
use edgewise_core::{BundleBuilder, BundleHeader, Candidate, Digest, FormatError, Model};

use crate::compiled::{CompiledCache, CompiledError, CompiledFrom};
use crate::config::GuestConfig;
use wasmtime::{
    Engine, Instance, InstancePre, Linker, Memory, Module, Store, StoreLimits, StoreLimitsBuilder, TypedFunc,
};

/// Errors from loading or calling the guest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GuestError {
    /// The module file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// wasmtime refused to compile or instantiate the module, or a call trapped.
    #[error("wasmtime: {0}")]
    Wasmtime(String),
    /// The module imports something; the core guest must be self-contained.
    #[error("guest module has {count} import(s) (first: {first}); the core guest must have none")]
    HasImports {
        /// How many imports the module declares.
        count: usize,
        /// `module::name` of the first.
        first: String,
    },
    /// A required export is missing or has the wrong type.
    #[error("guest module does not export {name} with the expected type: {reason}")]
    MissingExport {
        /// The export the host needs.
        name: &'static str,
        /// What wasmtime said about it.
        reason: String,
    },
    /// The module speaks another ABI version.
    #[error("guest ABI version {found} is not supported (host speaks {expected})")]
    AbiVersion {
        /// The version `ew_abi_version` returned.
        found: u32,
        /// [`ABI_VERSION`], the one this host speaks.
        expected: u32,
    },
    /// The guest could not allocate.
    #[error("guest out of memory allocating {0} bytes")]
    OutOfMemory(usize),
    /// A call returned an error status.
    #[error("guest call failed with {status:?}: {message}")]
    Call {
        /// The status the guest returned.
        status: Status,
        /// The guest's message.
        message: String,
    },
    /// The guest's result bytes are malformed.
    #[error("guest returned a malformed result: {0}")]
    BadResult(#[from] FormatError),
    /// The guest ran past its deadline and was interrupted.
    #[error("guest interrupted after its {limit_ms} ms deadline")]
    Deadline {
        /// The deadline, in ms.
        limit_ms: u64,
    },
    /// The guest used up its fuel.
    #[error("guest ran out of fuel ({fuel} units)")]
    OutOfFuel {
        /// The fuel it had.
        fuel: u64,
    },
    /// The guest trapped (an `unreachable`, an out-of-bounds access, a panic).
    #[error("guest trapped: {0}")]
    Trap(String),
    /// An earlier call trapped or was interrupted; this instance must be replaced.
    #[error("guest instance is poisoned by an earlier failure; instantiate a fresh one")]
    Poisoned,
    /// The host could not build the canary's bundle or model (a bug in the host, not the guest).
    #[error("cannot build the canary ranking's input: {0}")]
    CanaryInput(String),
    /// The guest reported a result or error region outside its own memory.
    #[error("guest reported {len} bytes at {ptr}, outside its {memory}-byte memory")]
    BadRegion {
        /// The pointer it reported.
        ptr: u32,
        /// The length it reported.
        len: u32,
        /// Its memory size.
        memory: usize,
    },
}

impl GuestError {
    /// A short, stable name for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            GuestError::Deadline { .. } => "deadline",
            GuestError::OutOfFuel { .. } => "fuel",
            GuestError::Trap(_) => "trap",
            GuestError::OutOfMemory(_) => "memory",
            GuestError::Poisoned => "poisoned",
            GuestError::Call { .. } => "status",
            GuestError::BadResult(_) | GuestError::BadRegion { .. } => "bad_result",
            _ => "host",
        }
    }
}

impl From<CompiledError> for GuestError {
    fn from(e: CompiledError) -> Self {
        match e {
            CompiledError::Io { path, source } => GuestError::Io { path, source },
            other => GuestError::Wasmtime(other.to_string()),
        }
    }
}

fn wt(e: impl std::fmt::Display) -> GuestError {
    GuestError::Wasmtime(format!("{e:#}"))
}

/// How often the epoch advances; deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// What one guest may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock budget of one operation (loading a model, ranking a bundle).
    pub deadline: Duration,
    /// Largest linear memory of one instance, in bytes.
    pub memory_bytes: usize,
    /// Fuel per operation, a deterministic instruction budget; `None` = unmetered.
    pub fuel: Option<u64>,
    /// Instances the pooling allocator holds at once.
    pub instances: u32,
}

impl Default for Limits {
    /// The limits of the default `[guest]` configuration.
    fn default() -> Self {
        Self::from(&GuestConfig::default())
    }
}

impl From<&GuestConfig> for Limits {
    fn from(g: &GuestConfig) -> Self {
        Self {
            deadline: Duration::from_millis(g.deadline_ms),
            memory_bytes: g.memory_mib << 20,
            fuel: g.fuel,
            instances: g.slots,
        }
    }
}

impl Limits {
    fn ticks(&self) -> u64 {
        let tick = EPOCH_TICK.as_nanos().max(1);
        u64::try_from(self.deadline.as_nanos().div_ceil(tick)).unwrap_or(u64::MAX).max(1)
    }
}

/// A store's data: its instance's memory limiter.
pub struct Host {
    limits: StoreLimits,
}

/// Sets the deadline and fuel for the next operation of a sandboxed store.
fn arm(store: &mut Store<Host>, limits: Option<&Limits>) -> Result<(), GuestError> {
    if let Some(l) = limits {
        store.set_epoch_deadline(l.ticks());
        if let Some(fuel) = l.fuel {
            store.set_fuel(fuel).map_err(wt)?;
        }
    }
    Ok(())
}

/// Names a failed call: deadline, fuel, trap, or another wasmtime error.
fn classify(e: &wasmtime::Error, limits: Option<&Limits>) -> GuestError {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => GuestError::Deadline {
            limit_ms: limits.map_or(0, |l| u64::try_from(l.deadline.as_millis()).unwrap_or(u64::MAX)),
        },
        Some(wasmtime::Trap::OutOfFuel) => GuestError::OutOfFuel { fuel: limits.and_then(|l| l.fuel).unwrap_or(0) },
        Some(t) => GuestError::Trap(t.to_string()),
        None => wt(e),
    }
}

/// An engine whose guests run under `limits`: epoch deadlines (with a ticker
/// thread that stops when the engine is dropped), optional fuel, and the
/// pooling allocator sized for `limits.instances` instances of at most
/// `limits.memory_bytes` of memory.
pub fn sandboxed_engine(limits: &Limits) -> Result<Engine, GuestError> {
    let mut pool = wasmtime::PoolingAllocationConfig::new();
    pool.total_core_instances(limits.instances)
        .total_memories(limits.instances)
        .total_tables(limits.instances)
        .max_memory_size(limits.memory_bytes);
    let mut config = wasmtime::Config::new();
    config
        .epoch_interruption(true)
        .consume_fuel(limits.fuel.is_some())
        .allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    let engine = Engine::new(&config).map_err(wt)?;
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("edgewise-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map_err(|e| GuestError::Wasmtime(format!("cannot start the epoch ticker: {e}")))?;
    Ok(engine)
}

/// A compiled, checked guest module, ready to instantiate.
#[derive(Clone)]
pub struct GuestModule {
    engine: Engine,
    module: Module,
    pre: InstancePre<Host>,
    limits: Option<Limits>,
}

impl std::fmt::Debug for GuestModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestModule").finish_non_exhaustive()
    }
}

impl GuestModule {
    /// Compiles and checks binary module bytes, to run without limits.
    pub fn new(engine: &Engine, bytes: &[u8]) -> Result<Self, GuestError> {
        Self::build(engine, bytes, None)
    }

    /// Compiles and checks binary module bytes, to run under `limits`;
    /// `engine` must come from [`sandboxed_engine`] with the same limits.
    pub fn sandboxed(engine: &Engine, bytes: &[u8], limits: Limits) -> Result<Self, GuestError> {
        Self::build(engine, bytes, Some(limits))
    }

    /// Like [`GuestModule::sandboxed`], with the compiled code from `cache`
    /// when it holds this module for this engine (and stored there otherwise).
    pub fn sandboxed_cached(
        engine: &Engine,
        bytes: &[u8],
        limits: Limits,
        cache: Option<&CompiledCache>,
    ) -> Result<(Self, CompiledFrom), GuestError> {
        let (module, from) = match cache {
            Some(c) => c.load_or_compile(engine, bytes)?,
            None => (Module::new(engine, bytes).map_err(wt)?, CompiledFrom::Compiled),
        };
        Ok((Self::check(engine, module, Some(limits))?, from))
    }

    fn build(engine: &Engine, bytes: &[u8], limits: Option<Limits>) -> Result<Self, GuestError> {
        Self::check(engine, Module::new(engine, bytes).map_err(wt)?, limits)
    }

    fn check(engine: &Engine, module: Module, limits: Option<Limits>) -> Result<Self, GuestError> {
        let imports: Vec<String> = module.imports().map(|i| format!("{}::{}", i.module(), i.name())).collect();
        if let Some(first) = imports.first() {
            return Err(GuestError::HasImports { count: imports.len(), first: first.clone() });
        }
        let pre = Linker::<Host>::new(engine).instantiate_pre(&module).map_err(wt)?;
        Ok(Self { engine: engine.clone(), module, pre, limits })
    }

    /// Reads, compiles and checks a module file.
    pub fn from_file(engine: &Engine, path: &Path) -> Result<Self, GuestError> {
        let bytes =
            std::fs::read(path).map_err(|source| GuestError::Io { path: path.display().to_string(), source })?;
        Self::new(engine, &bytes)
    }

    /// The compiled module.
    pub fn module(&self) -> &Module {
        &self.module
    }

    /// The maximum size its exported memory declares, in bytes (`None`: it
    /// declares none, and only the host's limit binds).
    pub fn memory_maximum_bytes(&self) -> Option<u64> {
        self.module.exports().find_map(|e| match e.ty() {
            wasmtime::ExternType::Memory(m) => m.maximum().map(|pages| pages.saturating_mul(m.page_size())),
            _ => None,
        })
    }

    /// Proves the module can rank before it serves: a fresh instance loads a
    /// small fixed model and ranks a fixed 64-candidate bundle (built here, no
    /// randomness),
    /// and the result must decode and hold the 10 items asked for. The ABI
    /// version and exports were checked when the module was built.
    pub fn canary(&self) -> Result<(), GuestError> {
        let (bundle, model) = canary_input()?;
        let mut inst = self.instantiate()?;
        inst.load_model(&model)?;
        let (out, _) = inst.rank(&bundle, &RankContext::new(10, CANARY_NOW_MS))?;
        if out.items.len() != 10 {
            return Err(GuestError::Call {
                status: Status::Incompatible,
                message: format!("the canary ranking returned {} items, not the 10 asked for", out.items.len()),
            });
        }
        Ok(())
    }

    /// A fresh instance in its own store (from the pool, when sandboxed).
    pub fn instantiate(&self) -> Result<GuestInstance, GuestError> {
        let mut limits = StoreLimitsBuilder::new();
        if let Some(l) = &self.limits {
            limits = limits.memory_size(l.memory_bytes);
        }
        let mut store = Store::new(&self.engine, Host { limits: limits.build() });
        store.limiter(|h| &mut h.limits);
        arm(&mut store, self.limits.as_ref())?;
        let instance = self.pre.instantiate(&mut store).map_err(|e| classify(&e, self.limits.as_ref()))?;
        GuestInstance::new(store, instance, self.limits)
    }
}

/// The request time of the canary ranking, ms since the epoch.
const CANARY_NOW_MS: u64 = 1_700_000_000_000;

/// The canary's encoded bundle and model: 64 candidates of dimension 16 with
/// two features and two sources, and a model with one hidden layer of 8,
/// every number a fixed function of its position. Small enough to rank in
/// well under a millisecond; big enough to go through every stage (pre-rank
/// cut, MLP, MMR).
fn canary_input() -> Result<(Vec<u8>, Vec<u8>), GuestError> {
    const ROWS: usize = 64;
    const DIM: u16 = 16;
    let bad = |e: &dyn std::fmt::Display| GuestError::CanaryInput(e.to_string());
    let mut header = BundleHeader::new(DIM, 2, 2);
    header.created_at_ms = CANARY_NOW_MS;
    header.sources_contributed = 0b11;
    let mut builder = BundleBuilder::new(header).map_err(|e| bad(&e))?;
    for i in 0..ROWS {
        let embedding: Vec<f32> = (0..usize::from(DIM)).map(|d| ((i * 7 + d * 3) % 11) as f32 / 10.0 - 0.5).collect();
        let features = [(i % 5) as f32 / 5.0, (i % 3) as f32];
        let rank = u16::try_from(i).map_err(|e| bad(&e))?;
        let source_ranks = if i % 2 == 0 { [rank, rank / 2] } else { [rank, edgewise_core::bundle::NO_RANK] };
        builder
            .push(&Candidate {
                id: 1 + i as u64,
                embedding: &embedding,
                features: &features,
                source_ranks: &source_ranks,
                creator: (i % 8) as u32,
                category: (i % 4) as u32,
                region_mask: edgewise_core::region::ALL_REGIONS,
                retrieval_score: 1.0 - i as f32 / ROWS as f32,
            })
            .map_err(|e| bad(&e))?;
    }
    let mut model = Model {
        feature_schema_hash: header.feature_schema_hash,
        dim: DIM,
        n_features: 2,
        n_sources: 2,
        interaction: false,
        prerank_keep: 32,
        prerank: edgewise_core::model::PreRanker {
            bias: 0.0,
            w_dot: 1.0,
            w_retrieval: 0.5,
            w_features: vec![0.2, -0.1],
            w_sources: vec![0.1, 0.05],
        },
        mlp: Vec::new(),
        calibration: edgewise_core::model::Platt { a: 1.0, b: 0.0 },
        diversity: edgewise_core::model::Diversity { mmr_lambda: 0.8, creator_cap: 3 },
        history: None,
    };
    let (inputs, hidden) = (model.input_dim(), 8);
    model.mlp = vec![
        edgewise_core::model::Layer {
            inputs,
            outputs: hidden,
            weights: (0..inputs * hidden).map(|i| ((i % 7) as f32 - 3.0) / 10.0).collect(),
            bias: vec![0.1; hidden],
        },
        edgewise_core::model::Layer {
            inputs: hidden,
            outputs: 1,
            weights: (0..hidden).map(|i| ((i % 5) as f32 - 2.0) / 10.0).collect(),
            bias: vec![0.0],
        },
    ];
    let model = model.encode().map_err(|e| bad(&e))?;
    Ok((builder.finish(), model))
}

/// The default engine configuration for the guest (Cranelift, SIMD on).
pub fn default_engine() -> Result<Engine, GuestError> {
    Engine::new(&wasmtime::Config::new()).map_err(wt)
}

/// A bundle is kept loaded in a guest ([`GuestInstance::rank_kept`]) only
/// if it takes at most this fraction (1/`KEEP_SHARE`) of the instance's
/// memory cap: loading it copies it inside the guest, so two copies exist
/// for a moment, besides the ranking's scratch. Bigger ones (far beyond a
/// feed's: 5,000 candidates at d = 256 are 1.6 MB) are sent with each call.
pub const KEEP_SHARE: usize = 8;

/// The memory an unsandboxed guest may grow to: the core guest's declared
/// maximum (`core/guest/build.rs`), for [`KEEP_SHARE`].
const UNSANDBOXED_MEMORY: usize = 64 << 20;

/// `ew_load_bundle(ptr, len, flags)` and `ew_rank_loaded(ctx_ptr, ctx_len)`.
type KeepExports = (TypedFunc<(u32, u32, u32), i32>, TypedFunc<(u32, u32), i32>);

/// An instantiated guest.
pub struct GuestInstance {
    store: Store<Host>,
    limits: Option<Limits>,
    /// Set once a call trapped or ran out of time or fuel.
    poisoned: bool,
    memory: Memory,
    alloc: TypedFunc<u32, u32>,
    free: TypedFunc<(u32, u32), ()>,
    load_model: TypedFunc<(u32, u32), i32>,
    rank: TypedFunc<(u32, u32, u32, u32), i32>,
    result_ptr: TypedFunc<(), u32>,
    result_len: TypedFunc<(), u32>,
    error_ptr: TypedFunc<(), u32>,
    error_len: TypedFunc<(), u32>,
    /// The optional exports `ew_load_bundle` and `ew_rank_loaded`, when the
    /// module has both with the documented signatures.
    keep: Option<KeepExports>,
    /// The sha256 of the bundle the guest keeps loaded, if any.
    kept: Option<Digest>,
    /// Reusable guest buffer: (ptr, capacity).
    buf: Option<(u32, u32)>,
    ctx_bytes: Vec<u8>,
}

impl std::fmt::Debug for GuestInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestInstance").finish_non_exhaustive()
    }
}

fn func<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(
    store: &mut Store<Host>,
    instance: &Instance,
    name: &'static str,
) -> Result<TypedFunc<P, R>, GuestError> {
    instance
        .get_typed_func::<P, R>(&mut *store, name)
        .map_err(|e| GuestError::MissingExport { name, reason: format!("{e:#}") })
}

impl GuestInstance {
    fn new(mut store: Store<Host>, instance: Instance, limits: Option<Limits>) -> Result<Self, GuestError> {
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or(GuestError::MissingExport { name: "memory", reason: "no exported memory".into() })?;
        let version: TypedFunc<(), u32> = func(&mut store, &instance, "ew_abi_version")?;
        let found = version.call(&mut store, ()).map_err(|e| classify(&e, limits.as_ref()))?;
        if found != ABI_VERSION {
            return Err(GuestError::AbiVersion { found, expected: ABI_VERSION });
        }
        Ok(Self {
            alloc: func(&mut store, &instance, "ew_alloc")?,
            free: func(&mut store, &instance, "ew_free")?,
            load_model: func(&mut store, &instance, "ew_load_model")?,
            rank: func(&mut store, &instance, "ew_rank")?,
            result_ptr: func(&mut store, &instance, "ew_result_ptr")?,
            result_len: func(&mut store, &instance, "ew_result_len")?,
            error_ptr: func(&mut store, &instance, "ew_error_ptr")?,
            error_len: func(&mut store, &instance, "ew_error_len")?,
            // Optional: a module without them (or with other signatures) is ranked through `ew_rank`.
            keep: func(&mut store, &instance, "ew_load_bundle")
                .and_then(|load| Ok((load, func(&mut store, &instance, "ew_rank_loaded")?)))
                .ok(),
            kept: None,
            memory,
            store,
            limits,
            poisoned: false,
            buf: None,
            ctx_bytes: Vec::new(),
        })
    }

    /// Classifies a failed call, and poisons the instance if the guest was stopped.
    fn fail(&mut self, e: wasmtime::Error) -> GuestError {
        let err = classify(&e, self.limits.as_ref());
        if matches!(err, GuestError::Deadline { .. } | GuestError::OutOfFuel { .. } | GuestError::Trap(_)) {
            self.poisoned = true;
        }
        err
    }

    /// Starts an operation: refuses a poisoned instance, sets the deadline and fuel.
    fn begin(&mut self) -> Result<(), GuestError> {
        if self.poisoned {
            return Err(GuestError::Poisoned);
        }
        arm(&mut self.store, self.limits.as_ref())
    }

    /// Whether an earlier call trapped or was stopped (the instance must be replaced).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// The guest's linear memory size in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.memory.data_size(&self.store)
    }

    /// Ensures the reusable guest buffer holds at least `len` bytes; returns its pointer.
    fn buffer(&mut self, len: usize) -> Result<u32, GuestError> {
        let want = u32::try_from(len).map_err(|_| GuestError::OutOfMemory(len))?;
        if let Some((ptr, cap)) = self.buf {
            if cap >= want {
                return Ok(ptr);
            }
            self.free.call(&mut self.store, (ptr, cap)).map_err(|e| self.fail(e))?;
            self.buf = None;
        }
        let cap = want.max(64 * 1024).checked_next_power_of_two().unwrap_or(want);
        let ptr = self.alloc.call(&mut self.store, cap).map_err(|e| self.fail(e))?;
        if ptr == 0 {
            return Err(GuestError::OutOfMemory(len));
        }
        self.buf = Some((ptr, cap));
        Ok(ptr)
    }

    /// Copies `len` bytes at `ptr` out of the guest. Both come from the guest,
    /// so the region is checked against its memory before the host allocates
    /// anything: a hostile guest reporting 4 GiB gets an error, not a 4 GiB
    /// allocation in the host.
    fn read(&mut self, ptr: u32, len: u32) -> Result<Vec<u8>, GuestError> {
        let data = self.memory.data(&self.store);
        let memory = data.len();
        let copied =
            (ptr as usize).checked_add(len as usize).and_then(|end| data.get(ptr as usize..end)).map(<[u8]>::to_vec);
        copied.ok_or_else(|| {
            // A guest that lies about its own memory is not trusted again.
            self.poisoned = true;
            GuestError::BadRegion { ptr, len, memory }
        })
    }

    fn status(&mut self, code: i32) -> Result<(), GuestError> {
        match Status::from_code(code) {
            Some(Status::Ok) => Ok(()),
            status => {
                let p = self.error_ptr.call(&mut self.store, ()).map_err(|e| self.fail(e))?;
                let l = self.error_len.call(&mut self.store, ()).map_err(|e| self.fail(e))?;
                let message = String::from_utf8_lossy(&self.read(p, l)?).into_owned();
                Err(GuestError::Call { status: status.unwrap_or(Status::Incompatible), message })
            }
        }
    }

    /// Loads a model artifact into the guest.
    pub fn load_model(&mut self, model: &[u8]) -> Result<(), GuestError> {
        self.begin()?;
        let ptr = self.buffer(model.len())?;
        self.memory.write(&mut self.store, ptr as usize, model).map_err(wt)?;
        let code = self.load_model.call(&mut self.store, (ptr, model.len() as u32)).map_err(|e| self.fail(e))?;
        self.status(code)
    }

    /// Ranks an encoded bundle with an encoded (`EWCX`) context; returns the `EWRS` result bytes.
    pub fn rank_raw(&mut self, bundle: &[u8], ctx: &[u8]) -> Result<Vec<u8>, GuestError> {
        self.call_rank(bundle, ctx)?;
        let p = self.result_ptr.call(&mut self.store, ()).map_err(|e| self.fail(e))?;
        let l = self.result_len.call(&mut self.store, ()).map_err(|e| self.fail(e))?;
        self.read(p, l)
    }

    /// Whether the module can keep a bundle loaded between rankings (it has
    /// the optional exports of [`edgewise_core::abi::OPTIONAL_EXPORTS`]).
    pub fn keeps_bundles(&self) -> bool {
        self.keep.is_some()
    }

    /// The sha256 of the bundle the guest keeps loaded, if any.
    pub fn kept(&self) -> Option<Digest> {
        self.kept
    }

    /// Ranks `bundle`, whose sha256 is `digest`, for `ctx`, leaving it loaded
    /// in the guest: the next call with the same digest copies nothing in
    /// and validates nothing again (`ew_load_bundle` once, then
    /// `ew_rank_loaded`). The result is bit for bit [`GuestInstance::rank`]'s.
    /// `digest` must be the bundle's real sha256 (the edge computes it once
    /// per cached body); a module without the optional exports, and a bundle
    /// larger than [`KEEP_SHARE`]ths of the instance's memory cap (keeping
    /// one holds a second copy in the guest while it loads), are ranked
    /// through [`GuestInstance::rank`].
    pub fn rank_kept(
        &mut self,
        bundle: &[u8],
        digest: Digest,
        ctx: &RankContext,
    ) -> Result<(RankOutput, ModelMatch), GuestError> {
        let mut out = RankOutput::default();
        let model_match = self.rank_kept_into(bundle, digest, ctx, &mut out)?;
        Ok((out, model_match))
    }

    /// [`GuestInstance::rank_kept`] into `out`, reusing its buffers: the
    /// result is decoded where the guest left it, so a host that ranks in a
    /// loop allocates nothing per ranking once `out` has grown.
    pub fn rank_kept_into(
        &mut self,
        bundle: &[u8],
        digest: Digest,
        ctx: &RankContext,
        out: &mut RankOutput,
    ) -> Result<ModelMatch, GuestError> {
        let cap = self.limits.map_or(UNSANDBOXED_MEMORY, |l| l.memory_bytes);
        let Some((load, rank_loaded)) = self.keep.clone().filter(|_| bundle.len() <= cap / KEEP_SHARE) else {
            return self.rank_into(bundle, ctx, out);
        };
        self.begin()?;
        if self.kept != Some(digest) {
            self.kept = None;
            let ptr = self.buffer(bundle.len())?;
            self.memory.write(&mut self.store, ptr as usize, bundle).map_err(wt)?;
            let flags = u32::from(ctx.checksum_verified);
            let code = load.call(&mut self.store, (ptr, bundle.len() as u32, flags)).map_err(|e| self.fail(e))?;
            self.status(code)?;
            self.kept = Some(digest);
        }
        let mut c = std::mem::take(&mut self.ctx_bytes);
        c.clear();
        abi::encode_context(ctx, &mut c);
        let called = self.buffer(c.len()).and_then(|ptr| {
            self.memory.write(&mut self.store, ptr as usize, &c).map_err(wt)?;
            rank_loaded.call(&mut self.store, (ptr, c.len() as u32)).map_err(|e| self.fail(e))
        });
        self.ctx_bytes = c;
        self.status(called?)?;
        self.result_into(out)
    }

    /// Decodes the guest's last result (`ew_result_ptr`/`_len`) into `out`
    /// straight from its memory. The region comes from the guest, so it is
    /// checked against its memory first; a guest that lies about it is poisoned.
    fn result_into(&mut self, out: &mut RankOutput) -> Result<ModelMatch, GuestError> {
        let p = self.result_ptr.call(&mut self.store, ()).map_err(|e| self.fail(e))?;
        let l = self.result_len.call(&mut self.store, ()).map_err(|e| self.fail(e))?;
        let data = self.memory.data(&self.store);
        let memory = data.len();
        let decoded = (p as usize)
            .checked_add(l as usize)
            .and_then(|end| data.get(p as usize..end))
            .map(|bytes| abi::decode_result_into(bytes, out));
        match decoded {
            Some(r) => Ok(r?),
            None => {
                self.poisoned = true;
                Err(GuestError::BadRegion { ptr: p, len: l, memory })
            }
        }
    }

    /// Ranks an encoded bundle for `ctx` and decodes the result.
    pub fn rank(&mut self, bundle: &[u8], ctx: &RankContext) -> Result<(RankOutput, ModelMatch), GuestError> {
        let mut out = RankOutput::default();
        let model_match = self.rank_into(bundle, ctx, &mut out)?;
        Ok((out, model_match))
    }

    /// [`GuestInstance::rank`] into `out`, reusing its buffers.
    pub fn rank_into(
        &mut self,
        bundle: &[u8],
        ctx: &RankContext,
        out: &mut RankOutput,
    ) -> Result<ModelMatch, GuestError> {
        let mut c = std::mem::take(&mut self.ctx_bytes);
        c.clear();
        abi::encode_context(ctx, &mut c);
        let called = self.call_rank(bundle, &c);
        self.ctx_bytes = c;
        called?;
        self.result_into(out)
    }

    /// Copies `bundle` and `ctx` into the guest and calls `ew_rank`.
    fn call_rank(&mut self, bundle: &[u8], ctx: &[u8]) -> Result<(), GuestError> {
        self.begin()?;
        let total = bundle.len() + ctx.len();
        let ptr = self.buffer(total)?;
        let data = self.memory.data_mut(&mut self.store);
        let (b0, c0) = (ptr as usize, ptr as usize + bundle.len());
        data.get_mut(b0..c0).ok_or(GuestError::OutOfMemory(total))?.copy_from_slice(bundle);
        data.get_mut(c0..c0 + ctx.len()).ok_or(GuestError::OutOfMemory(total))?.copy_from_slice(ctx);
        let code = self
            .rank
            .call(&mut self.store, (ptr, bundle.len() as u32, c0 as u32, ctx.len() as u32))
            .map_err(|e| self.fail(e))?;
        self.status(code)
    }
}

/// Where `cargo xtask guest` puts the module: `$EDGEWISE_GUEST_WASM` if set,
/// else `<cargo target dir>/wasm/edgewise_core.wasm` for this checkout.
pub fn default_module_path() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("EDGEWISE_GUEST_WASM") {
        return p.into();
    }
    let target = match std::env::var_os("CARGO_TARGET_DIR").or(option_env!("CARGO_TARGET_DIR").map(Into::into)) {
        Some(t) => std::path::PathBuf::from(t),
        None => {
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
            manifest.parent().unwrap_or(manifest).join("target")
        }
    };
    target.join("wasm").join("edgewise_core.wasm")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The canary's input is valid on its own: the native core ranks it and
    /// returns the 10 items the canary asks the guest for.
    #[test]
    fn the_canary_input_ranks_natively() {
        let (bundle, model) = canary_input().expect("canary input");
        let bundle = edgewise_core::Bundle::decode(&bundle).expect("the bundle decodes");
        let model = Model::decode(&model).expect("the model decodes");
        let mut out = RankOutput::default();
        edgewise_core::Ranker::new()
            .rank(&model, &bundle, &RankContext::new(10, CANARY_NOW_MS), &mut out)
            .expect("native ranking");
        assert_eq!(out.items.len(), 10);
        let ids: std::collections::BTreeSet<u64> = out.items.iter().map(|i| i.id).collect();
        assert!(ids.len() == 10 && ids.iter().all(|id| (1..=64).contains(id)), "{ids:?}");
    }
}
