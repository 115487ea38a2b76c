//! # edgewise-http
//!
//! The HTTP plumbing the origin (`edgewise-origin`) and the edge
//! (`edgewise-edge`) share, so that both servers defend themselves the same
//! way and answer the same way:
//!
//! | module | what |
//! |---|---|
//! | [`serve`] | the connection loop: a header-read timeout (which also closes idle keep-alive connections), a cap on open connections, graceful drain, connection metrics |
//! | [`admission`] | what a request may make the server hold: its body is read only after the caller is known, within a size limit, a read timeout and a server-wide budget of body bytes, and the in-flight cap counts requests doing work, not clients trickling bytes |
//! | [`auth`] | who may call a route: service keys (ingest, admin, read) and short-lived user tokens (JWT, HS256 or EdDSA) whose subject is the user |
//! | [`error`] | the JSON error body every 4xx and 5xx carries |
//! | [`metrics`] | connection and admission counters, registered in each server's registry |
//!
//! Every route of both servers is put behind [`admission::Admission`] after
//! its own access check, so the order is always: authenticate on the headers,
//! then read the body, then take a slot of work.

pub mod admission;
pub mod auth;
pub mod error;
pub mod metrics;
pub mod serve;

pub use error::{ErrorBody, json_error};

/// Checks the `[server]` limits both servers share (the keys are the same in
/// each server's configuration); the message names the key.
pub fn check_limits(a: &admission::AdmissionConfig, s: &serve::ServeOptions) -> Result<(), String> {
    if a.max_body_bytes == 0 || a.max_body_bytes > u32::MAX as usize {
        return Err("server.max_body_bytes must be in 1..=4294967295".into());
    }
    if a.body_budget_bytes < a.max_body_bytes {
        return Err("server.body_budget_bytes must be at least server.max_body_bytes".into());
    }
    if a.max_in_flight == 0 || s.max_connections == 0 {
        return Err("server.max_in_flight and server.max_connections must be at least 1".into());
    }
    if s.header_read_timeout.is_zero() || a.body_timeout.is_zero() {
        return Err("server.header_read_timeout_ms and server.body_read_timeout_ms must be at least 1".into());
    }
    Ok(())
}

/// Whether a request's `If-None-Match` matches the entity tagged `tag` (in
/// any representation): both servers answer 304 on it. The header is parsed
/// by [`edgewise_wire::etag::if_none_match`].
pub fn if_none_match(headers: &axum::http::HeaderMap, tag: &str) -> bool {
    // Repeated field lines are one list (RFC 9110 §5.3).
    headers
        .get_all(axum::http::header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| edgewise_wire::etag::if_none_match(v, tag))
}

/// Milliseconds since the Unix epoch: the servers' clock for request times.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue, header};

    #[test]
    fn if_none_match_parsing() {
        let mut h = HeaderMap::new();
        let d = "ab".repeat(32);
        assert!(!if_none_match(&h, &d));
        for v in [format!("\"{d}\""), format!("W/\"{d}\""), format!("\"x\", \"{d}-gzip\""), "*".to_string()] {
            h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(&v).expect("header"));
            assert!(if_none_match(&h, &d), "{v}");
        }
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"abc\""));
        assert!(!if_none_match(&h, &d));
        // A second field line is part of the same list.
        h.append(header::IF_NONE_MATCH, HeaderValue::from_str(&format!("\"{d}\"")).expect("header"));
        assert!(if_none_match(&h, &d));
    }

    #[test]
    fn limits_are_checked_with_the_key_named() {
        let (a, s) = (admission::AdmissionConfig::default(), serve::ServeOptions::default());
        assert_eq!(check_limits(&a, &s), Ok(()));
        let zero_body = admission::AdmissionConfig { max_body_bytes: 0, ..a };
        assert!(check_limits(&zero_body, &s).is_err_and(|e| e.contains("server.max_body_bytes")));
        let small_budget = admission::AdmissionConfig { body_budget_bytes: a.max_body_bytes - 1, ..a };
        assert!(check_limits(&small_budget, &s).is_err_and(|e| e.contains("server.body_budget_bytes")));
        let no_timeout = serve::ServeOptions { header_read_timeout: std::time::Duration::ZERO, ..s };
        assert!(check_limits(&a, &no_timeout).is_err_and(|e| e.contains("server.header_read_timeout_ms")));
    }
}
