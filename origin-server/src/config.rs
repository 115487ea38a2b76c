//! Layered configuration: built-in defaults, then a TOML file, then
//! `EDGEWISE__SECTION__KEY` environment variables, then command-line flags.
//!
//! Every field has a default that works, so `edgewise-origin serve` with no
//! file runs as is. Example file:
//!
//! ```toml
//! [server]
//! listen = "0.0.0.0:8080"
//!
//! [index]
//! dim = 64
//! shards = 4
//!
//! [features]
//! names = ["year", "popularity"]
//!
//! [retrieval.budgets]
//! collaborative = 0.5
//! ```
//!
//! The same key from the environment: `EDGEWISE__INDEX__SHARDS=4`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the embedded store and index files live.
    pub data_dir: PathBuf,
    /// HTTP server.
    pub server: ServerConfig,
    /// The ANN index.
    pub index: IndexConfig,
    /// The item feature schema.
    pub features: FeatureConfig,
    /// Multi-source retrieval.
    pub retrieval: RetrievalConfig,
    /// Cache headers.
    pub cache: CacheConfig,
    /// Bounds on ingested values.
    pub ingest: IngestConfig,
    /// API keys and user tokens.
    pub auth: AuthConfig,
    /// Where rankings run.
    pub rank: RankConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("edgewise-data"),
            server: ServerConfig::default(),
            index: IndexConfig::default(),
            features: FeatureConfig::default(),
            retrieval: RetrievalConfig::default(),
            cache: CacheConfig::default(),
            ingest: IngestConfig::default(),
            auth: AuthConfig::default(),
            rank: RankConfig::default(),
        }
    }
}

/// Where `POST /v1/rank` ranks.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RankConfig {
    /// `"auto"`: the pre-rank scan on a GPU when the machine has a working
    /// adapter (wgpu: Vulkan, Metal or DirectX 12; `WGPU_BACKEND` narrows
    /// it), else the CPU, said at start-up; `"off"` (the default): the CPU
    /// only. The results are byte-identical either way. Each request's bundle
    /// is built for it and uploaded before the scan, so at the candidate
    /// counts the origin serves (hundreds to thousands) the upload and the
    /// dispatch cost more than the scan saves; the GPU path pays where a
    /// large bundle stays resident and is re-ranked many times (the browser
    /// and the edge). Measure before turning it on (BENCHMARKS.md, "GPU path
    /// against the CPU core").
    pub gpu: GpuSetting,
}

/// The `rank.gpu` setting.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum GpuSetting {
    /// The CPU core only.
    #[default]
    Off,
    /// The GPU when one works, else the CPU.
    Auto,
}

/// HTTP server settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Largest request body, in bytes; larger bodies get 413 (before they are read, when declared).
    pub max_body_bytes: usize,
    /// Bytes of request bodies all requests together may hold at once; beyond it, 429.
    pub body_budget_bytes: usize,
    /// Requests doing work at once (bodies read); beyond it the server answers 429 with `Retry-After`.
    /// Health routes (`/livez`, `/readyz`, `/metrics`) are outside the cap.
    pub max_in_flight: usize,
    /// Time a client has to send a request's headers, in ms; also the longest a keep-alive connection may idle.
    pub header_read_timeout_ms: u64,
    /// Time a client has to send a request's body, in ms; beyond it, 408.
    pub body_read_timeout_ms: u64,
    /// Connections open at once; beyond it new ones wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 16 << 20,
            body_budget_bytes: 256 << 20,
            max_in_flight: 512,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 10_000,
            max_connections: 4096,
        }
    }
}

impl ServerConfig {
    /// The connection loop's limits.
    pub fn serve_options(&self) -> edgewise_http::serve::ServeOptions {
        edgewise_http::serve::ServeOptions {
            header_read_timeout: std::time::Duration::from_millis(self.header_read_timeout_ms),
            max_connections: self.max_connections,
            ..Default::default()
        }
    }

    /// Body and in-flight limits.
    pub fn admission(&self) -> edgewise_http::admission::AdmissionConfig {
        edgewise_http::admission::AdmissionConfig {
            max_body_bytes: self.max_body_bytes,
            body_timeout: std::time::Duration::from_millis(self.body_read_timeout_ms),
            body_budget_bytes: self.body_budget_bytes,
            max_in_flight: self.max_in_flight,
        }
    }
}

/// Bounds on values that come from outside, checked when items and events arrive.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Largest magnitude of an embedding value or a feature value. With it,
    /// an inner product over `index.dim` values stays far inside `f32`, so no
    /// score overflows to infinity.
    pub max_abs_value: f64,
    /// How far in the future (by the server's clock) an event's `time` or an
    /// item's `created_at` may be, in ms; later ones are refused.
    pub max_future_ms: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self { max_abs_value: 1e6, max_future_ms: 5 * 60 * 1000 }
    }
}

/// ANN index settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IndexConfig {
    /// Item embedding dimension; every item must have exactly this many values.
    pub dim: usize,
    /// Content-embedding dimension; 0 disables the content index.
    pub content_dim: usize,
    /// Number of shards; 0 means one per CPU core.
    pub shards: usize,
    /// A shard is rebuilt in the background once this share of its entries is deleted.
    pub rebuild_deleted_ratio: f64,
    /// `hnsw` (hnswlib) or `flat` (exact scan; for tests and recall measurements).
    pub kind: IndexKind,
    /// HNSW graph degree `M`.
    pub connectivity: usize,
    /// HNSW `ef_construction`.
    pub expansion_add: usize,
    /// HNSW `ef` at query time (a query for more results uses its `k`).
    pub expansion_search: usize,
}

/// The shard index implementation.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum IndexKind {
    /// Approximate: hnswlib HNSW graphs.
    #[default]
    Hnsw,
    /// Exact scan.
    Flat,
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self {
            dim: 64,
            content_dim: 0,
            shards: 0,
            rebuild_deleted_ratio: 0.2,
            kind: IndexKind::Hnsw,
            connectivity: 16,
            expansion_add: 200,
            expansion_search: 100,
        }
    }
}

impl IndexConfig {
    /// HNSW parameters.
    pub fn hnsw_params(&self) -> crate::index::hnsw::HnswParams {
        crate::index::hnsw::HnswParams {
            connectivity: self.connectivity,
            expansion_add: self.expansion_add,
            expansion_search: self.expansion_search,
        }
    }

    /// The shard count with `0` resolved to the number of cores.
    pub fn shard_count(&self) -> usize {
        if self.shards > 0 { self.shards } else { std::thread::available_parallelism().map_or(1, usize::from) }
    }
}

/// The item feature schema: names in bundle column order, and the value a
/// missing feature takes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FeatureConfig {
    /// Feature names. Items may omit a feature (see `defaults`); unknown names are refused.
    pub names: Vec<String>,
    /// The value of a feature an item does not give, by name. `train` sets
    /// each to the mean over the items that do give it and records it in the
    /// data directory's schema; a feature with no entry defaults to 0. The
    /// item itself keeps "missing", so a later training recomputes it.
    pub defaults: BTreeMap<String, f64>,
}

impl Default for FeatureConfig {
    fn default() -> Self {
        Self { names: vec!["popularity".into(), "freshness".into()], defaults: BTreeMap::new() }
    }
}

/// How a missing feature is stored in an item: NaN never passes validation, so it cannot be a value.
pub const MISSING_FEATURE: f32 = f32::NAN;

impl FeatureConfig {
    /// The default of each feature, in column order.
    pub fn default_values(&self) -> Vec<f32> {
        self.names.iter().map(|n| self.defaults.get(n).map_or(0.0, |&v| v as f32)).collect()
    }

    /// `stored` (an item's features, [`MISSING_FEATURE`] where absent) with
    /// each missing value replaced by its default, into `out`.
    pub fn resolve_into(stored: &[f32], defaults: &[f32], out: &mut Vec<f32>) {
        out.clear();
        out.extend(
            stored
                .iter()
                .enumerate()
                .map(|(j, &v)| if v.is_nan() { defaults.get(j).copied().unwrap_or(0.0) } else { v }),
        );
    }
}

/// Multi-source retrieval settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetrievalConfig {
    /// Candidates in a personalized bundle when the request gives no `k`.
    pub default_k: usize,
    /// Largest `k` a request may ask for.
    pub max_k: usize,
    /// Share of `k` each source is asked for.
    pub budgets: BTreeMap<String, f64>,
    /// Weight of each source in the fusion.
    pub weights: BTreeMap<String, f64>,
    /// Deadline per source, in milliseconds.
    pub deadline_ms: u64,
    /// How many of the user's last interactions seed the recent-similar source.
    pub recent_seeds: usize,
    /// Half-life of trending counters, in seconds.
    pub trending_half_life_s: f64,
    /// Failure drills: make a source slow or fail, to rehearse degraded retrieval
    /// (and to test it). Keyed by source name.
    pub drills: BTreeMap<String, Drill>,
    /// The newest bundle format version written: 3 (the default: a personal
    /// bundle carries its user's long-term embedding, so the edge and the
    /// browser rank with the query the origin would; every other bundle is
    /// version 2), 2 (checksum XXH3, which a wasm guest verifies about six
    /// times faster; no user embedding) or 1 (CRC-32), for readers that
    /// predate a version (see `edgewise_core::bundle`).
    pub bundle_version: u16,
}

/// A failure drill for one source.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Drill {
    /// Extra latency before the source answers, in ms.
    pub delay_ms: u64,
    /// The source returns an error.
    pub fail: bool,
}

impl Default for RetrievalConfig {
    fn default() -> Self {
        let budgets =
            [("collaborative", 0.5), ("content", 0.2), ("trending", 0.1), ("recent_similar", 0.15), ("creator", 0.05)];
        let weights =
            [("collaborative", 1.0), ("content", 0.9), ("trending", 0.7), ("recent_similar", 0.85), ("creator", 0.8)];
        Self {
            default_k: 500,
            max_k: 5000,
            budgets: budgets.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            weights: weights.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            deadline_ms: 50,
            recent_seeds: 3,
            trending_half_life_s: 6.0 * 3600.0,
            drills: BTreeMap::new(),
            bundle_version: edgewise_core::bundle::VERSION,
        }
    }
}

/// Cache-Control lifetimes, in seconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// `max-age` of personalized bundles (`private`).
    pub personal_max_age: u64,
    /// `s-maxage` of regional bundles; also how long the origin reuses one.
    pub regional_s_maxage: u64,
    /// `stale-while-revalidate` of regional bundles.
    pub stale_while_revalidate: u64,
    /// `stale-if-error` of regional bundles.
    pub stale_if_error: u64,
    /// Bytes of recently built regional bundles kept for `GET /v1/bundles/{digest}`.
    pub bundle_cache_bytes: u64,
    /// Bytes of regional bundles reused for `s-maxage` (keyed by region and quantised `k`).
    pub regional_cache_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            personal_max_age: 30,
            regional_s_maxage: 60,
            stale_while_revalidate: 30,
            stale_if_error: 600,
            bundle_cache_bytes: 64 << 20,
            regional_cache_bytes: 64 << 20,
        }
    }
}

/// Who may call which route (README: Access).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Service keys for `PUT /v1/items`, `DELETE /v1/items/{id}` and `POST /v1/events`
    /// (any user's events). With none, those routes are disabled (403).
    pub ingest_keys: Vec<String>,
    /// Keys for `PUT /v1/models` and `PUT /v1/modules`. With none, those routes are disabled (403).
    pub admin_keys: Vec<String>,
    /// Keys for the non-personal read routes; empty means they are open.
    pub read_keys: Vec<String>,
    /// User tokens, required by every personalized route (a user's bundle,
    /// ranking and own events). With no key configured those routes answer 401.
    pub user_tokens: edgewise_http::auth::UserTokenConfig,
}

/// The file in a data directory that records the schema of its data.
pub const DATA_SCHEMA_FILE: &str = "schema.toml";

/// The schema a data directory was built with: the index dimensions and the
/// feature names. Written as a partial configuration file ([`DATA_SCHEMA_FILE`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataSchema {
    /// `[index]`.
    pub index: SchemaIndex,
    /// `[features]`.
    pub features: SchemaFeatures,
}

/// The `[index]` part of a [`DataSchema`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SchemaIndex {
    /// `index.dim`.
    pub dim: usize,
    /// `index.content_dim`.
    pub content_dim: usize,
}

/// The `[features]` part of a [`DataSchema`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SchemaFeatures {
    /// `features.names`.
    pub names: Vec<String>,
    /// `features.defaults` (absent in schema files written before defaults existed).
    #[serde(default)]
    pub defaults: BTreeMap<String, f64>,
}

impl std::fmt::Display for DataSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "index.dim = {}, index.content_dim = {}, features.names = {:?}, features.defaults = {:?}",
            self.index.dim, self.index.content_dim, self.features.names, self.features.defaults
        )
    }
}

impl DataSchema {
    /// Reads `dir`'s schema file, if there is one.
    pub fn read(dir: &Path) -> Result<Option<Self>, ConfigError> {
        let path = dir.join(DATA_SCHEMA_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => toml_schema(&text).map(Some).map_err(|e| ConfigError(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ConfigError(format!("reading {}: {e}", path.display()))),
        }
    }

    /// Writes it as `dir`'s schema file (atomically: a temporary file, then a rename).
    pub fn write(&self, dir: &Path) -> Result<(), ConfigError> {
        let path = dir.join(DATA_SCHEMA_FILE);
        let tmp = dir.join(format!("{DATA_SCHEMA_FILE}.tmp"));
        let names: Vec<String> = self.features.names.iter().map(|n| format!("{n:?}")).collect();
        // `{:?}` of an f64 is a valid TOML float that reads back to the same bits.
        let defaults: Vec<String> = self.features.defaults.iter().map(|(n, v)| format!("{n:?} = {v:?}")).collect();
        let text = format!(
            "# Written by edgewise-origin: the schema of the data in this directory.\n\
             [index]\ndim = {}\ncontent_dim = {}\n\n[features]\nnames = [{}]\ndefaults = {{ {} }}\n",
            self.index.dim,
            self.index.content_dim,
            names.join(", "),
            defaults.join(", ")
        );
        std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&tmp, text))
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| ConfigError(format!("writing {}: {e}", path.display())))
    }
}

fn toml_schema(text: &str) -> Result<DataSchema, String> {
    Figment::from(Toml::string(text)).extract().map_err(|e| e.to_string())
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Loads defaults ← the data directory's schema ← `file` ← environment ←
    /// `overrides` (a partial config from flags).
    ///
    /// A data directory that holds imported data records the schema it was
    /// built with ([`DATA_SCHEMA_FILE`]); it is the layer just above the
    /// defaults, so `serve --data-dir DIR` needs no flags. A higher layer that
    /// contradicts it is an error: the stored items would not fit.
    pub fn load(file: Option<&Path>, overrides: &[(&str, figment::value::Value)]) -> Result<Self, ConfigError> {
        let layered = |schema: Option<&Path>| -> Result<Config, ConfigError> {
            let mut fig = Figment::from(Serialized::defaults(Config::default()));
            if let Some(s) = schema {
                fig = fig.merge(Toml::file(s));
            }
            if let Some(f) = file {
                if !f.exists() {
                    return Err(ConfigError(format!("config file {} does not exist", f.display())));
                }
                fig = fig.merge(Toml::file(f));
            }
            fig = fig.merge(Env::prefixed("EDGEWISE__").split("__").lowercase(true));
            for (key, value) in overrides {
                fig = fig.merge(Serialized::global(key, value.clone()));
            }
            fig.extract().map_err(|e| ConfigError(e.to_string()))
        };
        let mut cfg = layered(None)?;
        if let Some(stored) = DataSchema::read(&cfg.data_dir)? {
            cfg = layered(Some(&cfg.data_dir.join(DATA_SCHEMA_FILE)))?;
            let effective = cfg.data_schema();
            if effective != stored {
                return Err(ConfigError(format!(
                    "{} records {stored}, but the configuration asks for {effective}; \
                     use the recorded schema or another data directory",
                    cfg.data_dir.join(DATA_SCHEMA_FILE).display()
                )));
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// The schema part of this configuration (what stored items depend on).
    pub fn data_schema(&self) -> DataSchema {
        DataSchema {
            index: SchemaIndex { dim: self.index.dim, content_dim: self.index.content_dim },
            features: SchemaFeatures { names: self.features.names.clone(), defaults: self.features.defaults.clone() },
        }
    }

    /// Checks values that types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError(m));
        if self.index.dim == 0 || self.index.dim > usize::from(edgewise_core::bundle::MAX_DIM) {
            return bad(format!("index.dim = {} must be in 1..={}", self.index.dim, edgewise_core::bundle::MAX_DIM));
        }
        for (name, v) in &self.features.defaults {
            if !self.features.names.contains(name) {
                return bad(format!("features.defaults names {name:?}, which is not in features.names"));
            }
            if !v.is_finite() || v.abs() > self.ingest.max_abs_value {
                return bad(format!(
                    "features.defaults.{name} = {v} must be finite and at most ingest.max_abs_value = {} in magnitude",
                    self.ingest.max_abs_value
                ));
            }
        }
        if !(self.ingest.max_abs_value.is_finite()
            && self.ingest.max_abs_value > 0.0
            && self.ingest.max_abs_value <= 1e15)
        {
            return bad(format!("ingest.max_abs_value = {} must be in (0, 1e15]", self.ingest.max_abs_value));
        }
        edgewise_http::check_limits(&self.server.admission(), &self.server.serve_options()).map_err(ConfigError)?;
        edgewise_http::auth::UserTokens::new(&self.auth.user_tokens).map_err(|e| ConfigError(e.to_string()))?;
        if self.features.names.len() > usize::from(edgewise_core::bundle::MAX_FEATURES) {
            return bad(format!(
                "features.names has {} names; at most {}",
                self.features.names.len(),
                edgewise_core::bundle::MAX_FEATURES
            ));
        }
        if self.index.connectivity < 2 || self.index.expansion_add == 0 || self.index.expansion_search == 0 {
            return bad("index.connectivity must be at least 2, and the expansions at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.index.rebuild_deleted_ratio) {
            return bad("index.rebuild_deleted_ratio must be in [0, 1]".into());
        }
        let versions = edgewise_core::bundle::OLDEST_SUPPORTED_VERSION..=edgewise_core::bundle::VERSION;
        if !versions.contains(&self.retrieval.bundle_version) {
            return bad(format!(
                "retrieval.bundle_version = {} is not a bundle format version this build writes ({}..={})",
                self.retrieval.bundle_version,
                versions.start(),
                versions.end()
            ));
        }
        for name in self.retrieval.drills.keys() {
            if !edgewise_core::bundle::SOURCE_NAMES.contains(&name.as_str()) {
                return bad(format!("retrieval.drills names an unknown source {name:?}"));
            }
        }
        for (what, map) in [("budgets", &self.retrieval.budgets), ("weights", &self.retrieval.weights)] {
            for (name, v) in map {
                if !edgewise_core::bundle::SOURCE_NAMES.contains(&name.as_str()) {
                    return bad(format!("retrieval.{what} names an unknown source {name:?}"));
                }
                if !v.is_finite() || *v < 0.0 {
                    return bad(format!("retrieval.{what}.{name} = {v} must be a finite, non-negative number"));
                }
            }
        }
        if self.retrieval.default_k == 0 || self.retrieval.default_k > self.retrieval.max_k {
            return bad("retrieval.default_k must be in 1..=retrieval.max_k".into());
        }
        if self.retrieval.max_k > edgewise_core::bundle::MAX_ROWS as usize {
            return bad(format!("retrieval.max_k must be at most {}", edgewise_core::bundle::MAX_ROWS));
        }
        Ok(())
    }

    /// The feature-schema hash bundles carry.
    pub fn schema_hash(&self) -> u64 {
        edgewise_core::feature_schema_hash(&self.features.names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        Config::default().validate().expect("defaults are valid");
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = std::env::temp_dir().join(format!("ew-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("c.toml");
        std::fs::write(&file, "[index]\ndim = 32\nshards = 3\n[retrieval.budgets]\ncollaborative = 0.6\n")
            .expect("write");
        let cfg = Config::load(Some(&file), &[("index.shards", 5.into())]).expect("loads");
        assert_eq!(cfg.index.dim, 32);
        assert_eq!(cfg.index.shards, 5, "flags override the file");
        assert_eq!(cfg.retrieval.budgets["collaborative"], 0.6);
        assert_eq!(cfg.retrieval.budgets["content"], 0.2, "unset keys keep their defaults");
    }

    #[test]
    fn bad_values_are_refused_with_a_message() {
        let dir = std::env::temp_dir().join(format!("ew-config-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("c.toml");
        std::fs::write(&file, "[index]\ndimension = 32\n").expect("write");
        let err = Config::load(Some(&file), &[]).expect_err("unknown key");
        assert!(err.to_string().contains("dimension"), "{err}");
        std::fs::write(&file, "[retrieval.budgets]\nviral = 0.5\n").expect("write");
        let err = Config::load(Some(&file), &[]).expect_err("unknown source");
        assert!(err.to_string().contains("viral"), "{err}");
        std::fs::write(&file, "[rank]\ngpu = \"always\"\n").expect("write");
        let err = Config::load(Some(&file), &[]).expect_err("unknown rank.gpu");
        assert!(err.to_string().contains("always") && err.to_string().contains("auto"), "{err}");
        std::fs::write(&file, "[rank]\ngpu = \"auto\"\n").expect("write");
        assert_eq!(Config::load(Some(&file), &[]).expect("loads").rank.gpu, GpuSetting::Auto);
        std::fs::write(&file, "[retrieval]\nbundle_version = 4\n").expect("write");
        let err = Config::load(Some(&file), &[]).expect_err("unknown bundle version");
        assert!(err.to_string().contains("bundle_version = 4"), "{err}");
        std::fs::write(&file, "[retrieval]\nbundle_version = 1\n").expect("write");
        assert_eq!(Config::load(Some(&file), &[]).expect("loads").retrieval.bundle_version, 1);
        assert!(Config::load(Some(Path::new("/no/such/file.toml")), &[]).is_err());
    }

    #[test]
    fn a_data_directory_schema_is_a_layer_and_contradictions_are_refused() {
        let dir = std::env::temp_dir().join(format!("ew-config-schema-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut base = Config::default();
        base.index.dim = 16;
        base.index.content_dim = 20;
        base.features.names = vec!["popularity".into(), "year".into()];
        base.data_schema().write(&dir).expect("write");
        assert_eq!(DataSchema::read(&dir).expect("read"), Some(base.data_schema()));
        let d = dir.display().to_string();
        let cfg = Config::load(None, &[("data_dir", d.clone().into())]).expect("loads");
        assert_eq!(cfg.data_schema(), base.data_schema(), "the stored schema replaces the defaults");
        let err = Config::load(None, &[("data_dir", d.clone().into()), ("index.dim", 32.into())])
            .expect_err("a contradicting flag");
        assert!(err.to_string().contains("index.dim = 16"), "{err}");
        std::fs::write(dir.join(DATA_SCHEMA_FILE), "[index]\ndim = \"x\"\n").expect("write");
        let err = Config::load(None, &[("data_dir", d.into())]).expect_err("a corrupt schema file");
        assert!(err.to_string().contains(DATA_SCHEMA_FILE), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
