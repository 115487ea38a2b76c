//! The guest module in wasmtime against the native core.
//!
//! These tests need `edgewise_core.wasm`, which `cargo xtask guest` builds (the
//! README's test command does it first). If it is missing they fail, naming the
//! path; they never skip.

use std::cell::{Cell, RefCell};

use edgewise_core::abi::{self, EXPORTS, ModelMatch, Status};
use edgewise_core::bundle::Bundle;
use edgewise_core::model;
use edgewise_core::rank::{RankOutput, Ranker};
use edgewise_core::synth;
use edgewise_edge::guest::{self, GuestError, GuestInstance, GuestModule};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn module() -> GuestModule {
    let path = guest::default_module_path();
    assert!(
        path.exists(),
        "guest module not found at {}: run `cargo xtask guest` first (the README's test command does)",
        path.display()
    );
    let engine = guest::default_engine().expect("engine");
    GuestModule::from_file(&engine, &path).expect("the guest module compiles and has no imports")
}

#[test]
fn guest_has_zero_imports_and_the_documented_exports() {
    let m = module();
    assert_eq!(m.module().imports().count(), 0, "the core guest must have zero imports");
    let exports: Vec<String> = m.module().exports().map(|e| e.name().to_string()).collect();
    for name in EXPORTS.iter().chain(&["memory"]) {
        assert!(exports.iter().any(|e| e == name), "missing export {name}; exports are {exports:?}");
    }
    // Optional for other guests; the core guest has them (the edge keeps bundles loaded with them).
    for name in abi::OPTIONAL_EXPORTS {
        assert!(exports.iter().any(|e| e == name), "missing optional export {name}; exports are {exports:?}");
    }
    println!("guest exports: {exports:?}");
}

#[test]
fn guest_declares_its_memory_maximum_so_every_host_inherits_the_cap() {
    let m = module();
    assert_eq!(m.memory_maximum_bytes(), Some(64 << 20), "core/guest/build.rs links with --max-memory=64 MiB");
    // A bundle that needs more than the cap is refused by the guest, not by host luck.
    let spec = synth::Spec::new(400_000, 64, 5);
    let bundle = synth::bundle(&spec, 1_700_000_000_000);
    assert!(bundle.len() > 32 << 20, "a {}-byte bundle: two copies exceed 64 MiB", bundle.len());
    let model = synth::model(&spec, &[16], 100, 5).encode().expect("model");
    let mut inst = m.instantiate().expect("instance");
    inst.load_model(&model).expect("model loads");
    let ctx = synth::context(&spec, 10, 1_700_000_000_000, 6);
    let err = inst.rank(&bundle, &ctx).expect_err("beyond the declared maximum");
    println!("a {} MiB bundle: {err}", bundle.len() >> 20);
}

#[test]
fn guest_rejects_modules_with_imports() {
    let engine = guest::default_engine().expect("engine");
    let wat = r#"(module (import "env" "clock" (func $c (result i64))) (memory (export "memory") 1))"#;
    let err = GuestModule::new(&engine, &wat::parse_str(wat).expect("valid WAT"))
        .expect_err("a module with imports is refused");
    assert!(matches!(err, GuestError::HasImports { count: 1, .. }), "{err}");
}

fn native(model_bytes: &[u8], bundle_bytes: &[u8], ctx: &edgewise_core::RankContext) -> Vec<u8> {
    let model = model::Model::decode(model_bytes).expect("model");
    let bundle = Bundle::decode(bundle_bytes).expect("bundle");
    let mut out = RankOutput::default();
    Ranker::new().rank(&model, &bundle, ctx, &mut out).expect("native ranking");
    let mut bytes = Vec::new();
    abi::encode_result(&out, ModelMatch::Any, &mut bytes);
    bytes
}

/// A few hundred randomized bundles, models and contexts: the guest's encoded
/// result must equal the native one byte for byte (so every f32 is bit-identical).
#[test]
fn guest_and_native_rankings_are_bit_identical() {
    let m = module();
    let inst: RefCell<GuestInstance> = RefCell::new(m.instantiate().expect("instantiate"));
    let mut runner = TestRunner::new(Config { cases: 300, failure_persistence: None, ..Config::default() });
    let strategy = (
        1usize..1200,
        1u16..300,
        0u16..10,
        0u8..6,
        1usize..20,
        1u32..300,
        any::<u64>(),
        0u32..50,
        0usize..3,
        1u32..400,
        any::<bool>(),
        (0usize..3, 0usize..70, 1u8..=64, 1usize..=8),
    );
    let compared = Cell::new(0usize);
    let histories = Cell::new(0usize);
    let items = Cell::new(0usize);
    runner
        .run(&strategy, |(n, dim, n_features, n_sources, clusters, creators, seed, k, depth, keep, interaction, h)| {
            let spec = synth::Spec { n, dim, n_features, n_sources, clusters, creators, regions: 8, seed };
            let hidden: Vec<usize> = [32, 16, 8][..depth].to_vec();
            // One case in three has a history block, and most contexts a history.
            let (block, entries, length, heads) = h;
            let model = if block == 0 {
                histories.set(histories.get() + 1);
                synth::model_with_history(&spec, &hidden, keep, seed ^ 1, length, heads)
            } else {
                synth::model_with_interaction(&spec, &hidden, keep, seed ^ 1, interaction)
            };
            let model_bytes = model.encode().expect("model encodes");
            let bundle_bytes = synth::bundle(&spec, 1_700_000_000_000);
            let ctx = synth::context_with_history(&spec, k, 1_700_000_000_000, seed ^ 2, entries);
            let mut inst = inst.borrow_mut();
            inst.load_model(&model_bytes).expect("guest loads the model");
            let mut ctx_bytes = Vec::new();
            abi::encode_context(&ctx, &mut ctx_bytes);
            let guest = inst.rank_raw(&bundle_bytes, &ctx_bytes).expect("guest ranks");
            let want = native(&model_bytes, &bundle_bytes, &ctx);
            prop_assert_eq!(guest.len(), want.len());
            prop_assert!(guest == want, "guest and native differ for spec {:?}", spec);
            compared.set(compared.get() + 1);
            items.set(items.get() + abi::decode_result(&guest).expect("decodes").0.items.len());
            Ok(())
        })
        .expect("bit-identical on every case");
    println!(
        "compared {} randomized rankings ({} ranked items, {} with a history block): all bit-identical",
        compared.get(),
        items.get(),
        histories.get()
    );
    assert_eq!(compared.get(), 300);
    assert!(histories.get() > 50, "only {} cases had a history block", histories.get());
}

#[test]
fn guest_reports_typed_errors_and_keeps_working() {
    let m = module();
    let mut inst = m.instantiate().expect("instantiate");
    let spec = synth::Spec::new(50, 16, 9);
    let bundle = synth::bundle(&spec, 0);
    let mut ctx = Vec::new();
    abi::encode_context(&synth::context(&spec, 5, 1_000, 9), &mut ctx);

    let err = inst.rank_raw(&bundle, &ctx).expect_err("no model yet");
    assert!(matches!(err, GuestError::Call { status: Status::NoModel, .. }), "{err}");

    let err = inst.load_model(b"definitely not a model").expect_err("bad model");
    assert!(
        matches!(err, GuestError::Call { status: Status::BadModel, ref message } if message.contains("model")),
        "{err}"
    );

    let model = synth::model(&spec, &[8], 20, 9).encode().expect("encodes");
    inst.load_model(&model).expect("loads");
    let err = inst.rank_raw(&bundle[..bundle.len() - 3], &ctx).expect_err("truncated bundle");
    assert!(
        matches!(err, GuestError::Call { status: Status::BadBundle, ref message } if message.contains("length")),
        "{err}"
    );
    let err = inst.rank_raw(&bundle, &ctx[..ctx.len() - 1]).expect_err("truncated context");
    assert!(matches!(err, GuestError::Call { status: Status::BadContext, .. }), "{err}");

    let other = synth::Spec { n_features: 3, ..spec.clone() };
    let err = inst.rank_raw(&synth::bundle(&other, 0), &ctx).expect_err("schema mismatch");
    assert!(
        matches!(err, GuestError::Call { status: Status::Incompatible, ref message } if message.contains("schema")),
        "{err}"
    );

    // After all of that, the same instance still ranks correctly.
    let out = inst.rank_raw(&bundle, &ctx).expect("ranks");
    assert_eq!(abi::decode_result(&out).expect("decodes").0.items.len(), 5);
}
