//! Hostile guests ([`crate::common::hostile`], written in WAT) against the sandbox: an infinite loop,
//! unbounded `memory.grow`, a trap, and a fuel-metered spin. Each is stopped
//! or contained, its instance is poisoned, and the real core guest on the same
//! engine keeps ranking correctly afterwards.

use std::time::{Duration, Instant};

use edgewise_core::synth;
use edgewise_edge::guest::{self, GuestError, GuestModule, Limits};

use crate::common::{hostile, hostile_reporting};

const SPIN: &str = "(loop $l (br $l)) i32.const 0";
/// Grows until refused, then reports success.
const GROW_POLITELY: &str =
    "(block $done (loop $l (br_if $done (i32.eq (memory.grow (i32.const 16)) (i32.const -1))) (br $l))) i32.const 0";
/// Ignores refusals and keeps asking.
const GROW_FOREVER: &str = "(loop $l (drop (memory.grow (i32.const 16))) (br $l)) i32.const 0";
const TRAP: &str = "unreachable";

/// The real core guest ranks a generated bundle: the engine still works.
fn real_guest_still_ranks(engine: &wasmtime::Engine, limits: Limits) {
    let path = guest::default_module_path();
    let bytes =
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (build it with `cargo xtask guest`)", path.display()));
    let m = GuestModule::sandboxed(engine, &bytes, limits).expect("the core guest compiles");
    let mut inst = m.instantiate().expect("instantiate");
    let spec = synth::Spec::new(300, 32, 4);
    let model = synth::model(&spec, &[16], 100, 4).encode().expect("encodes");
    inst.load_model(&model).expect("model loads");
    let (out, _) = inst.rank(&synth::bundle(&spec, 0), &synth::context(&spec, 10, 1_000, 4)).expect("ranks");
    assert_eq!(out.items.len(), 10);
}

#[test]
fn an_infinite_loop_is_stopped_by_its_deadline() {
    let limits = Limits { deadline: Duration::from_millis(50), ..Limits::default() };
    let engine = guest::sandboxed_engine(&limits).expect("engine");
    let m = GuestModule::sandboxed(&engine, &hostile(SPIN), limits).expect("compiles");
    let mut inst = m.instantiate().expect("instantiate");
    let start = Instant::now();
    let err = inst.rank_raw(b"bundle", b"ctx").expect_err("a spinning guest must be stopped");
    let took = start.elapsed();
    assert!(matches!(err, GuestError::Deadline { limit_ms: 50 }), "{err}");
    // The typed error says the deadline stopped it; the upper bound only proves it
    // was stopped at all, loosely enough that a loaded 2-core machine (the epoch
    // ticker is a thread that sleeps 1 ms) cannot fail it. The measured time is
    // printed (and recorded in BENCHMARKS.md).
    assert!(took < Duration::from_secs(5), "stopped after {took:?} (deadline {:?})", limits.deadline);
    assert!(took >= limits.deadline, "stopped after {took:?}, before its deadline");
    println!("infinite loop stopped after {took:?} (deadline {:?})", limits.deadline);
    assert!(matches!(inst.rank_raw(b"bundle", b"ctx"), Err(GuestError::Poisoned)), "the instance is retired");
    // A fresh instance of the same module gets a fresh deadline, and the engine serves other guests.
    let err = m.instantiate().expect("fresh instance").rank_raw(b"b", b"c").expect_err("spins again");
    assert_eq!(err.kind(), "deadline");
    real_guest_still_ranks(&engine, limits);
}

#[test]
fn memory_stays_within_its_cap() {
    let limits = Limits { memory_bytes: 8 << 20, deadline: Duration::from_millis(200), ..Limits::default() };
    let engine = guest::sandboxed_engine(&limits).expect("engine");

    // A guest that takes "no" for an answer: its growth stops at the cap and it carries on.
    let m = GuestModule::sandboxed(&engine, &hostile(GROW_POLITELY), limits).expect("compiles");
    let mut inst = m.instantiate().expect("instantiate");
    inst.rank_raw(b"bundle", b"ctx").expect("the guest sees memory.grow fail and returns");
    let size = inst.memory_bytes();
    assert!(size <= limits.memory_bytes, "memory grew to {size} bytes past the {} cap", limits.memory_bytes);
    assert!(size > limits.memory_bytes / 2, "it did grow up to near the cap ({size} bytes)");

    // One that does not: it spins on refused growth until its deadline.
    let m = GuestModule::sandboxed(&engine, &hostile(GROW_FOREVER), limits).expect("compiles");
    let mut inst = m.instantiate().expect("instantiate");
    let err = inst.rank_raw(b"bundle", b"ctx").expect_err("stopped");
    assert_eq!(err.kind(), "deadline", "{err}");
    assert!(inst.memory_bytes() <= limits.memory_bytes);
    println!("greedy guest held at {} bytes (cap {})", inst.memory_bytes(), limits.memory_bytes);
    real_guest_still_ranks(&engine, limits);
}

#[test]
fn a_trap_fails_only_that_call() {
    let limits = Limits::default();
    let engine = guest::sandboxed_engine(&limits).expect("engine");
    let m = GuestModule::sandboxed(&engine, &hostile(TRAP), limits).expect("compiles");
    let mut inst = m.instantiate().expect("instantiate");
    let err = inst.rank_raw(b"bundle", b"ctx").expect_err("traps");
    assert!(matches!(&err, GuestError::Trap(m) if m.contains("unreachable")), "{err}");
    assert!(inst.is_poisoned());
    real_guest_still_ranks(&engine, limits);
}

#[test]
fn fuel_stops_a_spin_deterministically() {
    let limits = Limits { fuel: Some(100_000), deadline: Duration::from_secs(10), ..Limits::default() };
    let engine = guest::sandboxed_engine(&limits).expect("engine");
    let m = GuestModule::sandboxed(&engine, &hostile(SPIN), limits).expect("compiles");
    let err = m.instantiate().expect("instantiate").rank_raw(b"b", b"c").expect_err("out of fuel");
    assert!(matches!(err, GuestError::OutOfFuel { fuel: 100_000 }), "{err}");
    // The real guest ranks a small bundle well within a larger budget, every time.
    real_guest_still_ranks(&engine, Limits { fuel: Some(500_000_000), ..limits });
}

#[test]
fn a_guest_that_needs_more_memory_than_the_cap_is_refused_when_loaded() {
    let limits = Limits { memory_bytes: 1 << 20, ..Limits::default() };
    let engine = guest::sandboxed_engine(&limits).expect("engine");
    let wat = r#"(module (memory (export "memory") 64))"#; // 4 MiB minimum
    let err = GuestModule::sandboxed(&engine, &wat::parse_str(wat).expect("WAT"), limits).expect_err("refused");
    assert!(err.to_string().contains("exceeds the limit"), "{err}");
}

/// A pooled instance whose guest trapped or ran out of time is never reused;
/// one whose guest merely refused a request (an error status) is.
#[test]
fn the_pool_never_reuses_a_stopped_instance() {
    use edgewise_edge::pool::{InstanceMode, InstancePool};
    let limits = Limits { deadline: Duration::from_millis(20), ..Limits::default() };
    let engine = guest::sandboxed_engine(&limits).expect("engine");
    let ctx = edgewise_core::rank::RankContext::new(10, 0);
    for (body, kind, kept) in [(TRAP, "trap", 0), (SPIN, "deadline", 0), ("i32.const 1", "status", 1)] {
        let m = GuestModule::sandboxed(&engine, &hostile(body), limits).expect("compiles");
        let pool = InstancePool::new(m, InstanceMode::Pooled, 4);
        for _ in 0..3 {
            let model = b"model bytes";
            let err = pool.rank(edgewise_core::Digest::of(model), model, b"bundle", &ctx).expect_err("the guest fails");
            assert_eq!(err.kind(), kind, "{err}");
            assert_eq!(pool.idle(), kept, "{kind}: idle instances after the failure");
        }
    }
    real_guest_still_ranks(&engine, limits);
}

/// Regression (issue 13, defect 12): the host used to allocate whatever
/// length the guest reported before reading it, so a guest claiming a
/// 4 GiB result made the host allocate 4 GiB. The region is now checked
/// against the guest's memory first.
#[test]
fn a_guest_that_reports_a_result_outside_its_memory_costs_the_host_nothing() {
    let limits = Limits::default();
    let engine = guest::sandboxed_engine(&limits).expect("engine");
    for (ptr, len) in [("0", "-1"), ("-16", "64"), ("131000", "8192")] {
        let wasm = hostile_reporting("i32.const 0", ptr, len, "-1");
        let m = GuestModule::sandboxed(&engine, &wasm, limits).expect("compiles");
        let mut inst = m.instantiate().expect("instantiate");
        let err = inst.rank_raw(b"bundle", b"ctx").expect_err("the region is outside the guest's memory");
        assert!(matches!(err, GuestError::BadRegion { memory: 131_072, .. }), "ptr {ptr}, len {len}: {err}");
        assert!(matches!(inst.rank_raw(b"bundle", b"ctx"), Err(GuestError::Poisoned)), "a lying guest is retired");
    }
    real_guest_still_ranks(&engine, limits);
}
