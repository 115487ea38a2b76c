//! What a request may make the server hold, and in which order.
//!
//! A route first checks who is calling, on the headers alone (its access
//! rule, [`crate::auth`]); only then does [`Admission::run`]:
//!
//! 1. refuse a declared `Content-Length` over the body limit (413) before
//!    reading a byte — with `Expect: 100-continue` the client never sends
//!    the body at all;
//! 2. reserve the body's bytes from a server-wide budget (429 when uploads
//!    already hold it all), so many large bodies at once cannot exhaust memory;
//! 3. read the body within the read timeout (408 for a client that trickles
//!    or stalls) and the limit (413 for a chunked body that grows past it);
//! 4. take a slot of the in-flight cap (429 with `Retry-After` beyond it),
//!    with tower's `GlobalConcurrencyLimit` and `LoadShed`.
//!
//! The cap counts requests that are doing work: a client still sending its
//! body holds budget bytes for at most the read timeout, and no slot, so
//! hundreds of stalled uploads cannot lock everyone else out. Health routes
//! are mounted outside admission altogether.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt as _;
use tokio::sync::Semaphore;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::error::Overloaded;
use tower::{ServiceBuilder, ServiceExt as _};

use crate::auth::Denied;
use crate::json_error;
use crate::metrics::HttpMetrics;

/// The one-shot service behind the in-flight cap was called twice (a bug).
#[derive(Debug, thiserror::Error)]
#[error("a request was dispatched twice")]
struct DispatchedTwice;

/// Limits on bodies and on work in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// Largest request body, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// How long a client may take to send its body (408 beyond).
    pub body_timeout: Duration,
    /// Bytes of request bodies all requests together may hold at once
    /// (429 beyond); at least `max_body_bytes`.
    pub body_budget_bytes: usize,
    /// Requests doing work at once (429 with `Retry-After` beyond).
    pub max_in_flight: usize,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            body_timeout: Duration::from_secs(10),
            body_budget_bytes: 64 << 20,
            max_in_flight: 512,
        }
    }
}

/// Admission control shared by every guarded route of a server.
#[derive(Debug, Clone)]
pub struct Admission {
    cfg: AdmissionConfig,
    budget: Arc<Semaphore>,
    in_flight: Arc<Semaphore>,
    metrics: HttpMetrics,
}

impl Admission {
    /// Admission with `cfg`'s limits, counting into `metrics`.
    pub fn new(cfg: AdmissionConfig, metrics: HttpMetrics) -> Self {
        let cfg = AdmissionConfig {
            max_body_bytes: cfg.max_body_bytes.min(u32::MAX as usize),
            body_budget_bytes: cfg.body_budget_bytes.max(cfg.max_body_bytes).min(Semaphore::MAX_PERMITS),
            max_in_flight: cfg.max_in_flight.max(1),
            ..cfg
        };
        Self {
            budget: Arc::new(Semaphore::new(cfg.body_budget_bytes)),
            in_flight: Arc::new(Semaphore::new(cfg.max_in_flight)),
            cfg,
            metrics,
        }
    }

    /// The limits in force.
    pub fn config(&self) -> AdmissionConfig {
        self.cfg
    }

    /// The response for a refused credential, counted.
    pub fn deny(&self, d: Denied) -> Response {
        let reason = if d.status() == StatusCode::FORBIDDEN { "forbidden" } else { "unauthorized" };
        self.metrics.refused.with_label_values(&[reason]).inc();
        d.into_response()
    }

    fn refuse(&self, reason: &str, status: StatusCode, message: String) -> Response {
        self.metrics.refused.with_label_values(&[reason]).inc();
        let mut r = json_error(status, message);
        if status == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }

    /// Reads the body within the limits, takes a work slot, and runs `next`
    /// (call it after the route's access check).
    pub async fn run(&self, req: Request, next: Next) -> Response {
        let (parts, body) = req.into_parts();
        let hint = body.size_hint();
        let max = self.cfg.max_body_bytes;
        let mut _reserved = None;
        let body = if hint.exact() == Some(0) {
            Body::empty()
        } else {
            if hint.lower() > max as u64 {
                return self.refuse(
                    "body_too_large",
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the request body has {} bytes; at most {max} are accepted", hint.lower()),
                );
            }
            // A declared length reserves exactly that; a chunked body the most it may grow to.
            let reserve = hint.exact().map_or(max, |n| n as usize).max(1);
            let Ok(permit) = self.budget.clone().try_acquire_many_owned(reserve as u32) else {
                return self.refuse(
                    "body_budget",
                    StatusCode::TOO_MANY_REQUESTS,
                    "the server is receiving too many request bodies at once; retry shortly".into(),
                );
            };
            _reserved = Some(permit);
            let limited = http_body_util::Limited::new(body, max);
            match tokio::time::timeout(self.cfg.body_timeout, limited.collect()).await {
                Err(_) => {
                    self.metrics.slow_clients.with_label_values(&["body"]).inc();
                    return self.refuse(
                        "body_timeout",
                        StatusCode::REQUEST_TIMEOUT,
                        format!("the request body did not arrive within {} ms", self.cfg.body_timeout.as_millis()),
                    );
                }
                Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                    return self.refuse(
                        "body_too_large",
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("the request body is larger than {max} bytes"),
                    );
                }
                Ok(Err(e)) => {
                    return self.refuse(
                        "bad_body",
                        StatusCode::BAD_REQUEST,
                        format!("the request body could not be read: {e}"),
                    );
                }
                Ok(Ok(collected)) => Body::from(collected.to_bytes()),
            }
        };
        // The in-flight cap is tower's: a concurrency limit over the server-wide
        // semaphore, and load shedding so that a full cap answers at once
        // instead of queueing (the permit is held until the response is built).
        let mut next = Some(next);
        let work = ServiceBuilder::new()
            .load_shed()
            .layer(GlobalConcurrencyLimitLayer::with_semaphore(self.in_flight.clone()))
            .service_fn(move |req: Request| {
                let next = next.take();
                async move {
                    match next {
                        Some(next) => Ok(next.run(req).await),
                        None => Err(DispatchedTwice),
                    }
                }
            });
        match work.oneshot(Request::from_parts(parts, body)).await {
            Ok(response) => response,
            Err(e) if e.is::<Overloaded>() => self.refuse(
                "in_flight",
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests in flight; retry shortly".into(),
            ),
            Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, format!("the request could not be handled: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::post;
    use tokio::sync::Notify;

    fn app(admission: Admission, release: Arc<Notify>, entered: Arc<Notify>) -> Router {
        Router::new()
            .route(
                "/work",
                post(move || {
                    let (release, entered) = (release.clone(), entered.clone());
                    async move {
                        entered.notify_one();
                        release.notified().await;
                        "done"
                    }
                }),
            )
            .layer(axum::middleware::from_fn(move |req: Request, next: Next| {
                let a = admission.clone();
                async move { a.run(req, next).await }
            }))
    }

    fn req() -> Request {
        Request::post("/work").body(Body::from("x")).expect("request")
    }

    #[tokio::test]
    async fn a_full_in_flight_cap_answers_429_at_once_and_frees_its_slot_after_the_response() {
        let metrics = HttpMetrics::new().expect("metrics");
        let cfg = AdmissionConfig { max_in_flight: 1, ..AdmissionConfig::default() };
        let (release, entered) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let app = app(Admission::new(cfg, metrics.clone()), release.clone(), entered.clone());
        let first = tokio::spawn(app.clone().oneshot(req()));
        entered.notified().await;
        let refused = app.clone().oneshot(req()).await.expect("infallible");
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers().get(header::RETRY_AFTER).map(HeaderValue::as_bytes), Some(&b"1"[..]));
        assert_eq!(metrics.refused.with_label_values(&["in_flight"]).get(), 1);
        release.notify_one();
        let done = first.await.expect("joins").expect("infallible");
        assert_eq!(done.status(), StatusCode::OK);
        // The slot came back with the response.
        let again = tokio::spawn(app.clone().oneshot(req()));
        entered.notified().await;
        release.notify_one();
        assert_eq!(again.await.expect("joins").expect("infallible").status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_declared_body_over_the_limit_is_refused_before_reading() {
        let metrics = HttpMetrics::new().expect("metrics");
        let cfg = AdmissionConfig { max_body_bytes: 4, ..AdmissionConfig::default() };
        let app = app(Admission::new(cfg, metrics.clone()), Arc::new(Notify::new()), Arc::new(Notify::new()));
        let big = Request::post("/work").body(Body::from("too long")).expect("request");
        let r = app.oneshot(big).await.expect("infallible");
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(metrics.refused.with_label_values(&["body_too_large"]).get(), 1);
    }
}
