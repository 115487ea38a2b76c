//! Prometheus metrics, served at `/metrics` (prefix `edgewise_edge_`).
//!
//! | metric | what |
//! |---|---|
//! | `cache_served_total{status}` | responses by how the cache served them: hit, miss, stale, revalidated |
//! | `cache_hit_ratio` | hits and stale hits over everything served, since start |
//! | `origin_requests_total`, `origin_request_duration_seconds` | requests to the origin and their latency |
//! | `guest_rank_duration_seconds`, `guest_instantiate_duration_seconds` | guest time per ranking (getting an instance and loading the model included), and per instantiation |
//! | `guest_instances_total{how}` | instances rankings ran on: `new` (instantiated) or `reused` (from the pool) |
//! | `guest_model_loads_total` | models loaded into an instance |
//! | `guest_failures_total{kind}` | rankings that failed: deadline, fuel, trap, model, … |
//! | `feeds_total{answer}` | feed answers: refined, preliminary, unavailable |
//! | `http_request_duration_seconds{route,status}` | request latency |
//! | `origin_up` | 1 if the last request to the origin got an answer, 0 if it failed to connect or got a 5xx |
//! | `connections_open`, `connections_total`, `slow_clients_total{phase}`, `requests_refused_total{reason}` | connections, clients cut off by a read timeout, requests refused before their handler ([`edgewise_http::metrics`]) |

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Latency buckets, seconds: 10 µs to 2.5 s.
pub fn buckets() -> Vec<f64> {
    vec![1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]
}

/// The cache's counters (created by the cache, registered by [`EdgeMetrics`]).
#[derive(Debug, Clone)]
pub struct CacheMetrics {
    /// Responses served, by how the cache served them (hit, miss, stale, revalidated).
    pub served: IntCounterVec,
    /// Requests sent to the origin, revalidations included.
    pub origin_requests: IntCounter,
    /// Latency of origin requests, body included.
    pub origin_seconds: Histogram,
    /// Whether the last origin request got an answer (1) or not (0); -1 before the first.
    pub origin_up: IntGauge,
}

impl CacheMetrics {
    /// The counters, not yet registered anywhere ([`EdgeMetrics::new`] registers them).
    pub fn new() -> Result<Self, prometheus::Error> {
        Ok(Self {
            served: IntCounterVec::new(Opts::new("cache_served_total", "Responses by cache status"), &["status"])?,
            origin_requests: IntCounter::new("origin_requests_total", "Requests sent to the origin")?,
            origin_seconds: Histogram::with_opts(
                HistogramOpts::new("origin_request_duration_seconds", "Origin request latency").buckets(buckets()),
            )?,
            origin_up: {
                let g =
                    IntGauge::new("origin_up", "1 if the last origin request got an answer, 0 if not, -1 before any")?;
                g.set(-1);
                g
            },
        })
    }
}

/// The guest's counters (created by the tenants, shared by every tenant's rankings, registered by [`EdgeMetrics`]).
#[derive(Debug, Clone)]
pub struct GuestMetrics {
    /// Failed rankings by `kind` (a `GuestError::kind`, or model, no-module, panic).
    pub failures: IntCounterVec,
    /// Guest ranking time (model load included).
    pub rank_seconds: Histogram,
    /// Time to instantiate a guest (a pooling-allocator slot, from the module's `InstancePre`).
    pub instantiate_seconds: Histogram,
    /// Instances rankings ran on, by `how`: `new` or `reused`.
    pub instances: IntCounterVec,
    /// Models loaded into an instance.
    pub model_loads: IntCounter,
}

impl GuestMetrics {
    /// The counters, not yet registered anywhere ([`EdgeMetrics::new`] registers them).
    pub fn new() -> Result<Self, prometheus::Error> {
        Ok(Self {
            failures: IntCounterVec::new(Opts::new("guest_failures_total", "Failed guest rankings"), &["kind"])?,
            rank_seconds: Histogram::with_opts(
                HistogramOpts::new("guest_rank_duration_seconds", "Guest ranking time").buckets(buckets()),
            )?,
            instantiate_seconds: Histogram::with_opts(
                HistogramOpts::new("guest_instantiate_duration_seconds", "Guest instantiation time").buckets(buckets()),
            )?,
            instances: IntCounterVec::new(
                Opts::new("guest_instances_total", "Guest instances rankings ran on: new or reused"),
                &["how"],
            )?,
            model_loads: IntCounter::new("guest_model_loads_total", "Models loaded into a guest instance")?,
        })
    }
}

/// Everything the edge exports.
#[derive(Debug, Clone)]
pub struct EdgeMetrics {
    registry: Registry,
    cache: CacheMetrics,
    hit_ratio: Gauge,
    /// Feed answers by `answer` (refined, preliminary, unavailable), JSON and NDJSON alike.
    pub feeds: IntCounterVec,
    /// What became of users' kept personal bundles, by `outcome` ([`crate::feed::Feed::new`]).
    pub kept: IntCounterVec,
    /// Request latency by route and status.
    pub http_seconds: HistogramVec,
    /// Connections, slow clients and refused requests.
    pub http: edgewise_http::metrics::HttpMetrics,
}

impl EdgeMetrics {
    /// Registers the cache's and the guest's metrics with the edge's own.
    pub fn new(cache: &CacheMetrics, guest: &GuestMetrics) -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("edgewise_edge".into()), None)?;
        let m = Self {
            cache: cache.clone(),
            hit_ratio: Gauge::new("cache_hit_ratio", "Hits and stale hits over all responses served")?,
            feeds: IntCounterVec::new(Opts::new("feeds_total", "Feed answers"), &["answer"])?,
            kept: IntCounterVec::new(
                Opts::new(
                    "feed_kept_bundles_total",
                    "Users' kept personal bundles: merged, alone, mismatch, none, stored, forgotten",
                ),
                &["outcome"],
            )?,
            http_seconds: HistogramVec::new(
                HistogramOpts::new("http_request_duration_seconds", "Request latency").buckets(buckets()),
                &["route", "status"],
            )?,
            http: edgewise_http::metrics::HttpMetrics::new()?,
            registry,
        };
        m.http.register(&m.registry)?;
        m.registry.register(Box::new(cache.origin_up.clone()))?;
        m.registry.register(Box::new(cache.served.clone()))?;
        m.registry.register(Box::new(cache.origin_requests.clone()))?;
        m.registry.register(Box::new(cache.origin_seconds.clone()))?;
        m.registry.register(Box::new(guest.failures.clone()))?;
        m.registry.register(Box::new(guest.rank_seconds.clone()))?;
        m.registry.register(Box::new(guest.instantiate_seconds.clone()))?;
        m.registry.register(Box::new(guest.instances.clone()))?;
        m.registry.register(Box::new(guest.model_loads.clone()))?;
        m.registry.register(Box::new(m.hit_ratio.clone()))?;
        m.registry.register(Box::new(m.feeds.clone()))?;
        m.registry.register(Box::new(m.kept.clone()))?;
        m.registry.register(Box::new(m.http_seconds.clone()))?;
        Ok(m)
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let get = |s: &str| self.cache.served.with_label_values(&[s]).get() as f64;
        let (hit, stale, total) =
            (get("hit"), get("stale"), get("hit") + get("stale") + get("miss") + get("revalidated"));
        self.hit_ratio.set(if total > 0.0 { (hit + stale) / total } else { 0.0 });
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}
