//! Prometheus metrics, served at `/metrics`.

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

/// Every metric the origin exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Request latency by route and status.
    pub http_seconds: HistogramVec,
    /// Sources dropped, by source and reason.
    pub source_dropped: IntCounterVec,
    /// Candidates each source contributed.
    pub source_used: IntCounterVec,
    /// Source latency.
    pub source_seconds: HistogramVec,
    /// Bundle cache lookups by cache and result (hit, miss).
    pub cache: IntCounterVec,
    /// Live items in the index.
    pub index_items: IntGauge,
    /// Items and events written, by kind and outcome.
    pub writes: IntCounterVec,
    /// How each index was brought up at start-up: `snapshot` (loaded) or `rebuild`.
    pub index_loads: IntCounterVec,
    /// Rows left out of a bundle because a value was not finite, by scope.
    pub rows_dropped: IntCounterVec,
    /// Connections, slow clients and refused requests.
    pub http: edgewise_http::metrics::HttpMetrics,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("edgewise_origin".into()), None)?;
        let buckets = vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
        let m = Self {
            http_seconds: HistogramVec::new(
                HistogramOpts::new("http_request_duration_seconds", "HTTP request latency").buckets(buckets.clone()),
                &["route", "status"],
            )?,
            source_dropped: IntCounterVec::new(
                Opts::new("source_dropped_total", "Sources dropped for failing or missing their deadline"),
                &["source", "reason"],
            )?,
            source_used: IntCounterVec::new(
                Opts::new("source_candidates_total", "Candidates used per source"),
                &["source"],
            )?,
            source_seconds: HistogramVec::new(
                HistogramOpts::new("source_duration_seconds", "Source latency").buckets(buckets),
                &["source"],
            )?,
            cache: IntCounterVec::new(Opts::new("bundle_cache_total", "Bundle cache lookups"), &["cache", "result"])?,
            index_items: IntGauge::new("index_items", "Live items in the ANN index")?,
            writes: IntCounterVec::new(Opts::new("writes_total", "Items and events written"), &["kind", "outcome"])?,
            index_loads: IntCounterVec::new(
                Opts::new("index_loads_total", "Indexes brought up at start-up, from a snapshot or rebuilt"),
                &["index", "how"],
            )?,
            rows_dropped: IntCounterVec::new(
                Opts::new("bundle_rows_dropped_total", "Candidates left out of bundles for a non-finite value"),
                &["scope"],
            )?,
            http: edgewise_http::metrics::HttpMetrics::new()?,
            registry,
        };
        m.http.register(&m.registry)?;
        m.registry.register(Box::new(m.rows_dropped.clone()))?;
        m.registry.register(Box::new(m.http_seconds.clone()))?;
        m.registry.register(Box::new(m.source_dropped.clone()))?;
        m.registry.register(Box::new(m.source_used.clone()))?;
        m.registry.register(Box::new(m.source_seconds.clone()))?;
        m.registry.register(Box::new(m.cache.clone()))?;
        m.registry.register(Box::new(m.index_items.clone()))?;
        m.registry.register(Box::new(m.writes.clone()))?;
        m.registry.register(Box::new(m.index_loads.clone()))?;
        Ok(m)
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}
