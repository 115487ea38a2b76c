//! API errors: client mistakes become a 4xx with a JSON message that names the
//! problem; internal failures become a generic 500 and are logged. The body is
//! the [`ErrorBody`] both servers share.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use edgewise_http::auth::Denied;

pub use edgewise_http::ErrorBody;

/// An error an HTTP handler returns.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// A refused credential keeps its `WWW-Authenticate` challenge.
    denied: Option<Denied>,
}

impl ApiError {
    /// 400 with a message.
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, m)
    }
    /// 404 with a message.
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, m)
    }
    /// 503: not ready yet.
    pub fn unavailable(m: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, m)
    }
    /// Any status with a message.
    pub fn new(status: StatusCode, m: impl Into<String>) -> Self {
        Self { status, message: m.into(), denied: None }
    }
    /// 500; the detail is logged, not sent.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<Denied> for ApiError {
    fn from(d: Denied) -> Self {
        Self { status: d.status(), message: d.to_string(), denied: Some(d) }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self.denied {
            Some(d) => d.into_response(),
            None => edgewise_http::json_error(self.status, self.message),
        }
    }
}
