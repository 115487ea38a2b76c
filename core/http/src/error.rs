//! The JSON error body both servers send with every 4xx and 5xx they produce:
//! `{"error": "<what went wrong, naming the problem>"}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
}

/// A response with `status` and an [`ErrorBody`] carrying `message`.
pub fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(ErrorBody { error: message.into() })).into_response()
}
