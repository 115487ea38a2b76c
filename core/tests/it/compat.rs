//! Format compatibility: committed files written by every supported format
//! version must keep decoding, and must keep ranking to the committed result.
//!
//! `core/tests/golden/v<N>/` holds a bundle, a model, a context and the
//! expected result, written by version N of the code. The v3 bundle carries
//! its user's embedding and the v3 context has no base: it ranks to the v2
//! result, the v2 context's base being that embedding. Regenerate the current
//! version's files (only when the format or the ranking *intentionally*
//! changes) with `EDGEWISE_BLESS=1 cargo test -p edgewise-core --test it compat`.

use std::path::PathBuf;

use edgewise_core::abi::{self, Engine, Status};
use edgewise_core::bundle::{self, Bundle, Scope};
use edgewise_core::model::{self, Model};
use edgewise_core::synth;

fn dir(version: u16) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("golden").join(format!("v{version}"))
}

fn spec() -> synth::Spec {
    synth::Spec { n: 40, dim: 16, n_features: 3, n_sources: 5, clusters: 4, creators: 6, regions: 4, seed: 2024 }
}

fn bless() {
    let d = dir(bundle::VERSION);
    std::fs::create_dir_all(&d).expect("create golden dir");
    let s = spec();
    let ctx = synth::context(&s, 8, 1_700_000_100_000, 2025);
    let b = synth::with_user_embedding(&synth::bundle(&s, 1_700_000_000_000), &ctx.base);
    let m = synth::model(&s, &[8, 4], 25, 2024).encode().expect("encodes");
    let mut c = Vec::new();
    abi::encode_context(&edgewise_core::rank::RankContext { base: Vec::new(), ..ctx }, &mut c);
    let mut e = Engine::new();
    assert_eq!(e.load_model(&m), Status::Ok);
    assert_eq!(e.rank(&b, &c), Status::Ok, "{}", e.error());
    std::fs::write(d.join("bundle.ewb"), &b).expect("write");
    std::fs::write(d.join("model.ewm"), &m).expect("write");
    std::fs::write(d.join("context.ewcx"), &c).expect("write");
    std::fs::write(d.join("result.ewrs"), e.result()).expect("write");
}

/// The history golden files: a version-2 model (with a history block) and a
/// version-2 context (with a history), over the current bundle format.
fn history_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("golden").join("history-v2")
}

fn bless_history() {
    let d = history_dir();
    std::fs::create_dir_all(&d).expect("create golden dir");
    let s = spec();
    let b = synth::bundle(&s, 1_700_000_000_000);
    let m = synth::model_with_history(&s, &[8, 4], 25, 2024, 8, 2).encode().expect("encodes");
    let mut c = Vec::new();
    abi::encode_context(&synth::context_with_history(&s, 8, 1_700_000_100_000, 2025, 10), &mut c);
    let mut e = Engine::new();
    assert_eq!(e.load_model(&m), Status::Ok);
    assert_eq!(e.rank(&b, &c), Status::Ok, "{}", e.error());
    for (name, bytes) in [("bundle.ewb", &b[..]), ("model.ewm", &m), ("context.ewcx", &c), ("result.ewrs", e.result())]
    {
        std::fs::write(d.join(name), bytes).expect("write");
    }
}

#[test]
fn history_golden_files_read_and_rank() {
    if std::env::var_os("EDGEWISE_BLESS").is_some() {
        bless_history();
    }
    let p = |n: &str| {
        let p = history_dir().join(n);
        std::fs::read(&p)
            .unwrap_or_else(|e| panic!("golden file {} is missing ({e}); see this file's docs", p.display()))
    };
    let (b, m, c, want) = (p("bundle.ewb"), p("model.ewm"), p("context.ewcx"), p("result.ewrs"));
    assert_eq!((m[8], c[4]), (2, 2), "a history model and context are version 2");
    let model = Model::decode(&m).expect("golden model decodes");
    assert_eq!(model.history.as_ref().map(|h| (h.length, h.heads.len())), Some((8, 2)));
    let mut e = Engine::new();
    assert_eq!(e.load_model(&m), Status::Ok, "{}", e.error());
    assert_eq!(e.rank(&b, &c), Status::Ok, "{}", e.error());
    assert_eq!(e.result(), &want[..], "the history golden files no longer rank to the committed result");
    // Today's encoder writes a context without a history exactly as the
    // committed version-1 contexts were written.
    let mut v1 = Vec::new();
    abi::encode_context(&synth::context(&spec(), 8, 1_700_000_100_000, 2025), &mut v1);
    assert_eq!(v1, read(1, "context.ewcx"), "a context without history is no longer the v1 bytes");
    let plain = synth::model(&spec(), &[8, 4], 25, 2024).encode().expect("encodes");
    assert_eq!(plain, read(1, "model.ewm"), "a model without history is no longer the v1 bytes");
    assert_eq!(
        synth::bundle(&spec(), 1_700_000_000_000),
        read(bundle::PLAIN_VERSION, "bundle.ewb"),
        "a bundle without a user embedding is no longer the v2 bytes"
    );
}

fn read(version: u16, name: &str) -> Vec<u8> {
    let p = dir(version).join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("golden file {} is missing ({e}); see this file's docs", p.display()))
}

#[test]
fn every_supported_version_still_reads_and_ranks() {
    if std::env::var_os("EDGEWISE_BLESS").is_some() {
        bless();
    }
    assert_eq!(bundle::OLDEST_SUPPORTED_VERSION, model::OLDEST_SUPPORTED_VERSION);
    let mut checked = 0;
    for v in bundle::OLDEST_SUPPORTED_VERSION..=bundle::VERSION {
        let b = read(v, "bundle.ewb");
        let m = read(v, "model.ewm");
        let c = read(v, "context.ewcx");
        let want = read(v, "result.ewrs");
        let view = Bundle::decode(&b).expect("golden bundle decodes");
        assert_eq!(view.header().version, v);
        let model = Model::decode(&m).expect("golden model decodes");
        let mut e = Engine::new();
        assert_eq!(e.load_model(&m), Status::Ok, "{}", e.error());
        assert_eq!(e.rank(&b, &c), Status::Ok, "{}", e.error());
        assert_eq!(e.result(), &want[..], "v{v} golden files no longer rank to the committed result");
        let (res, _) = abi::decode_result(&want).expect("golden result decodes");
        assert!(!res.items.is_empty());
        if v == 1 {
            // Spot checks against values fixed when v1 was written.
            assert_eq!(view.len(), 40);
            assert_eq!(view.header().scope, Scope::Personal);
            assert_eq!(view.header().created_at_ms, 1_700_000_000_000);
            assert_eq!(view.header().feature_schema_hash, edgewise_core::feature_schema_hash(&["f0", "f1", "f2"]));
            assert_eq!(view.id(0), 1_000_000);
            assert_eq!(view.id(39), 1_000_039);
            assert_eq!(model.mlp.iter().map(|l| l.outputs).collect::<Vec<_>>(), vec![8, 4, 1]);
            assert_eq!(model.prerank_keep, 25);
            assert_eq!(res.items.len(), 8);
        }
        if v == 2 {
            // Version 2 changed the checksum only: the same rows as the v1
            // files, ranked to the same result.
            let v1 = read(1, "bundle.ewb");
            let body = b.len() - bundle::TRAILER_LEN;
            assert_eq!(b.len(), v1.len());
            assert_eq!(&b[10..body], &v1[10..body], "v2 rows differ from v1's");
            assert_eq!(u16::from_le_bytes([b[8], b[9]]), 2);
            assert_eq!(&b[body..body + 4], &(xxhash_rust::xxh3::xxh3_64(&b[..body]) as u32).to_le_bytes());
            assert_eq!(want, read(1, "result.ewrs"), "v2 ranks differently from v1");
        }
        if v == 3 {
            // Version 3 adds the user's embedding after the v2 rows; ranked
            // without a base in the context it is the v2 context's ranking.
            let v2 = read(2, "bundle.ewb");
            let end = view.layout().embeddings.1;
            assert_eq!((b[10], v2[10]), (0b11, 0b01), "personal, and (v3) with the user's embedding");
            assert_eq!(&b[11..end], &v2[11..end], "v3 rows differ from v2's");
            let mut ctx2 = edgewise_core::rank::RankContext::default();
            abi::decode_context(&read(2, "context.ewcx"), &mut ctx2).expect("v2 context decodes");
            assert_eq!(view.user_embedding().map(Iterator::collect::<Vec<f32>>), Some(ctx2.base));
            assert_eq!(want, read(2, "result.ewrs"), "v3 ranks differently from v2");
        }
        checked += 1;
    }
    assert_eq!(checked, usize::from(bundle::VERSION - bundle::OLDEST_SUPPORTED_VERSION + 1));
    println!("compat: checked {checked} format version(s)");
}
