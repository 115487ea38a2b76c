//! Shared by the end-to-end tests and the feed benchmark (`benches/feed.rs`
//! includes this file): a real origin with items, events and a model, the
//! edge in front of it, user tokens both accept, and hostile guest modules
//! written in WAT.

// The benchmark uses only part of this file.
#![allow(dead_code)]

use edgewise_core::abi;
use edgewise_wire::paths;

/// A module with the core guest's exports whose `ew_rank` runs `body` (the
/// edge crate's sandbox tests have the same helper, with more knobs).
pub(crate) fn hostile(body: &str) -> Vec<u8> {
    let wat = format!(
        r#"(module
  (memory (export "memory") 2)
  (func (export "ew_abi_version") (result i32) i32.const {version})
  (func (export "ew_alloc") (param i32) (result i32) i32.const 1024)
  (func (export "ew_free") (param i32 i32))
  (func (export "ew_load_model") (param i32 i32) (result i32) i32.const 0)
  (func (export "ew_rank") (param i32 i32 i32 i32) (result i32) {body})
  (func (export "ew_result_ptr") (result i32) i32.const 0)
  (func (export "ew_result_len") (result i32) i32.const 0)
  (func (export "ew_error_ptr") (result i32) i32.const 0)
  (func (export "ew_error_len") (result i32) i32.const 0))"#,
        version = abi::ABI_VERSION
    );
    wat::parse_str(&wat).expect("valid WAT")
}

/// The request time of the feed fixtures, ms since the epoch.
pub(crate) const NOW: u64 = 1_700_000_000_000;

/// How far from the edge's clock the fixtures' `now_ms` may be: they are dated
/// 2023 (so that rankings are reproducible), years behind any real clock.
pub(crate) const FIXTURE_CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(20 * 365 * 86_400);

/// The user-token secret the fixture origin and the test edges share.
pub(crate) const USER_SECRET: &str = "feed-test-user-secret-of-32-bytes!!";

/// The ingest key of the fixture origin.
pub(crate) const INGEST_KEY: &str = "ingest";

/// The user-token configuration of the fixture origin and edges.
pub(crate) fn user_tokens() -> edgewise_http::auth::UserTokenConfig {
    edgewise_http::auth::UserTokenConfig { hmac_secrets: vec![USER_SECRET.into()], ..Default::default() }
}

/// A token for `user`, valid for five minutes from now.
pub(crate) fn user_token(user: u64) -> String {
    edgewise_http::auth::mint_hs256(USER_SECRET.as_bytes(), &edgewise_http::auth::TokenSpec::new(user, 300))
        .expect("a token mints")
}

/// A real origin for feed tests and benches: items, one user's (7) click
/// events, and a registered model, all built from these numbers.
#[derive(Debug, Clone)]
pub(crate) struct OriginFixture {
    /// Embedding dimension.
    pub(crate) dim: usize,
    /// Items `1..=items`.
    pub(crate) items: u64,
    /// Item `i`'s creator is `i % creators`.
    pub(crate) creators: u64,
    /// Item `i` leans towards embedding axis `i % clusters`.
    pub(crate) clusters: u64,
    /// User 7 clicked items `stride·j + 1` for `j < events`.
    pub(crate) events: u64,
    /// See `events`.
    pub(crate) stride: u64,
    /// Origin index shards (0: one per core).
    pub(crate) shards: usize,
    /// The model's hidden layer width.
    pub(crate) hidden: usize,
    /// The model's pre-rank keep.
    pub(crate) prerank_keep: u32,
    /// The model's per-creator cap (0: none).
    pub(crate) creator_cap: u32,
}

impl OriginFixture {
    /// A deterministic embedding for item `i`.
    pub(crate) fn embedding(&self, i: u64) -> Vec<f64> {
        (0..self.dim)
            .map(|d| if d as u64 == i % self.clusters { 1.0 } else { ((i * 31 + d as u64 * 7) % 11) as f64 / 40.0 })
            .collect()
    }

    /// The model registered at the origin: pre-rank, an MLP with one hidden layer, no interaction inputs.
    pub(crate) fn model(&self, schema_hash: u64) -> edgewise_core::model::Model {
        use edgewise_core::model::{Diversity, Layer, Model, Platt, PreRanker};
        let (inputs, hidden) = (3 + 2 + 7, self.hidden);
        Model {
            feature_schema_hash: schema_hash,
            dim: self.dim as u16,
            n_features: 2,
            n_sources: 7,
            interaction: false,
            prerank_keep: self.prerank_keep,
            prerank: PreRanker {
                bias: 0.0,
                w_dot: 1.0,
                w_retrieval: 0.5,
                w_features: vec![0.2, 0.1],
                w_sources: vec![0.0; 7],
            },
            mlp: vec![
                Layer {
                    inputs,
                    outputs: hidden,
                    weights: (0..inputs * hidden).map(|i| ((i % 7) as f32 - 3.0) / 10.0).collect(),
                    bias: vec![0.1; hidden],
                },
                Layer {
                    inputs: hidden,
                    outputs: 1,
                    weights: (0..hidden).map(|i| ((i % 5) as f32 - 2.0) / 10.0).collect(),
                    bias: vec![0.0],
                },
            ],
            calibration: Platt { a: 1.0, b: 0.0 },
            diversity: Diversity { mmr_lambda: 0.9, creator_cap: self.creator_cap },
            history: None,
        }
    }

    /// Starts the origin on 127.0.0.1 (data in a temp directory named after
    /// `name`) with admin key `admin`, ingest key [`INGEST_KEY`] and user
    /// tokens signed with [`USER_SECRET`], and loads the items, events and model;
    /// returns its base URL.
    pub(crate) async fn start(&self, name: &str) -> anyhow::Result<String> {
        use serde_json::{Value, json};
        let dir = std::env::temp_dir().join(format!("ew-edge-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut cfg = edgewise_origin::Config { data_dir: dir, ..Default::default() };
        cfg.index.dim = self.dim;
        cfg.index.shards = self.shards;
        cfg.auth.admin_keys = vec!["admin".into()];
        cfg.auth.ingest_keys = vec![INGEST_KEY.into()];
        cfg.auth.user_tokens = user_tokens();
        let schema = cfg.schema_hash();
        let state = edgewise_origin::open(cfg)?;
        edgewise_origin::recover(&state, |_, _| {})?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let origin = format!("http://{}", listener.local_addr()?);
        tokio::spawn(edgewise_origin::serve(state, listener, std::future::pending()));
        let client = reqwest::Client::new();
        let items: Vec<Value> = (1..=self.items)
            .map(|i| {
                json!({"id": i, "embedding": self.embedding(i), "creator": i % self.creators, "categories": [i % 5],
                "created_at": NOW - i * 60_000, "features": {"popularity": (i % 10) as f64 / 10.0}})
            })
            .collect();
        let events: Vec<Value> = (0..self.events)
            .map(|j| {
                json!({"event_id": format!("e{j}"), "user": 7, "item": self.stride * j + 1, "kind": "click",
                "time": NOW - 1000 + j, "region": 0})
            })
            .collect();
        for r in [
            client.put(format!("{origin}{}", paths::ITEMS)).bearer_auth(INGEST_KEY).json(&items),
            client.post(format!("{origin}{}", paths::EVENTS)).bearer_auth(INGEST_KEY).json(&events),
            client.put(format!("{origin}{}", paths::MODELS)).bearer_auth("admin").body(self.model(schema).encode()?),
        ] {
            let r = r.send().await?;
            anyhow::ensure!(r.status().is_success(), "origin set-up: {}", r.text().await.unwrap_or_default());
        }
        Ok(origin)
    }
}

/// The end-to-end tests' fixture (and the npm client tests' `stack`), small
/// enough for many tests: 300 items of dimension 8.
pub(crate) const SMALL: OriginFixture = OriginFixture {
    dim: 8,
    items: 300,
    creators: 13,
    clusters: 4,
    events: 6,
    stride: 4,
    shards: 1,
    hidden: 4,
    prerank_keep: 100,
    creator_cap: 0,
};

/// Serves `state`'s edge on 127.0.0.1; returns its base URL.
pub(crate) async fn serve_edge(state: std::sync::Arc<edgewise_edge::server::EdgeState>) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let edge = format!("http://{}", listener.local_addr()?);
    tokio::spawn(edgewise_edge::server::serve(state, listener, std::future::pending()));
    Ok(edge)
}
