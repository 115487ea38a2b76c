//! Connection and admission counters. They are created unregistered and each
//! server registers them in its own registry, under its own prefix
//! (`edgewise_origin_…`, `edgewise_edge_…`).

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// What [`crate::serve`] and [`crate::admission`] count.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    /// Connections open now.
    pub connections_open: IntGauge,
    /// Connections accepted since start.
    pub connections_total: IntCounter,
    /// Clients cut off for being slow, by phase: `headers` (the header-read
    /// timeout, which also ends idle keep-alive connections) or `body`.
    pub slow_clients: IntCounterVec,
    /// Requests refused before their handler ran, by reason: `unauthorized`,
    /// `forbidden`, `body_too_large`, `body_budget`, `in_flight`, `bad_body`.
    pub refused: IntCounterVec,
}

impl HttpMetrics {
    /// Unregistered counters.
    pub fn new() -> Result<Self, prometheus::Error> {
        Ok(Self {
            connections_open: IntGauge::new("connections_open", "HTTP connections open now")?,
            connections_total: IntCounter::new("connections_total", "HTTP connections accepted")?,
            slow_clients: IntCounterVec::new(
                Opts::new(
                    "slow_clients_total",
                    "Connections or requests cut off by a read timeout (headers: also idle keep-alive)",
                ),
                &["phase"],
            )?,
            refused: IntCounterVec::new(
                Opts::new("requests_refused_total", "Requests refused before their handler ran"),
                &["reason"],
            )?,
        })
    }

    /// Registers every counter in `registry`.
    pub fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.connections_open.clone()))?;
        registry.register(Box::new(self.connections_total.clone()))?;
        registry.register(Box::new(self.slow_clients.clone()))?;
        registry.register(Box::new(self.refused.clone()))?;
        Ok(())
    }
}
