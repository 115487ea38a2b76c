//! ANN quality: the sharded HNSW index against the exact flat index on a
//! clustered synthetic set of 100,000 items. Recall@10 must be at least 0.95,
//! unfiltered and with a filter that excludes half of the items during search.

use edgewise_core::synth;
use edgewise_origin::config::IndexConfig;
use edgewise_origin::index::{Filter, ShardedIndex};

const N: usize = 100_000;
const DIM: u16 = 32;
const QUERIES: usize = 300;

fn recall(approx: &ShardedIndex, exact: &ShardedIndex, queries: &[Vec<f32>], filter: &Filter<'_>) -> f64 {
    let mut found = 0usize;
    let mut total = 0usize;
    for q in queries {
        let truth: Vec<u64> = exact.search(q, 10, filter).into_iter().map(|h| h.0).collect();
        let got = approx.search(q, 10, filter);
        assert_eq!(got.len(), truth.len(), "a filtered query still returns k results");
        found += got.iter().filter(|h| truth.contains(&h.0)).count();
        total += truth.len();
    }
    found as f64 / total as f64
}

#[test]
fn hnsw_recall_at_10_is_at_least_0_95() {
    let spec = synth::Spec {
        n: N + QUERIES,
        dim: DIM,
        n_features: 0,
        n_sources: 0,
        clusters: 200,
        creators: 1,
        regions: 2,
        seed: 42,
    };
    let mut all = synth::item_embeddings(&spec);
    let queries = all.split_off(N);
    let params = IndexConfig::default().hnsw_params();
    let approx = ShardedIndex::hnsw(2, usize::from(DIM), params).expect("hnsw index");
    let exact = ShardedIndex::flat(2, usize::from(DIM));
    // Half the items are only eligible in region 1.
    let entries: Vec<(u64, Vec<f32>, u32)> =
        all.into_iter().enumerate().map(|(i, v)| (i as u64, v, if i % 2 == 0 { u32::MAX } else { 0b10 })).collect();
    let start = std::time::Instant::now();
    approx.bulk_add(entries.clone());
    let build = start.elapsed();
    exact.bulk_add(entries);
    assert_eq!(approx.len(), N);

    let all_items = |_: u64, _: u32| true;
    let region0 = |_: u64, mask: u32| mask & 1 != 0;
    let r = recall(&approx, &exact, &queries, &all_items);
    let rf = recall(&approx, &exact, &queries, &region0);
    println!(
        "HNSW (M={}, ef_construction={}, ef={}) on {N} clustered items, d={DIM}, 2 shards: \
         recall@10 = {r:.4}, with a 50% filter = {rf:.4} (build {:.1} s)",
        params.connectivity,
        params.expansion_add,
        params.expansion_search,
        build.as_secs_f64()
    );
    assert!(r >= 0.95, "recall@10 = {r}");
    assert!(rf >= 0.95, "filtered recall@10 = {rf}");
}
