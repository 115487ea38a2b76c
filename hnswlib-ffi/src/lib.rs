//! [hnswlib](https://github.com/nmslib/hnswlib) 0.8.0, the reference HNSW
//! implementation, behind a safe Rust API.
//!
//! hnswlib is a header-only C++ library with no maintained Rust binding. Its
//! headers are vendored unmodified in `vendor/hnswlib` (Apache-2.0, see
//! `vendor/LICENSE`); `src/shim.cpp` puts a C ABI over `HierarchicalNSW<float>`
//! that never lets a C++ exception cross into Rust. What this crate adds:
//!
//! * **Inner-product distance** (`1 − a·b`) from Rust SIMD kernels picked at
//!   run time (AVX-512F, AVX2 + FMA, portable; see `kernels`), so one binary is fast
//!   on every x86-64 instead of being built with `-march=native`.
//! * **Filtered search**: a closure sees each candidate's label *during* graph
//!   traversal (hnswlib's `BaseFilterFunctor`), so a filtered query still
//!   returns `k` results whenever `k` eligible entries are reachable.
//! * **Snapshots** in hnswlib's own format, written through a callback and read
//!   back from memory with every count and neighbour id validated, so a damaged
//!   snapshot is an error, never an out-of-bounds read.
//! * **Sound concurrency**: searches take `&self` and run from any number of
//!   threads. Inserts that run in parallel go through an [`Inserter`], which
//!   holds the index mutably borrowed, so they never overlap a search (hnswlib
//!   reads neighbour lists without locks while searching). Resizing,
//!   deleting and changing `ef` take `&mut self`.
//!
//! Labels are the caller's `usize` keys; the `edgewise-origin` shards use dense
//! slots, so a filter is two array reads.

#![allow(unsafe_code)] // This crate is the FFI boundary; each `unsafe` block states why it holds.

mod kernels;

use std::ffi::{c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::ptr::NonNull;

/// What went wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// hnswlib raised an error (its message).
    #[error("hnswlib: {0}")]
    Native(String),
    /// A vector of the wrong length.
    #[error("the vector has {got} dimensions, the index {want}")]
    Dimension {
        /// The vector's length.
        got: usize,
        /// The index's dimension.
        want: usize,
    },
}

type FilterFn = unsafe extern "C" fn(usize, *mut c_void) -> bool;
type WriteFn = unsafe extern "C" fn(*const c_char, usize, *mut c_void);

const ERR_LEN: usize = 256;

unsafe extern "C" {
    fn ew_hnsw_new(
        dim: usize,
        f: kernels::DistFn,
        max_elements: usize,
        m: usize,
        ef_construction: usize,
        seed: usize,
        err: *mut c_char,
        err_len: usize,
    ) -> *mut c_void;
    fn ew_hnsw_load(
        dim: usize,
        f: kernels::DistFn,
        bytes: *const c_char,
        len: usize,
        err: *mut c_char,
        err_len: usize,
    ) -> *mut c_void;
    fn ew_hnsw_free(p: *mut c_void);
    fn ew_hnsw_add(p: *mut c_void, v: *const f32, label: usize, err: *mut c_char, err_len: usize) -> i32;
    fn ew_hnsw_mark_deleted(p: *mut c_void, label: usize, err: *mut c_char, err_len: usize) -> i32;
    fn ew_hnsw_resize(p: *mut c_void, max_elements: usize, err: *mut c_char, err_len: usize) -> i32;
    fn ew_hnsw_set_ef(p: *mut c_void, ef: usize);
    fn ew_hnsw_capacity(p: *const c_void) -> usize;
    fn ew_hnsw_count(p: *const c_void) -> usize;
    fn ew_hnsw_deleted(p: *const c_void) -> usize;
    fn ew_hnsw_connectivity(p: *const c_void) -> usize;
    fn ew_hnsw_search(
        p: *const c_void,
        q: *const f32,
        k: usize,
        filter: Option<FilterFn>,
        filter_ctx: *mut c_void,
        labels: *mut usize,
        distances: *mut f32,
        found: *mut usize,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn ew_hnsw_save(p: *const c_void, w: WriteFn, ctx: *mut c_void, err: *mut c_char, err_len: usize) -> i32;
}

/// Runs one shim call with an error buffer; a non-zero status becomes [`Error::Native`].
fn checked(call: impl FnOnce(*mut c_char, usize) -> i32) -> Result<(), Error> {
    let mut err = [0 as c_char; ERR_LEN];
    match call(err.as_mut_ptr(), ERR_LEN) {
        0 => Ok(()),
        _ => Err(native(&err)),
    }
}

fn native(err: &[c_char; ERR_LEN]) -> Error {
    let bytes: Vec<u8> = err.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    Error::Native(String::from_utf8_lossy(&bytes).into_owned())
}

/// Build parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Graph degree `M` (the base layer keeps `2·M`).
    pub m: usize,
    /// Beam width while inserting (`ef_construction`).
    pub ef_construction: usize,
    /// Seed of the level generator.
    pub seed: usize,
}

/// One HNSW graph over `dim`-dimensional `f32` vectors, inner-product distance.
pub struct Hnsw {
    raw: NonNull<c_void>,
    dim: usize,
    kernel: kernels::Kernel,
}

// SAFETY: the graph is plain heap memory owned by this handle. Every `&self`
// method is a read (`searchKnn`, counters, saving), which hnswlib allows from
// many threads at once; every write that could overlap a read takes `&mut self`.
unsafe impl Send for Hnsw {}
// SAFETY: see `Send`.
unsafe impl Sync for Hnsw {}

impl std::fmt::Debug for Hnsw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hnsw")
            .field("dim", &self.dim)
            .field("len", &self.len())
            .field("deleted", &self.deleted())
            .field("kernel", &self.kernel.name)
            .finish()
    }
}

impl Drop for Hnsw {
    fn drop(&mut self) {
        // SAFETY: `raw` came from `ew_hnsw_new`/`ew_hnsw_load` and is freed once, here.
        unsafe { ew_hnsw_free(self.raw.as_ptr()) }
    }
}

impl Hnsw {
    /// An empty graph with room for `capacity` vectors.
    pub fn new(dim: usize, capacity: usize, p: Params) -> Result<Self, Error> {
        // SAFETY: plain values and a live error buffer.
        Self::open(dim, |f, err, len| unsafe {
            ew_hnsw_new(dim, f, capacity, p.m, p.ef_construction, p.seed, err, len)
        })
    }

    /// A graph from [`Hnsw::save_into`]'s bytes (hnswlib's index format).
    /// Damaged or foreign bytes are an error, never a graph.
    pub fn load(dim: usize, bytes: &[u8]) -> Result<Self, Error> {
        // SAFETY: `bytes` is live for the call; the shim copies what it keeps.
        Self::open(dim, |f, err, len| unsafe { ew_hnsw_load(dim, f, bytes.as_ptr().cast(), bytes.len(), err, len) })
    }

    /// Makes a graph with `make` (given this CPU's distance kernel and an
    /// error buffer), which returns null on failure.
    fn open(dim: usize, make: impl FnOnce(kernels::DistFn, *mut c_char, usize) -> *mut c_void) -> Result<Self, Error> {
        let kernel = kernels::best();
        let mut raw = std::ptr::null_mut();
        checked(|err, len| {
            raw = make(kernel.distance, err, len);
            i32::from(raw.is_null())
        })?;
        let raw = NonNull::new(raw).ok_or_else(|| Error::Native("the shim made no graph".into()))?;
        Ok(Self { raw, dim, kernel })
    }

    /// The dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The distance kernel in use (`avx512f`, `avx2+fma` or `portable`).
    pub fn kernel(&self) -> &'static str {
        self.kernel.name
    }

    /// Vectors inserted, deleted ones included.
    pub fn len(&self) -> usize {
        // SAFETY: a read of a counter on a live index.
        unsafe { ew_hnsw_count(self.raw.as_ptr()) }
    }

    /// Whether nothing was ever inserted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Vectors marked deleted.
    pub fn deleted(&self) -> usize {
        // SAFETY: a read of a counter on a live index.
        unsafe { ew_hnsw_deleted(self.raw.as_ptr()) }
    }

    /// Vectors the graph has room for.
    pub fn capacity(&self) -> usize {
        // SAFETY: a read of a field on a live index.
        unsafe { ew_hnsw_capacity(self.raw.as_ptr()) }
    }

    /// The graph degree `M` it was built with.
    pub fn connectivity(&self) -> usize {
        // SAFETY: a read of a field on a live index.
        unsafe { ew_hnsw_connectivity(self.raw.as_ptr()) }
    }

    /// Grows the room to `capacity` vectors (never shrinks).
    pub fn reserve(&mut self, capacity: usize) -> Result<(), Error> {
        if capacity <= self.capacity() {
            return Ok(());
        }
        // SAFETY: `&mut self`: nothing else uses the graph while it is reallocated.
        checked(|err, len| unsafe { ew_hnsw_resize(self.raw.as_ptr(), capacity, err, len) })
    }

    /// Sets the search beam width `ef` (a query for `k > ef` results uses `k`).
    pub fn set_ef(&mut self, ef: usize) {
        // SAFETY: `&mut self`: no search reads `ef` meanwhile.
        unsafe { ew_hnsw_set_ef(self.raw.as_ptr(), ef.max(1)) }
    }

    /// Inserts one vector under `label` (an existing label's vector is replaced).
    pub fn add(&mut self, label: usize, v: &[f32]) -> Result<(), Error> {
        self.inserter().add(label, v)
    }

    /// A handle for inserting from many threads at once (hnswlib locks per
    /// node); the index cannot be searched until it is dropped.
    pub fn inserter(&mut self) -> Inserter<'_> {
        Inserter { index: self }
    }

    /// Marks `label` deleted: searches skip it, its node still routes.
    pub fn mark_deleted(&mut self, label: usize) -> Result<(), Error> {
        // SAFETY: `&mut self`: no search reads the mark meanwhile.
        checked(|err, len| unsafe { ew_hnsw_mark_deleted(self.raw.as_ptr(), label, err, len) })
    }

    /// The best `k` live vectors: `(label, distance)`, closest first.
    pub fn search(&self, q: &[f32], k: usize) -> Result<Vec<(usize, f32)>, Error> {
        self.run_search(q, k, None, std::ptr::null_mut())
    }

    /// The best `k` live vectors whose label `keep` accepts. `keep` runs during
    /// the traversal, on every candidate that would enter the result.
    pub fn search_filtered<F: Fn(usize) -> bool>(
        &self,
        q: &[f32],
        k: usize,
        keep: F,
    ) -> Result<Vec<(usize, f32)>, Error> {
        struct Ctx<F> {
            keep: F,
            panic: Option<Box<dyn std::any::Any + Send>>,
        }
        unsafe extern "C" fn trampoline<F: Fn(usize) -> bool>(label: usize, ctx: *mut c_void) -> bool {
            // SAFETY: `ctx` is the `Ctx<F>` below, alive and exclusively ours for the call.
            let ctx = unsafe { &mut *ctx.cast::<Ctx<F>>() };
            if ctx.panic.is_some() {
                return false;
            }
            match catch_unwind(AssertUnwindSafe(|| (ctx.keep)(label))) {
                Ok(keep) => keep,
                Err(p) => {
                    ctx.panic = Some(p);
                    false
                }
            }
        }
        let mut ctx = Ctx { keep, panic: None };
        let out = self.run_search(q, k, Some(trampoline::<F>), (&raw mut ctx).cast());
        if let Some(p) = ctx.panic {
            resume_unwind(p);
        }
        out
    }

    fn run_search(
        &self,
        q: &[f32],
        k: usize,
        filter: Option<FilterFn>,
        ctx: *mut c_void,
    ) -> Result<Vec<(usize, f32)>, Error> {
        self.check(q)?;
        if k == 0 || self.is_empty() {
            return Ok(Vec::new());
        }
        let mut labels = vec![0usize; k];
        let mut distances = vec![0f32; k];
        let mut found = 0usize;
        checked(|err, len| {
            // SAFETY: `q` holds `dim` floats; both output buffers hold `k`
            // entries and the shim writes at most `k`; `ctx` outlives the call.
            unsafe {
                ew_hnsw_search(
                    self.raw.as_ptr(),
                    q.as_ptr(),
                    k,
                    filter,
                    ctx,
                    labels.as_mut_ptr(),
                    distances.as_mut_ptr(),
                    &raw mut found,
                    err,
                    len,
                )
            }
        })?;
        Ok(labels.into_iter().zip(distances).take(found.min(k)).collect())
    }

    /// Appends the graph in hnswlib's index format to `out`.
    pub fn save_into(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        unsafe extern "C" fn write(bytes: *const c_char, len: usize, ctx: *mut c_void) {
            // SAFETY: `ctx` is the `Vec` below; `bytes` holds `len` bytes for the call.
            unsafe {
                let out = &mut *ctx.cast::<Vec<u8>>();
                out.extend_from_slice(std::slice::from_raw_parts(bytes.cast::<u8>(), len));
            }
        }
        // SAFETY: a read of the graph; `out` outlives the call.
        checked(|err, len| unsafe { ew_hnsw_save(self.raw.as_ptr(), write, (&raw mut *out).cast(), err, len) })
    }

    /// `a·b` with this index's kernel.
    pub fn dot(&self, a: &[f32], b: &[f32]) -> f32 {
        self.kernel.dot(a, b)
    }

    fn check(&self, v: &[f32]) -> Result<(), Error> {
        if v.len() == self.dim { Ok(()) } else { Err(Error::Dimension { got: v.len(), want: self.dim }) }
    }
}

/// Inserts into an [`Hnsw`] from many threads (`Sync`); see [`Hnsw::inserter`].
pub struct Inserter<'a> {
    index: &'a mut Hnsw,
}

impl Inserter<'_> {
    /// Inserts one vector under `label`; fails when the graph is full
    /// (reserve first) or the vector has the wrong length.
    pub fn add(&self, label: usize, v: &[f32]) -> Result<(), Error> {
        self.index.check(v)?;
        // SAFETY: `v` holds `dim` floats. Inserts from several threads are what
        // hnswlib's per-node locks are for, and the `&mut` borrow this handle
        // holds keeps searches, resizes and deletions away meanwhile.
        checked(|err, len| unsafe { ew_hnsw_add(self.index.raw.as_ptr(), v.as_ptr(), label, err, len) })
    }
}

#[cfg(test)]
mod tests;
