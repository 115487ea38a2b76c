//! The model manifest: which model a user gets.

use alloc::string::String;

use edgewise_core::Digest;

/// A model being rolled out to a share of users.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Canary {
    /// The model.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub digest: Digest,
    /// Share of users, 1–100.
    pub percent: u8,
}

/// `GET /v1/models/current`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelManifest {
    /// The model this user (or, without `user`, everyone on stable) gets.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub digest: Digest,
    /// Where to fetch it.
    pub url: String,
    /// The stable model.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub stable: Option<Digest>,
    /// The canary, if one is rolling out.
    pub canary: Option<Canary>,
}
