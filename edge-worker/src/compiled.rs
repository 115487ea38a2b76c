//! Compiled guest modules, cached on disk.
//!
//! Compiling `edgewise_core.wasm` with Cranelift takes a noticeable fraction
//! of a second; loading the compiled code back (`Module::deserialize`) takes
//! about a millisecond. An edge that restarts, or swaps tenants back and
//! forth, compiles each module once per engine configuration:
//! [`CompiledCache::load_or_compile`] keys the file by the sha256 of the wasm
//! bytes and a hash of the engine's compatibility settings (wasmtime version,
//! target, and the tunables that change generated code), so a module compiled
//! for another configuration is never looked up.
//!
//! # Trust
//! Deserializing compiled code is `unsafe` in wasmtime: the bytes are executed
//! as machine code, and wasmtime checks their header, not their contents. The
//! cache therefore:
//! * writes only what `Module::serialize` produced, atomically (a temporary
//!   file, then a rename), followed by the sha256 of those bytes;
//! * checks that sha256 before deserializing, so a truncated or corrupt file
//!   (a full disk, a crash, bit rot) is recompiled with a warning, never run;
//! * creates its directory with mode 0700. Anyone who can write there can
//!   run code as the edge, exactly like anyone who can replace its binary;
//!   point `guest.compiled_cache_dir` at a directory only the edge's user owns.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use edgewise_core::Digest;
use wasmtime::{Engine, Module};

/// Why the cache could not be opened, or a module not compiled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompiledError {
    /// The cache directory cannot be created or restricted to its owner.
    #[error("cannot use {path} for compiled modules: {source}")]
    Io {
        /// The directory that could not be created or restricted.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// wasmtime refused to compile the module.
    #[error("wasmtime cannot compile the module: {0}")]
    Compile(String),
}

/// Why a cache entry is not run (it is recompiled instead).
#[derive(Debug, thiserror::Error)]
enum Unusable {
    #[error("{0} bytes is too short to be an entry")]
    TooShort(usize),
    #[error("its sha256 does not match its contents (truncated or corrupt)")]
    Corrupt,
    #[error("wasmtime refused it: {0}")]
    Refused(String),
}

/// Where a module's compiled code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompiledFrom {
    /// Compiled now (and written to the cache, if there is one).
    Compiled,
    /// Loaded from the on-disk cache.
    Disk,
}

/// A directory of compiled modules.
#[derive(Debug, Clone)]
pub struct CompiledCache {
    dir: PathBuf,
}

const SUFFIX: &str = "cwasm";

impl CompiledCache {
    /// Opens (creating it, mode 0700) the cache directory.
    pub fn open(dir: &Path) -> Result<Self, CompiledError> {
        let io = |source| CompiledError::Io { path: dir.display().to_string(), source };
        std::fs::create_dir_all(dir).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        }
        Ok(Self { dir: dir.to_path_buf() })
    }

    /// Where the compiled modules are written.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file holding `wasm` compiled for `engine`.
    pub fn path_for(&self, engine: &Engine, wasm: &[u8]) -> PathBuf {
        let mut h = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let key = Digest::of(wasm);
        self.dir.join(format!("{key}-{:016x}.{SUFFIX}", h.finish()))
    }

    /// `wasm` compiled for `engine`: from the cache when a sound entry is
    /// there, else compiled now and stored. A cache that cannot be read or
    /// written only costs a compilation (and a warning), never the module.
    pub fn load_or_compile(&self, engine: &Engine, wasm: &[u8]) -> Result<(Module, CompiledFrom), CompiledError> {
        let path = self.path_for(engine, wasm);
        match std::fs::read(&path) {
            Ok(bytes) => match deserialize(engine, &bytes) {
                Ok(module) => return Ok((module, CompiledFrom::Disk)),
                Err(reason) => tracing::warn!(
                    path = %path.display(),
                    %reason,
                    "compiled-module cache entry is unusable; recompiling"
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot read the compiled-module cache"),
        }
        let module = Module::new(engine, wasm).map_err(|e| CompiledError::Compile(format!("{e:#}")))?;
        match module.serialize() {
            Ok(code) => {
                if let Err(e) = write_entry(&path, &code) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot write the compiled-module cache");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot serialize the compiled module"),
        }
        Ok((module, CompiledFrom::Compiled))
    }
}

/// Writes `code` and its sha256 to `path` atomically.
fn write_entry(path: &Path, code: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("{SUFFIX}.tmp{}", std::process::id()));
    let mut bytes = Vec::with_capacity(code.len() + 32);
    bytes.extend_from_slice(code);
    bytes.extend_from_slice(edgewise_core::Digest::of(code).as_bytes());
    std::fs::write(&tmp, &bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Checks an entry's sha256, then deserializes its code.
fn deserialize(engine: &Engine, entry: &[u8]) -> Result<Module, Unusable> {
    let Some(split) = entry.len().checked_sub(32) else {
        return Err(Unusable::TooShort(entry.len()));
    };
    let (code, sum) = entry.split_at(split);
    if edgewise_core::Digest::of(code).as_bytes().as_slice() != sum {
        return Err(Unusable::Corrupt);
    }
    load_code(engine, code).map_err(|e| Unusable::Refused(format!("{e:#}")))
}

#[allow(unsafe_code)]
fn load_code(engine: &Engine, code: &[u8]) -> wasmtime::Result<Module> {
    // SAFETY: `code` is exactly what `Module::serialize` wrote for an engine
    // with the same compatibility hash (the file name is keyed by it, and
    // wasmtime checks its own header and settings again), and its sha256 was
    // verified above, so it is not truncated or corrupted. The directory is
    // the edge's own (mode 0700); see the module docs on trust.
    unsafe { Module::deserialize(engine, code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAT: &str = r#"(module (func (export "answer") (result i32) i32.const 42))"#;

    fn answer(engine: &Engine, module: &Module) -> i32 {
        let mut store = wasmtime::Store::new(engine, ());
        let inst = wasmtime::Instance::new(&mut store, module, &[]).expect("instantiate");
        let f = inst.get_typed_func::<(), i32>(&mut store, "answer").expect("export");
        f.call(&mut store, ()).expect("call")
    }

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ew-compiled-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn second_load_comes_from_disk_and_runs() {
        let dir = tempdir("hit");
        let cache = CompiledCache::open(&dir).expect("open");
        let engine = Engine::default();
        let wasm = wat::parse_str(WAT).expect("wat");
        let (m1, from1) = cache.load_or_compile(&engine, &wasm).expect("compile");
        assert_eq!(from1, CompiledFrom::Compiled);
        let (m2, from2) = cache.load_or_compile(&engine, &wasm).expect("load");
        assert_eq!(from2, CompiledFrom::Disk);
        assert_eq!(answer(&engine, &m1), 42);
        assert_eq!(answer(&engine, &m2), 42);
        // Another engine configuration has its own entry.
        let mut cfg = wasmtime::Config::new();
        cfg.consume_fuel(true);
        let other = Engine::new(&cfg).expect("engine");
        assert_ne!(cache.path_for(&engine, &wasm), cache.path_for(&other, &wasm));
        assert_eq!(cache.load_or_compile(&other, &wasm).expect("other").1, CompiledFrom::Compiled);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&dir).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o700);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn corrupt_or_truncated_entries_are_recompiled_not_run() {
        let dir = tempdir("corrupt");
        let cache = CompiledCache::open(&dir).expect("open");
        let engine = Engine::default();
        let wasm = wat::parse_str(WAT).expect("wat");
        cache.load_or_compile(&engine, &wasm).expect("compile");
        let path = cache.path_for(&engine, &wasm);
        let good = std::fs::read(&path).expect("entry");

        // One flipped byte in the code.
        let mut bad = good.clone();
        bad[good.len() / 2] ^= 0x40;
        std::fs::write(&path, &bad).expect("write");
        let (m, from) = cache.load_or_compile(&engine, &wasm).expect("recompile");
        assert_eq!(from, CompiledFrom::Compiled);
        assert_eq!(answer(&engine, &m), 42);
        assert_eq!(std::fs::read(&path).expect("rewritten"), good, "the entry is rewritten");

        // Truncated, and too short to hold a checksum.
        for len in [good.len() - 100, 5] {
            std::fs::write(&path, &good[..len]).expect("write");
            assert_eq!(cache.load_or_compile(&engine, &wasm).expect("recompile").1, CompiledFrom::Compiled);
            assert_eq!(cache.load_or_compile(&engine, &wasm).expect("load").1, CompiledFrom::Disk);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unwritable_cache_still_compiles() {
        let dir = tempdir("ro");
        let cache = CompiledCache::open(&dir).expect("open");
        let engine = Engine::default();
        let wasm = wat::parse_str(WAT).expect("wat");
        // The entry's path is taken by a directory: the write fails.
        std::fs::create_dir_all(cache.path_for(&engine, &wasm)).expect("block");
        for _ in 0..2 {
            let (m, from) = cache.load_or_compile(&engine, &wasm).expect("compile");
            assert_eq!(from, CompiledFrom::Compiled);
            assert_eq!(answer(&engine, &m), 42);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
