//! Prometheus metrics, served at `/metrics`.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
    register_histogram_vec_with_registry, register_int_counter_vec_with_registry, register_int_gauge_with_registry,
};

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
    /// Where a personal bundle's time goes: `user` (reading the user's
    /// state), `retrieve` (the sources, fused), `build` (encoding, checksum and
    /// content address), `publish` (the digest cache).
    pub personal_stage_seconds: HistogramVec,
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
    /// Creates every metric, registered in the origin's registry (prefix
    /// `edgewise_origin_`). Fails only for a malformed definition (a bug; the
    /// unit test below builds them).
    pub fn new() -> Result<Self, prometheus::Error> {
        let r = Registry::new_custom(Some("edgewise_origin".into()), None)?;
        let buckets = vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
        let latency = |name: &str, help: &str| HistogramOpts::new(name, help).buckets(buckets.clone());
        let http = edgewise_http::metrics::HttpMetrics::new()?;
        http.register(&r)?;
        Ok(Self {
            http_seconds: register_histogram_vec_with_registry!(
                latency("http_request_duration_seconds", "HTTP request latency"),
                &["route", "status"],
                r
            )?,
            source_dropped: register_int_counter_vec_with_registry!(
                Opts::new("source_dropped_total", "Sources dropped for failing or missing their deadline"),
                &["source", "reason"],
                r
            )?,
            source_used: register_int_counter_vec_with_registry!(
                Opts::new("source_candidates_total", "Candidates used per source"),
                &["source"],
                r
            )?,
            source_seconds: register_histogram_vec_with_registry!(
                latency("source_duration_seconds", "Source latency"),
                &["source"],
                r
            )?,
            personal_stage_seconds: register_histogram_vec_with_registry!(
                HistogramOpts::new("personal_bundle_stage_seconds", "Time per stage of building a personal bundle")
                    .buckets(vec![
                        0.00002, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1
                    ]),
                &["stage"],
                r
            )?,
            cache: register_int_counter_vec_with_registry!(
                Opts::new("bundle_cache_total", "Bundle cache lookups"),
                &["cache", "result"],
                r
            )?,
            index_items: register_int_gauge_with_registry!("index_items", "Live items in the ANN index", r)?,
            writes: register_int_counter_vec_with_registry!(
                Opts::new("writes_total", "Items and events written"),
                &["kind", "outcome"],
                r
            )?,
            index_loads: register_int_counter_vec_with_registry!(
                Opts::new("index_loads_total", "Indexes brought up at start-up, from a snapshot or rebuilt"),
                &["index", "how"],
                r
            )?,
            rows_dropped: register_int_counter_vec_with_registry!(
                Opts::new("bundle_rows_dropped_total", "Candidates left out of bundles for a non-finite value"),
                &["scope"],
                r
            )?,
            http,
            registry: r,
        })
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_metric_is_defined_and_rendered_with_the_prefix() {
        let m = super::Metrics::new().expect("the definitions are valid");
        m.writes.with_label_values(&["item", "created"]).inc();
        m.personal_stage_seconds.with_label_values(&["build"]).observe(0.0003);
        let text = m.render();
        assert!(text.contains("edgewise_origin_writes_total{kind=\"item\",outcome=\"created\"} 1"), "{text}");
        assert!(text.contains("edgewise_origin_index_items 0"), "{text}");
        assert!(text.contains("edgewise_origin_personal_bundle_stage_seconds_count{stage=\"build\"} 1"), "{text}");
    }
}
