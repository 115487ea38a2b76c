//! The JSON error body: `{"error": "<what went wrong, naming the problem>"}`.

use alloc::string::String;

/// The body of every error response both servers send.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
}
