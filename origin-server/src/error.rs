//! API errors: client mistakes become a 4xx with a JSON message that names the
//! problem; internal failures become a generic 500 and are logged.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An error an HTTP handler returns.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// 400 with a message.
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, message: m.into() }
    }
    /// 404 with a message.
    pub fn not_found(m: impl Into<String>) -> Self {
        Self { status: StatusCode::NOT_FOUND, message: m.into() }
    }
    /// 401 for a missing or wrong API key.
    pub fn unauthorized(m: impl Into<String>) -> Self {
        Self { status: StatusCode::UNAUTHORIZED, message: m.into() }
    }
    /// 503: not ready yet.
    pub fn unavailable(m: impl Into<String>) -> Self {
        Self { status: StatusCode::SERVICE_UNAVAILABLE, message: m.into() }
    }
    /// Any status with a message.
    pub fn new(status: StatusCode, m: impl Into<String>) -> Self {
        Self { status, message: m.into() }
    }
    /// 500; the detail is logged, not sent.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self { status: StatusCode::INTERNAL_SERVER_ERROR, message: "internal error".into() }
    }
    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::internal(e)
    }
}

/// The body of every error response.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(ErrorBody { error: self.message })).into_response()
    }
}
