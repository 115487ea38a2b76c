//! Hosting the core guest module in wasmtime.
//!
//! [`GuestModule`] compiles `edgewise_core.wasm` once and checks it: zero
//! imports, every export of [`edgewise_core::abi::EXPORTS`], and a known ABI
//! version. [`GuestInstance`] is one instantiated guest with a loaded model;
//! [`GuestInstance::rank`] copies a bundle and a context into the guest, calls
//! `ew_rank`, and decodes the result. Guest buffers are reused between calls.

use std::path::Path;

use edgewise_core::abi::{self, ABI_VERSION, ModelMatch, Status};
use edgewise_core::rank::{RankContext, RankOutput};
use wasmtime::{Engine, Instance, Memory, Module, Store, TypedFunc};

/// Errors from loading or calling the guest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GuestError {
    /// The module file could not be read.
    #[error("cannot read guest module {path}: {source}")]
    Io {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// wasmtime refused to compile or instantiate the module, or a call trapped.
    #[error("wasmtime: {0}")]
    Wasmtime(String),
    /// The module imports something; the core guest must be self-contained.
    #[error("guest module has {count} import(s) (first: {first}); the core guest must have none")]
    HasImports {
        /// Number of imports.
        count: usize,
        /// `module::name` of the first.
        first: String,
    },
    /// A required export is missing or has the wrong type.
    #[error("guest module does not export {name} with the expected type: {reason}")]
    MissingExport {
        /// Export name.
        name: &'static str,
        /// Why.
        reason: String,
    },
    /// The module speaks another ABI version.
    #[error("guest ABI version {found} is not supported (host speaks {expected})")]
    AbiVersion {
        /// Module's version.
        found: u32,
        /// Host's version.
        expected: u32,
    },
    /// The guest could not allocate.
    #[error("guest out of memory allocating {0} bytes")]
    OutOfMemory(usize),
    /// A call returned an error status.
    #[error("guest call failed with {status:?}: {message}")]
    Call {
        /// Status code.
        status: Status,
        /// The guest's message.
        message: String,
    },
    /// The guest's result bytes are malformed.
    #[error("guest returned a malformed result: {0}")]
    BadResult(#[from] abi::WireError),
}

fn wt(e: impl std::fmt::Display) -> GuestError {
    GuestError::Wasmtime(format!("{e:#}"))
}

/// A compiled, checked guest module.
#[derive(Clone)]
pub struct GuestModule {
    engine: Engine,
    module: Module,
}

impl std::fmt::Debug for GuestModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestModule").finish_non_exhaustive()
    }
}

impl GuestModule {
    /// Compiles and checks binary module bytes.
    pub fn new(engine: &Engine, bytes: &[u8]) -> Result<Self, GuestError> {
        let module = Module::new(engine, bytes).map_err(wt)?;
        let imports: Vec<String> = module.imports().map(|i| format!("{}::{}", i.module(), i.name())).collect();
        if let Some(first) = imports.first() {
            return Err(GuestError::HasImports { count: imports.len(), first: first.clone() });
        }
        Ok(Self { engine: engine.clone(), module })
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

    /// A fresh instance in its own store.
    pub fn instantiate(&self) -> Result<GuestInstance, GuestError> {
        let mut store = Store::new(&self.engine, ());
        let instance = Instance::new(&mut store, &self.module, &[]).map_err(wt)?;
        GuestInstance::new(store, instance)
    }
}

/// The default engine configuration for the guest (Cranelift, SIMD on).
pub fn default_engine() -> Result<Engine, GuestError> {
    Engine::new(&wasmtime::Config::new()).map_err(wt)
}

/// An instantiated guest.
pub struct GuestInstance {
    store: Store<()>,
    memory: Memory,
    alloc: TypedFunc<u32, u32>,
    free: TypedFunc<(u32, u32), ()>,
    load_model: TypedFunc<(u32, u32), i32>,
    rank: TypedFunc<(u32, u32, u32, u32), i32>,
    result_ptr: TypedFunc<(), u32>,
    result_len: TypedFunc<(), u32>,
    error_ptr: TypedFunc<(), u32>,
    error_len: TypedFunc<(), u32>,
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
    store: &mut Store<()>,
    instance: &Instance,
    name: &'static str,
) -> Result<TypedFunc<P, R>, GuestError> {
    instance
        .get_typed_func::<P, R>(&mut *store, name)
        .map_err(|e| GuestError::MissingExport { name, reason: format!("{e:#}") })
}

impl GuestInstance {
    fn new(mut store: Store<()>, instance: Instance) -> Result<Self, GuestError> {
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or(GuestError::MissingExport { name: "memory", reason: "no exported memory".into() })?;
        let version: TypedFunc<(), u32> = func(&mut store, &instance, "ew_abi_version")?;
        let found = version.call(&mut store, ()).map_err(wt)?;
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
            memory,
            store,
            buf: None,
            ctx_bytes: Vec::new(),
        })
    }

    /// Ensures the reusable guest buffer holds at least `len` bytes; returns its pointer.
    fn buffer(&mut self, len: usize) -> Result<u32, GuestError> {
        let want = u32::try_from(len).map_err(|_| GuestError::OutOfMemory(len))?;
        if let Some((ptr, cap)) = self.buf {
            if cap >= want {
                return Ok(ptr);
            }
            self.free.call(&mut self.store, (ptr, cap)).map_err(wt)?;
            self.buf = None;
        }
        let cap = want.max(64 * 1024).checked_next_power_of_two().unwrap_or(want);
        let ptr = self.alloc.call(&mut self.store, cap).map_err(wt)?;
        if ptr == 0 {
            return Err(GuestError::OutOfMemory(len));
        }
        self.buf = Some((ptr, cap));
        Ok(ptr)
    }

    fn read(&mut self, ptr: u32, len: u32) -> Result<Vec<u8>, GuestError> {
        let mut v = vec![0u8; len as usize];
        self.memory.read(&self.store, ptr as usize, &mut v).map_err(wt)?;
        Ok(v)
    }

    fn status(&mut self, code: i32) -> Result<(), GuestError> {
        match Status::from_code(code) {
            Some(Status::Ok) => Ok(()),
            status => {
                let (p, l) = (
                    self.error_ptr.call(&mut self.store, ()).map_err(wt)?,
                    self.error_len.call(&mut self.store, ()).map_err(wt)?,
                );
                let message = String::from_utf8_lossy(&self.read(p, l)?).into_owned();
                Err(GuestError::Call { status: status.unwrap_or(Status::Incompatible), message })
            }
        }
    }

    /// Loads a model artifact into the guest.
    pub fn load_model(&mut self, model: &[u8]) -> Result<(), GuestError> {
        let ptr = self.buffer(model.len())?;
        self.memory.write(&mut self.store, ptr as usize, model).map_err(wt)?;
        let code = self.load_model.call(&mut self.store, (ptr, model.len() as u32)).map_err(wt)?;
        self.status(code)
    }

    /// Ranks an encoded bundle with an encoded (`EWCX`) context; returns the `EWRS` result bytes.
    pub fn rank_raw(&mut self, bundle: &[u8], ctx: &[u8]) -> Result<Vec<u8>, GuestError> {
        let total = bundle.len() + ctx.len();
        let ptr = self.buffer(total)?;
        let data = self.memory.data_mut(&mut self.store);
        let (b0, c0) = (ptr as usize, ptr as usize + bundle.len());
        data.get_mut(b0..c0).ok_or(GuestError::OutOfMemory(total))?.copy_from_slice(bundle);
        data.get_mut(c0..c0 + ctx.len()).ok_or(GuestError::OutOfMemory(total))?.copy_from_slice(ctx);
        let code =
            self.rank.call(&mut self.store, (ptr, bundle.len() as u32, c0 as u32, ctx.len() as u32)).map_err(wt)?;
        self.status(code)?;
        let (p, l) = (
            self.result_ptr.call(&mut self.store, ()).map_err(wt)?,
            self.result_len.call(&mut self.store, ()).map_err(wt)?,
        );
        self.read(p, l)
    }

    /// Ranks an encoded bundle for `ctx` and decodes the result.
    pub fn rank(&mut self, bundle: &[u8], ctx: &RankContext) -> Result<(RankOutput, ModelMatch), GuestError> {
        let mut c = std::mem::take(&mut self.ctx_bytes);
        c.clear();
        abi::encode_context(ctx, &mut c);
        let r = self.rank_raw(bundle, &c);
        self.ctx_bytes = c;
        Ok(abi::decode_result(&r?)?)
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
