//! The JSON error response both servers send with every 4xx and 5xx they
//! produce; the body type is [`edgewise_wire::ErrorBody`].

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

pub use edgewise_wire::ErrorBody;

/// A response with `status` and an [`ErrorBody`] carrying `message`.
pub fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(ErrorBody { error: message.into() })).into_response()
}
