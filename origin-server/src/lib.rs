//! # edgewise-origin
//!
//! The Edgewise origin: it sees the whole catalogue and turns a request into a
//! compact candidate bundle that every HTTP cache on the way can keep correctly.
//!
//! | module | purpose |
//! |---|---|
//! | [`cli`] | the options both binaries share, configuration loading, logging |
//! | [`config`] | layered configuration (defaults ← file ← `EDGEWISE__…` env ← flags) |
//! | [`store`] | the durable redb store: items, users, event ids, trending, models, guest modules and experiments |
//! | [`error`] | `ApiError`: a status and the JSON error body |
//! | [`item`] | items, their JSON validation, batch bodies |
//! | [`user`] | events, per-user state with event-time rules |
//! | [`index`] | sharded inner-product search with in-search filtering, soft deletes, background rebuilds |
//! | [`catalogue`] | the in-memory view retrieval reads |
//! | [`sources`] | the candidate sources, their plans (budgets and weights), deadlines, back-fill, and the fusion of their lists |
//! | [`trending`] | per-region trending counters with time decay |
//! | [`bundles`] | encoding candidates as bundles |
//! | [`http`] | the axum API |
//! | [`metrics`] | Prometheus metrics |
//! | [`models`] | the model registry and its canary manifest |
//! | [`experiments`] | experiment definitions, validated, and each user's assignment by the core's rule |

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

pub mod bundles;
pub mod catalogue;
pub mod cli;
pub mod config;
pub mod error;
pub mod experiments;
pub mod http;
pub mod index;
pub mod item;
pub mod metrics;
pub mod models;
pub mod sources;
pub mod store;
pub mod trending;
pub mod user;

pub use config::Config;
pub use http::{AppState, app};

/// Opens the store in `cfg.data_dir` and returns a state that is not ready yet.
pub fn open(cfg: Config) -> anyhow::Result<Arc<AppState>> {
    let store = store::Store::open(&cfg.data_dir)?;
    let catalogue = Arc::new(catalogue::Catalogue::new(&cfg).map_err(|e| anyhow::anyhow!(e))?);
    let metrics = metrics::Metrics::new()?;
    Ok(Arc::new(AppState::new(cfg, store, catalogue, metrics)?))
}

/// A progress bar on stderr for long steps (import, start-up, benchmarks):
/// message, bar, count, rate and time left. Hidden when stderr is not a terminal.
pub fn progress_bar(total: u64, what: &str) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(total);
    pb.set_style(
        indicatif::ProgressStyle::with_template("{msg:<28} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// Where index snapshots live: `<data_dir>/index/`.
pub fn snapshot_dir(cfg: &Config) -> std::path::PathBuf {
    cfg.data_dir.join("index")
}

/// Start-up recovery: loads every item and trending counter from the store
/// into the catalogue, brings up the indexes (from their snapshots when those
/// match the store exactly, else by rebuilding them from the items),
/// reporting progress, then marks the state ready.
pub fn recover(state: &AppState, mut progress: impl FnMut(u64, u64)) -> anyhow::Result<()> {
    let start = Instant::now();
    let generation = state.store.item_generation()?;
    let total = state.store.item_count()?;
    let mut items = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    state.store.for_each_item(|item| items.push(item), |n| progress(n, total))?;
    let dir = snapshot_dir(&state.cfg);
    let mut build = false;
    for (name, index) in state.catalogue.indexes() {
        if !index.snapshots_supported() {
            build = true;
            continue;
        }
        let how = match index.load_snapshots(&dir, name, generation) {
            Ok(()) => {
                tracing::info!(index = name, generation, "index loaded from its snapshot");
                "snapshot"
            }
            Err(index::snapshot::SnapshotError::Missing(path)) => {
                tracing::info!(index = name, path = %path.display(), "no index snapshot; building the index from the store");
                "rebuild"
            }
            Err(e) => {
                tracing::warn!(index = name, error = %e, "index snapshot not used; rebuilding the index from the store");
                "rebuild"
            }
        };
        build |= how == "rebuild";
        state.metrics.index_loads.with_label_values(&[name, how]).inc();
    }
    if build {
        // A partly loaded set is rebuilt whole, so every index reflects the same items.
        for (_, index) in state.catalogue.indexes() {
            index.clear();
        }
    }
    state.catalogue.bulk_upsert(items, build);
    if let Some(m) = state.store.meta("manifest")? {
        let manifest: models::Manifest =
            serde_json::from_slice(&m).map_err(|e| anyhow::anyhow!("the stored model manifest is corrupt: {e}"))?;
        *state.manifest.write().unwrap_or_else(std::sync::PoisonError::into_inner) = manifest;
    }
    for ((region, item), v) in state.store.trending()? {
        state.catalogue.set_trending(region, item, v);
    }
    state.metrics.index_items.set(state.catalogue.len() as i64);
    tracing::info!(items = total, seconds = start.elapsed().as_secs_f64(), "catalogue and index loaded from the store");
    state.ready.store(true, Ordering::Release);
    Ok(())
}

/// Saves every index to its snapshot, stamped with the store's item
/// generation (graceful shutdown calls this once requests have drained, so
/// the next start loads the graphs instead of rebuilding them). Returns the
/// bytes written.
pub fn save_snapshots(state: &AppState) -> anyhow::Result<u64> {
    if !state.ready.load(Ordering::Acquire) {
        // Still loading: the indexes are not complete, so a snapshot would lie.
        return Ok(0);
    }
    let generation = state.store.item_generation()?;
    let dir = snapshot_dir(&state.cfg);
    let mut written = 0;
    for (name, index) in state.catalogue.indexes() {
        written += index.save_snapshots(&dir, name, generation)?;
    }
    Ok(written)
}

/// Serves `state` on `listener` until `shutdown` resolves, then drains
/// in-flight requests. Connections are held to `server.header_read_timeout_ms`
/// and `server.max_connections` ([`edgewise_http::serve`]).
pub async fn serve(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let opts = state.cfg.server.serve_options();
    let metrics = state.metrics.http.clone();
    edgewise_http::serve::serve(listener, app(state), opts, metrics, shutdown).await
}
