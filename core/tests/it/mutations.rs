//! Decoder properties that start from valid encodings and mutate them.
//!
//! Random bytes almost never get past a magic check; these start from a
//! valid bundle, model, session or context, apply a few structured
//! mutations (overwrite a byte, flip a bit, write an interesting integer over
//! a header field, insert, delete, truncate, extend), and, most of the time,
//! repair the checksum so the mutation reaches the structure checks behind it.
//! Every decoded value must then pass the checkers of `edgewise_core::check`
//! (canonical re-encoding, every cell valid), and the decoders must never
//! panic. `mutations_reach_every_decoder_branch` shows they do reach: over a
//! fixed seed it collects which error each mutant got, and requires every
//! kind of error each decoder can give.

use std::collections::BTreeMap;

use edgewise_core::rank::RankContext;
use edgewise_core::session::{SessionConfig, SessionState, Signal};
use edgewise_core::{abi, check, synth};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use rand::{Rng, SeedableRng};

/// One structured edit.
#[derive(Debug, Clone)]
enum Mutation {
    Overwrite(usize, u8),
    FlipBit(usize, u8),
    /// A little-endian integer from [`INTERESTING`] over 1, 2, 4 or 8 bytes.
    Field(usize, u8, usize),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
    Extend(Vec<u8>),
}

const INTERESTING: [u64; 10] = [0, 1, 2, 0x7f, 0xff, 0x100, 0xffff, 0x7fff_ffff, 0xffff_ffff, u64::MAX];

fn apply(b: &mut Vec<u8>, m: &Mutation) {
    let n = b.len().max(1);
    match m {
        Mutation::Overwrite(at, v) => {
            if let Some(x) = b.get_mut(at % n) {
                *x = *v;
            }
        }
        Mutation::FlipBit(at, bit) => {
            if let Some(x) = b.get_mut(at % n) {
                *x ^= 1 << (bit % 8);
            }
        }
        Mutation::Field(at, width, which) => {
            let w = [1usize, 2, 4, 8][usize::from(*width) % 4];
            let v = INTERESTING[which % INTERESTING.len()].to_le_bytes();
            let at = at % n;
            for (i, byte) in v.iter().take(w).enumerate() {
                if let Some(x) = b.get_mut(at + i) {
                    *x = *byte;
                }
            }
        }
        Mutation::Insert(at, bytes) => {
            let at = at % (b.len() + 1);
            b.splice(at..at, bytes.iter().copied());
        }
        Mutation::Delete(at, len) => {
            let at = at % n;
            let end = (at + len % 64).min(b.len());
            if at < end {
                b.drain(at..end);
            }
        }
        Mutation::Truncate(len) => b.truncate(len % n),
        Mutation::Extend(bytes) => b.extend_from_slice(bytes),
    }
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // Offsets are biased to the first 160 bytes, where the headers are.
    let at = prop_oneof![3 => 0usize..160, 1 => any::<usize>()];
    prop_oneof![
        4 => (at.clone(), any::<u8>()).prop_map(|(a, v)| Mutation::Overwrite(a, v)),
        2 => (at.clone(), any::<u8>()).prop_map(|(a, b)| Mutation::FlipBit(a, b)),
        4 => (at.clone(), any::<u8>(), any::<usize>()).prop_map(|(a, w, i)| Mutation::Field(a, w, i)),
        1 => (at.clone(), proptest::collection::vec(any::<u8>(), 1..9)).prop_map(|(a, v)| Mutation::Insert(a, v)),
        1 => (at, any::<usize>()).prop_map(|(a, l)| Mutation::Delete(a, l)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => proptest::collection::vec(any::<u8>(), 1..9).prop_map(Mutation::Extend),
    ]
}

fn spec() -> synth::Spec {
    synth::Spec { n: 12, dim: 8, n_features: 3, n_sources: 5, clusters: 3, creators: 4, regions: 4, seed: 1 }
}

/// A personal bundle; with `user`, carrying its user's embedding (version 3).
fn valid_bundle(user: bool) -> Vec<u8> {
    let plain = synth::bundle(&spec(), 7);
    if user { synth::with_user_embedding(&plain, &[0.5, -0.25, 1.0, 0.0, 2.0, -1.0, 0.125, 0.75]) } else { plain }
}

fn valid_model(history: bool) -> Vec<u8> {
    if history {
        synth::model_with_history(&spec(), &[4, 3], 10, 1, 4, 2).encode().expect("encodes")
    } else {
        synth::model(&spec(), &[4, 3], 10, 1).encode().expect("encodes")
    }
}

fn valid_session() -> Vec<u8> {
    let cfg = SessionConfig::default();
    let mut s = SessionState::new(8);
    s.observe(&cfg, Signal::Like, &[0.5; 8], 100).expect("observe");
    s.observe(&cfg, Signal::Skip, &[-0.25; 8], 200).expect("observe");
    s.encode()
}

fn valid_context(history: bool) -> Vec<u8> {
    let mut ctx: RankContext = synth::context_with_history(&spec(), 5, 1_000, 3, if history { 3 } else { 0 });
    if ctx.session.dim() == 0 {
        ctx.session = SessionState::decode(&valid_session()).expect("session").0;
    }
    let mut out = Vec::new();
    abi::encode_context(&ctx, &mut out);
    out
}

fn mutate(mut b: Vec<u8>, edits: &[Mutation], fix: bool, fix_crc: fn(&mut [u8]) -> bool) -> Vec<u8> {
    for m in edits {
        apply(&mut b, m);
    }
    if fix {
        fix_crc(&mut b);
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4_000))]

    #[test]
    fn mutated_bundles_decode_to_valid_bundles_or_fail_cleanly(
        edits in proptest::collection::vec(mutation(), 1..4), fix in prop::bool::weighted(0.8), user in any::<bool>()
    ) {
        let b = mutate(valid_bundle(user), &edits, fix, check::fix_bundle_crc);
        let _ = check::bundle_bytes(&b);
        let _ = check::bundle_prechecked_bytes(&b);
    }

    #[test]
    fn mutated_models_decode_to_valid_models_or_fail_cleanly(
        edits in proptest::collection::vec(mutation(), 1..4), fix in prop::bool::weighted(0.8), history in any::<bool>()
    ) {
        let _ = check::model_bytes(&mutate(valid_model(history), &edits, fix, check::fix_model_crc));
    }

    #[test]
    fn mutated_sessions_and_contexts_decode_canonically_or_fail_cleanly(
        edits in proptest::collection::vec(mutation(), 1..4), fix in prop::bool::weighted(0.8), history in any::<bool>()
    ) {
        let _ = check::session_bytes(&mutate(valid_session(), &edits, fix, check::fix_session_crc));
        let _ = check::context_bytes(&mutate(valid_context(history), &edits, fix, check::fix_context_crc));
        let stored = synth::context_with_history(&spec(), 5, 1_000, 3, 4).history.encode();
        let _ = check::history_bytes(&mutate(stored, &edits, fix, |b| edgewise_core::history::ENVELOPE.reseal(b)));
    }

    #[test]
    fn mutated_rank_inputs_rank_or_fail_cleanly(
        which in 0usize..3, edits in proptest::collection::vec(mutation(), 1..3), fix in prop::bool::weighted(0.8),
        history in any::<bool>(), user in any::<bool>()
    ) {
        let (mut b, mut m, mut c) = (valid_bundle(user), valid_model(history), valid_context(history));
        match which {
            0 => b = mutate(b, &edits, fix, check::fix_bundle_crc),
            1 => m = mutate(m, &edits, fix, check::fix_model_crc),
            _ => c = mutate(c, &edits, fix, check::fix_context_crc),
        }
        let _ = check::rank_bytes(&b, &m, &c);
    }
}

/// The error's variant path, e.g. `Format(ChecksumMismatch` or `NonFinite`.
fn kind(e: &dyn std::fmt::Debug) -> String {
    let d = format!("{e:?}");
    let end = d.find([' ', '{']).unwrap_or(d.len());
    d[..end].trim_end_matches('(').to_string()
}

/// Decodes 20,000 mutants of `valid` and requires that every kind of error in
/// `expected` (and at least one acceptance) was reached.
fn reach(
    what: &str,
    valid: &[u8],
    fix_crc: fn(&mut [u8]) -> bool,
    decode: &dyn Fn(&[u8]) -> Result<(), String>,
    expected: &[&str],
    rng: &mut rand_pcg::Pcg64,
) {
    let mut seen = BTreeMap::new();
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    for _ in 0..20_000 {
        let n = rng.random_range(1..4);
        let edits: Vec<Mutation> =
            (0..n).map(|_| mutation().new_tree(&mut runner).expect("a mutation").current()).collect();
        let fix = rng.random_bool(0.8);
        let b = mutate(valid.to_vec(), &edits, fix, fix_crc);
        let k = decode(&b).err().unwrap_or_else(|| "accepted".to_string());
        *seen.entry(k).or_insert(0) += 1;
    }
    println!("{what}: {seen:?}");
    for k in ["accepted"].iter().chain(expected) {
        assert!(seen.contains_key(*k), "no {what} mutant reached {k}: {seen:?}");
    }
}

#[test]
fn mutations_reach_every_decoder_branch() {
    let mut rng = rand_pcg::Pcg64::seed_from_u64(14);
    reach(
        "bundle",
        &valid_bundle(false),
        check::fix_bundle_crc,
        &|b| check::bundle_bytes(b).map(drop).map_err(|e| kind(&e)),
        &[
            "Format(TooShort",
            "Format(BadMagic",
            "Format(UnsupportedVersion",
            "Format(UnknownFlags",
            "Format(BadHeaderLen",
            "Format(ReservedNonZero",
            "Format(OutOfRange",
            "Format(LengthMismatch",
            "Format(BadTrailer",
            "Format(ChecksumMismatch",
            "Format(Malformed",
            "NonFinite",
            "NegativeScale",
            "SourceMismatch",
        ],
        &mut rng,
    );
    reach(
        "bundle with a user embedding",
        &valid_bundle(true),
        check::fix_bundle_crc,
        &|b| check::bundle_bytes(b).map(drop).map_err(|e| kind(&e)),
        &["Format(Malformed", "Format(LengthMismatch", "NonFinite"],
        &mut rng,
    );
    reach(
        "model",
        &valid_model(false),
        check::fix_model_crc,
        &|b| check::model_bytes(b).map(drop).map_err(|e| kind(&e)),
        &[
            "Format(TooShort",
            "Format(BadMagic",
            "Format(UnsupportedVersion",
            "Format(UnknownFlags",
            "Format(BadHeaderLen",
            "Format(ReservedNonZero",
            "Format(OutOfRange",
            "Format(Truncated",
            "Format(TrailingBytes",
            "Format(BadTrailer",
            "Format(ChecksumMismatch",
            "Format(NonFinite",
            "LayerShape",
        ],
        &mut rng,
    );
    reach(
        "session",
        &valid_session(),
        check::fix_session_crc,
        &|b| SessionState::decode(b).map(drop).map_err(|e| kind(&e)),
        &[
            "Format(TooShort",
            "Format(BadMagic",
            "Format(UnsupportedVersion",
            "Format(ReservedNonZero",
            "Format(OutOfRange",
            "Format(Truncated",
            "Format(ChecksumMismatch",
            "Format(Malformed",
            "Format(NonFinite",
        ],
        &mut rng,
    );
    reach(
        "context",
        &valid_context(false),
        check::fix_context_crc,
        &|b| abi::decode_context(b, &mut RankContext::default()).map_err(|e| kind(&e)),
        &["TooShort", "BadMagic", "UnsupportedVersion", "UnknownFlags", "ReservedNonZero", "Malformed"],
        &mut rng,
    );
}
