//! [`AppError`]: how a handler of the edge says no.
//!
//! Every layer below the server has its own error type (the cache's
//! [`CacheError`](crate::cache::CacheError), the feed's
//! [`FeedError`](crate::feed::FeedError), the module checks'
//! [`ModuleError`](crate::modules::ModuleError), ...); the server turns each
//! into an `AppError`, and an `AppError` into a response: its status and the
//! JSON error body (`{"error": "..."}`, [`edgewise_http::json_error`]) every
//! 4xx and 5xx of both servers carries. Client mistakes say what was wrong;
//! internal failures get a generic line, and their detail goes to the log,
//! never to the client. This module sits at the bottom of the crate: it knows
//! HTTP, not the layers that produce its errors.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use edgewise_http::json_error;

/// An answer other than success, with the status it is sent with.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// 400: the request is malformed; the message names the problem.
    #[error("{0}")]
    BadRequest(String),
    /// 404: no such route, or a path this edge does not serve.
    #[error("{0}")]
    NotFound(String),
    /// 409: the request conflicts with how the edge was started.
    #[error("{0}")]
    Conflict(String),
    /// 422: the request is well-formed, but what it names cannot be used.
    #[error("{0}")]
    Unprocessable(String),
    /// 502: a dependency answered, but not usefully.
    #[error("{0}")]
    BadGateway(String),
    /// 503: nothing usable is available right now.
    #[error("{0}")]
    Unavailable(String),
    /// The origin's own client-error answer (an expired token, an unknown
    /// bundle), passed on with its status and JSON body.
    #[error("the origin answered {status}")]
    Upstream {
        /// The origin's status code.
        status: u16,
        /// The origin's body (a JSON error body, truncated).
        body: String,
    },
    /// 500: a failure inside the edge. `public` is what the client reads;
    /// `detail` is logged when the response is built.
    #[error("{public}: {detail}")]
    Internal {
        /// The client's generic line.
        public: &'static str,
        /// What actually happened.
        detail: String,
    },
}

impl AppError {
    /// The status the error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Upstream { status, .. } => StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY),
            AppError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        match self {
            AppError::Upstream { body, .. } => {
                (status, [(header::CONTENT_TYPE, edgewise_wire::media::JSON)], body).into_response()
            }
            AppError::Internal { public, detail } => {
                tracing::error!(error = %detail, "{public}");
                json_error(status, public)
            }
            other => json_error(status, other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(e: AppError) -> (StatusCode, String) {
        let r = e.into_response();
        let status = r.status();
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 16).await.expect("body");
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn internal_detail_stays_out_of_the_response() {
        let e = AppError::Internal { public: "checking the module failed", detail: "task panicked at 0xdead".into() };
        let (status, text) = body(e).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(text.contains("checking the module failed") && !text.contains("0xdead"), "{text}");
        let (status, text) = body(AppError::BadRequest("k = 0 must be in 1..=1000".into())).await;
        assert_eq!((status, text.as_str()), (StatusCode::BAD_REQUEST, r#"{"error":"k = 0 must be in 1..=1000"}"#));
    }

    #[tokio::test]
    async fn the_origins_client_errors_pass_through() {
        let (status, text) = body(AppError::Upstream { status: 401, body: r#"{"error":"expired"}"#.into() }).await;
        assert_eq!((status, text.as_str()), (StatusCode::UNAUTHORIZED, r#"{"error":"expired"}"#));
        assert_eq!(AppError::Upstream { status: 99, body: String::new() }.status(), StatusCode::BAD_GATEWAY);
    }
}
