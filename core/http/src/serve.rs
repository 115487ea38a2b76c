//! The connection loop both servers run (in place of `axum::serve`, which
//! sets no read timeouts).
//!
//! * **Header-read timeout.** A connection must deliver a request's headers
//!   within [`ServeOptions::header_read_timeout`] of the moment the server
//!   starts waiting for them; otherwise it is closed. The clock also runs
//!   while a keep-alive connection sits idle between requests, so idle
//!   connections are closed after the same time. Body reads have their own
//!   timeout ([`crate::admission`]).
//! * **A cap on open connections.** Past [`ServeOptions::max_connections`]
//!   the loop stops accepting until one closes (new clients wait in the
//!   kernel's backlog), so file descriptors and per-connection memory stay
//!   bounded.
//! * **HTTP/1.1.** Connections speak HTTP/1.1 (keep-alive, pipelining). An
//!   HTTP/2 or TLS front end belongs in the proxy or CDN before the server;
//!   hyper's protocol auto-detection would wait for the first bytes without
//!   any timeout.
//! * **Graceful shutdown.** When `shutdown` resolves the loop stops
//!   accepting, every open connection finishes the request it is serving
//!   and closes, and the function returns once they have (or after
//!   [`ServeOptions::drain_timeout`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::metrics::HttpMetrics;

/// Connection limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOptions {
    /// Time a client has to send a request's headers, and the longest a keep-alive connection may idle.
    pub header_read_timeout: Duration,
    /// Connections open at once; the loop stops accepting beyond it.
    pub max_connections: usize,
    /// How long shutdown waits for open connections to finish.
    pub drain_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 4096,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    opts: ServeOptions,
    metrics: HttpMetrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(opts.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(opts.header_read_timeout).keep_alive(true);
    let builder = Arc::new(builder);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break, // never closed
            },
            () = &mut shutdown => break,
        };
        let (stream, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    if !is_connection_error(&e) {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::error!(error = %e, "accept failed; retrying in 50 ms");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        metrics.connections_total.inc();
        metrics.connections_open.inc();
        let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let watched = graceful.watch(conn);
        let m = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = watched.await {
                if e.is_timeout() {
                    m.slow_clients.with_label_values(&["headers"]).inc();
                } else {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            }
            m.connections_open.dec();
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(opts.drain_timeout, graceful.shutdown()).await.is_err() {
        tracing::warn!(seconds = opts.drain_timeout.as_secs(), "connections still open after the drain timeout");
    }
    Ok(())
}

/// Errors that concern one connection only (the client went away during the handshake).
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}
