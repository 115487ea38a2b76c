use std::collections::HashSet;

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

use super::*;

const P: Params = Params { m: 16, ef_construction: 100, seed: 7 };

/// `n` unit vectors around 20 centres.
fn clustered(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = Pcg64::seed_from_u64(seed);
    let centres: Vec<Vec<f32>> = (0..20).map(|_| (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect()).collect();
    (0..n)
        .map(|i| {
            let c = &centres[i % centres.len()];
            let v: Vec<f32> = c.iter().map(|x| x + rng.random_range(-0.3f32..0.3)).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
            v.into_iter().map(|x| x / norm).collect()
        })
        .collect()
}

fn build(data: &[Vec<f32>]) -> Hnsw {
    let mut idx = Hnsw::new(data[0].len(), data.len(), P).expect("index");
    let ins = idx.inserter();
    std::thread::scope(|s| {
        for part in 0..4 {
            let ins = &ins;
            s.spawn(move || {
                for (label, v) in data.iter().enumerate().skip(part).step_by(4) {
                    ins.add(label, v).expect("insert");
                }
            });
        }
    });
    idx
}

/// The exact best `k` labels for which `keep` holds.
fn exact(data: &[Vec<f32>], q: &[f32], k: usize, keep: impl Fn(usize) -> bool) -> Vec<usize> {
    let mut all: Vec<(f32, usize)> = data
        .iter()
        .enumerate()
        .filter(|(l, _)| keep(*l))
        .map(|(l, v)| (1.0 - v.iter().zip(q).map(|(a, b)| a * b).sum::<f32>(), l))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    all.into_iter().take(k).map(|(_, l)| l).collect()
}

fn recall(got: &[(usize, f32)], want: &[usize]) -> f64 {
    let want: HashSet<usize> = want.iter().copied().collect();
    got.iter().filter(|(l, _)| want.contains(l)).count() as f64 / want.len().max(1) as f64
}

#[test]
fn parallel_inserts_reach_high_recall_with_and_without_a_filter() {
    let data = clustered(4000, 24, 1);
    let mut idx = build(&data);
    idx.set_ef(200);
    assert_eq!((idx.len(), idx.deleted(), idx.connectivity()), (4000, 0, 16));
    let queries = clustered(100, 24, 2);
    let (mut plain, mut filtered) = (0.0, 0.0);
    for q in &queries {
        let got = idx.search(q, 10).expect("search");
        assert_eq!(got.len(), 10);
        assert!(got.windows(2).all(|w| w[0].1 <= w[1].1), "closest first");
        plain += recall(&got, &exact(&data, q, 10, |_| true));
        // One label in seven: a filtered query still returns k results.
        let keep = |l: usize| l % 7 == 3;
        let got = idx.search_filtered(q, 10, keep).expect("search");
        assert_eq!(got.len(), 10, "a filtered query returns k results");
        assert!(got.iter().all(|(l, _)| keep(*l)));
        filtered += recall(&got, &exact(&data, q, 10, keep));
    }
    let (plain, filtered) = (plain / 100.0, filtered / 100.0);
    println!("recall@10: {plain:.3} unfiltered, {filtered:.3} filtered (kernel {})", idx.kernel());
    assert!(plain >= 0.95 && filtered >= 0.95, "recall {plain} / {filtered}");
}

#[test]
fn deleted_labels_are_never_returned_but_still_route() {
    let data = clustered(2000, 8, 3);
    let mut idx = build(&data);
    idx.set_ef(50);
    for label in (0..2000).filter(|l| l % 2 == 0) {
        idx.mark_deleted(label).expect("delete");
    }
    assert_eq!(idx.deleted(), 1000);
    assert!(matches!(idx.mark_deleted(0), Err(Error::Native(_))), "deleting twice is an error");
    assert!(matches!(idx.mark_deleted(99_999), Err(Error::Native(_))), "an unknown label is an error");
    for q in clustered(20, 8, 4) {
        let got = idx.search(&q, 10).expect("search");
        assert_eq!(got.len(), 10);
        assert!(got.iter().all(|(l, _)| l % 2 == 1), "a deleted label came back");
    }
}

#[test]
fn a_saved_graph_loads_to_the_same_answers() {
    let data = clustered(1500, 12, 5);
    let mut idx = build(&data);
    idx.mark_deleted(17).expect("delete");
    let mut bytes = Vec::new();
    idx.save_into(&mut bytes).expect("save");
    let mut back = Hnsw::load(12, &bytes).expect("load");
    assert_eq!((back.len(), back.deleted(), back.capacity()), (idx.len(), idx.deleted(), idx.capacity()));
    idx.set_ef(40);
    back.set_ef(40);
    for q in clustered(20, 12, 6) {
        assert_eq!(back.search(&q, 10), idx.search(&q, 10));
        assert_eq!(back.search_filtered(&q, 5, |l| l < 500), idx.search_filtered(&q, 5, |l| l < 500));
    }
    // It keeps growing after a load.
    back.reserve(1600).expect("reserve");
    back.add(5000, &data[0]).expect("insert after load");
    assert_eq!(back.search(&data[0], 2).expect("search").len(), 2);

    let mut empty = Vec::new();
    Hnsw::new(3, 10, P).expect("index").save_into(&mut empty).expect("save");
    let loaded = Hnsw::load(3, &empty).expect("an empty graph loads");
    assert_eq!(loaded.search(&[1.0, 0.0, 0.0], 3), Ok(Vec::new()));
}

#[test]
fn damaged_snapshots_are_errors_never_graphs() {
    let data = clustered(300, 6, 7);
    let idx = build(&data);
    let mut bytes = Vec::new();
    idx.save_into(&mut bytes).expect("save");
    let err = |b: &[u8], dim: usize| match Hnsw::load(dim, b) {
        Err(Error::Native(m)) => m,
        other => panic!("loaded a damaged snapshot: {other:?}"),
    };
    // Every cut, through the header, the base layer and the upper layers.
    for cut in (0..bytes.len()).step_by(97).chain([bytes.len() - 1]) {
        let m = err(&bytes[..cut], 6);
        assert!(m.contains("snapshot"), "cut at {cut}: {m}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(err(&longer, 6).contains("after the graph"));
    assert!(err(&bytes, 7).contains("layout"), "another dimension is refused");
    // A neighbour id beyond the graph (the first base-layer list's first entry).
    let header = 8 * 6 + 4 + 4 + 8 * 3 + 8 + 8;
    let mut bad = bytes.clone();
    bad[header + 4..header + 8].copy_from_slice(&u32::MAX.to_le_bytes());
    // The first node has neighbours, or the edit above would not be read.
    assert!(u16::from_le_bytes([bytes[header], bytes[header + 1]]) > 0);
    assert!(err(&bad, 6).contains("does not exist"));
    // A list longer than the degree.
    let mut bad = bytes.clone();
    bad[header..header + 2].copy_from_slice(&1000u16.to_le_bytes());
    assert!(err(&bad, 6).contains("more neighbours"));
}

#[test]
fn bad_calls_are_errors() {
    let mut idx = Hnsw::new(4, 2, P).expect("index");
    assert_eq!(idx.add(0, &[1.0, 2.0]), Err(Error::Dimension { got: 2, want: 4 }));
    assert_eq!(idx.search(&[1.0; 5], 1), Err(Error::Dimension { got: 5, want: 4 }));
    idx.add(0, &[1.0, 0.0, 0.0, 0.0]).expect("insert");
    idx.add(1, &[0.0, 1.0, 0.0, 0.0]).expect("insert");
    match idx.add(2, &[0.0, 0.0, 1.0, 0.0]) {
        Err(Error::Native(m)) => assert!(m.contains("exceeds"), "{m}"),
        other => panic!("a full graph took a vector: {other:?}"),
    }
    idx.reserve(3).expect("reserve");
    idx.add(2, &[0.0, 0.0, 1.0, 0.0]).expect("insert after reserve");
    assert_eq!(idx.search(&[0.0, 0.0, 1.0, 0.0], 1).expect("search")[0].0, 2);
    assert!(matches!(Hnsw::new(0, 1, P), Err(Error::Native(_))));
    assert!(matches!(Hnsw::new(4, 1, Params { m: 1, ..P }), Err(Error::Native(_))));
}

#[test]
#[should_panic(expected = "filter boom")]
fn a_panicking_filter_panics_in_the_caller() {
    let data = clustered(100, 4, 8);
    let idx = build(&data);
    let _ = idx.search_filtered(&data[0], 5, |l| if l > 0 { panic!("filter boom") } else { true });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the graph finds: closest first, distances exactly `1 − a·b`,
    /// labels unique, accepted by the filter, never deleted, at most `k`.
    #[test]
    fn search_results_are_well_formed(
        n in 1usize..120,
        k in 1usize..20,
        modulus in 1usize..5,
        deleted in prop::collection::hash_set(0usize..120, 0..30),
        seed in 0u64..1000,
    ) {
        let data = clustered(n, 5, seed);
        let mut idx = Hnsw::new(5, n, Params { m: 4, ef_construction: 20, seed: 1 }).expect("index");
        for (l, v) in data.iter().enumerate() {
            idx.add(l, v).expect("insert");
        }
        for &l in deleted.iter().filter(|&&l| l < n) {
            idx.mark_deleted(l).expect("delete");
        }
        let q = &clustered(1, 5, seed + 1)[0];
        let keep = |l: usize| l.is_multiple_of(modulus);
        let got = idx.search_filtered(q, k, keep).expect("search");
        prop_assert!(got.len() <= k);
        prop_assert!(got.windows(2).all(|w| w[0].1 <= w[1].1));
        let mut labels = HashSet::new();
        for (l, d) in &got {
            prop_assert!(keep(*l) && !deleted.contains(l) && labels.insert(*l));
            prop_assert_eq!(*d, 1.0 - idx.dot(q, &data[*l]));
        }
    }
}
