//! A real origin and a real edge on loopback, for the npm package's Node and
//! browser tests (`cargo xtask npm-test` starts it): the conformance fixture
//! (300 items of dimension 8, user 7's clicks, a registered model) at the
//! origin, and the edge with the real core guest in front of it, letting any
//! page call it (CORS `*`), keeping no user's personal bundle between feeds
//! (as the per-request edges it is compared with).
//!
//! Prints one JSON line, then serves until its standard input closes:
//!
//! ```json
//! {"origin": "http://127.0.0.1:…", "edge": "http://127.0.0.1:…",
//!  "tokens": {"7": "…", "8": "…"}, "expired": {"7": "…"}, "ingest_key": "ingest"}
//! ```
//!
//! `tokens` live an hour; `expired` ones expired a minute ago (for the
//! client's refresh-on-401 path).
//!
//! `cargo run -p edgewise-conformance --example stack`

use std::io::Read as _;
use std::sync::Arc;
use std::time::Duration;

use edgewise_edge::cache::Cache;
use edgewise_edge::feed::FeedConfig;
use edgewise_edge::guest::{self, GuestModule, Limits};
use edgewise_edge::server::{EdgeState, ServerSettings};
use edgewise_edge::tenants::Tenants;
use edgewise_http::auth::{TokenSpec, mint_hs256};

#[path = "../tests/it/common.rs"]
mod common;

use common::{FIXTURE_CLOCK_SKEW, INGEST_KEY, SMALL as FIXTURE, USER_SECRET, serve_edge, user_tokens};

fn token(user: u64, issued_ago_s: u64, ttl_s: u64) -> anyhow::Result<String> {
    let mut spec = TokenSpec::new(user, ttl_s);
    spec.issued_at = spec.issued_at.saturating_sub(issued_ago_s);
    Ok(mint_hs256(USER_SECRET.as_bytes(), &spec)?)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let origin = FIXTURE.start("npm-stack").await?;
    let path = guest::default_module_path();
    let wasm = std::fs::read(&path)
        .map_err(|e| anyhow::anyhow!("{}: {e} (build it with `cargo xtask guest`)", path.display()))?;
    let limits = Limits::default();
    let engine = guest::sandboxed_engine(&limits)?;
    let module = GuestModule::sandboxed(&engine, &wasm, limits)?;
    let tenants = Arc::new(Tenants::builder().default_module(module, path.display().to_string()).build()?);
    let state = Arc::new(EdgeState::new(
        Cache::new(&origin, 64 << 20, Duration::from_secs(5))?,
        tenants,
        FeedConfig {
            refine_deadline: Duration::from_secs(5),
            candidates: 300,
            max_clock_skew: FIXTURE_CLOCK_SKEW,
            // The CDN adapters, the wasi:http component and the Fastly app keep
            // nothing between requests, and their tests compare their feeds
            // with this edge's: so this edge keeps no personal bundles either
            // (`feed_e2e` tests the kept bundles).
            kept_bytes: 0,
            ..FeedConfig::default()
        },
        ServerSettings { user_tokens: user_tokens(), cors_origins: vec!["*".into()], ..ServerSettings::default() },
    )?);
    let edge = serve_edge(state).await?;
    let line = serde_json::json!({
        "origin": origin,
        "edge": edge,
        "tokens": {"7": token(7, 0, 3600)?, "8": token(8, 0, 3600)?},
        "expired": {"7": token(7, 120, 60)?},
        "ingest_key": INGEST_KEY,
    });
    println!("{line}");
    // Serve until the test closes our stdin (or dies, which closes it too).
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    })
    .await?;
    Ok(())
}
