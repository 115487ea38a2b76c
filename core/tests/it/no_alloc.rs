//! Ranking in a steady state allocates nothing: once a [`Ranker`] (or the ABI
//! [`Engine`]) has served a request of a given shape, the next one reuses its buffers.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use edgewise_core::abi::{self, Engine, Status};
use edgewise_core::bundle::Bundle;
use edgewise_core::rank::{RankOutput, Ranker};
use edgewise_core::synth;

struct Counting;

thread_local! {
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        COUNT.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        COUNT.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn allocations<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = COUNT.with(Cell::get);
    let r = f();
    (r, COUNT.with(Cell::get) - before)
}

#[test]
fn steady_state_ranking_allocates_nothing() {
    let spec = synth::Spec::new(1000, 64, 3);
    let bytes = synth::bundle(&spec, 0);
    let bundle = Bundle::decode(&bytes).expect("decodes");
    let model = synth::model(&spec, &[64, 32], 200, 3);
    // Requests of varying shape (seen lists, blocked creators, sessions): the first
    // pass grows the buffers to their high-water mark, the second must not allocate.
    let contexts: Vec<_> = (0..8).map(|seed| synth::context(&spec, 20, 1_000_000, 100 + seed)).collect();
    let mut ranker = Ranker::new();
    let mut out = RankOutput::default();
    let (_, first) = allocations(|| {
        for ctx in &contexts {
            ranker.rank(&model, &bundle, ctx, &mut out).expect("ranks");
        }
    });
    assert!(first > 0, "the first pass sizes the buffers");
    for (i, ctx) in contexts.iter().enumerate() {
        let (_, n) = allocations(|| ranker.rank(&model, &bundle, ctx, &mut out).expect("ranks"));
        assert_eq!(n, 0, "steady-state ranking call {i} allocated {n} times");
        assert_eq!(out.items.len(), 20);
    }
}

#[test]
fn steady_state_ranking_with_a_history_allocates_nothing() {
    let spec = synth::Spec::new(300, 64, 5);
    let bytes = synth::bundle(&spec, 0);
    let bundle = Bundle::decode(&bytes).expect("decodes");
    let model = synth::model_with_history(&spec, &[16], 300, 5, 32, 4);
    let contexts: Vec<_> =
        (0..8).map(|seed| synth::context_with_history(&spec, 20, 1_000_000, 200 + seed, 4 * seed as usize)).collect();
    let mut ranker = Ranker::new();
    let mut out = RankOutput::default();
    for ctx in &contexts {
        ranker.rank(&model, &bundle, ctx, &mut out).expect("ranks");
    }
    for (i, ctx) in contexts.iter().enumerate() {
        let (_, n) = allocations(|| ranker.rank(&model, &bundle, ctx, &mut out).expect("ranks"));
        assert_eq!(n, 0, "steady-state ranking call {i} (history of {}) allocated {n} times", ctx.history.len());
    }
    // The engine decodes a history context into its reused one.
    let mut engine = Engine::new();
    assert_eq!(engine.load_model(&model.encode().expect("encodes")), Status::Ok);
    let mut ctx_bytes = Vec::new();
    abi::encode_context(&contexts[7], &mut ctx_bytes);
    assert_eq!(engine.rank(&bytes, &ctx_bytes), Status::Ok);
    let (status, n) = allocations(|| engine.rank(&bytes, &ctx_bytes));
    assert_eq!((status, n), (Status::Ok, 0));
}

#[test]
fn steady_state_abi_engine_allocates_nothing() {
    let spec = synth::Spec::new(500, 32, 4);
    let bytes = synth::bundle(&spec, 0);
    let model = synth::model(&spec, &[16, 8], 100, 4).encode().expect("encodes");
    let mut engine = Engine::new();
    assert_eq!(engine.load_model(&model), Status::Ok);
    let mut ctx_bytes = Vec::new();
    abi::encode_context(&synth::context(&spec, 10, 1_000_000, 4), &mut ctx_bytes);
    assert_eq!(engine.rank(&bytes, &ctx_bytes), Status::Ok);
    let (status, n) = allocations(|| engine.rank(&bytes, &ctx_bytes));
    assert_eq!(status, Status::Ok);
    assert_eq!(n, 0, "the engine allocated {n} times in a steady state");
    // The kept-bundle path: loading copies the bundle once; ranking it allocates nothing.
    assert_eq!(engine.load_bundle(&bytes, false), Status::Ok);
    assert_eq!(engine.rank_loaded(&ctx_bytes), Status::Ok);
    let (status, n) = allocations(|| engine.rank_loaded(&ctx_bytes));
    assert_eq!(status, Status::Ok);
    assert_eq!(n, 0, "ranking the kept bundle allocated {n} times in a steady state");
}
