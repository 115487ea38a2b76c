//! The origin as the feed sees it: its base URL, what it answered, why it
//! gave nothing usable, and the [`Origin`] trait a platform implements (a
//! bounded GET, a personal request started early and waited for until a
//! deadline, and shared GETs its cache may serve).

use std::time::Duration;

use edgewise_wire::CacheStatus;

use crate::HttpError;

/// How long an origin request may take to connect, and then to its first byte.
pub const ORIGIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The origin's base URL, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginUrl {
    /// `https` (else `http`).
    pub https: bool,
    /// `host[:port]`.
    pub authority: String,
    /// A path prefix without its trailing `/` (usually empty).
    pub prefix: String,
}

impl OriginUrl {
    /// Parses `http://host:port[/prefix]` or `https://…`.
    pub fn parse(url: &str) -> Result<Self, String> {
        let url = url.trim();
        let (https, rest) = if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else {
            return Err(format!("{url:?} is not an http:// or https:// URL"));
        };
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains(['@', '?', '#', ' ']) || prefix.contains(['?', '#']) {
            return Err(format!("{url:?} is not a base URL (scheme://host[:port][/prefix])"));
        }
        Ok(OriginUrl { https, authority: authority.to_string(), prefix: prefix.to_string() })
    }

    /// The host without the port.
    pub fn host(&self) -> &str {
        match self.authority.rsplit_once(':') {
            Some((h, port)) if !h.is_empty() && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => &self.authority,
        }
    }

    /// `host:port`, the port explicit.
    pub fn host_port(&self) -> String {
        if self.host().len() < self.authority.len() {
            self.authority.clone()
        } else {
            format!("{}:{}", self.authority, if self.https { 443 } else { 80 })
        }
    }

    /// The absolute URL of `path` (which starts with `/` and may carry a query).
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}{path}", if self.https { "https" } else { "http" }, self.authority, self.prefix)
    }
}

/// What the origin (or the platform's cache in front of it) answered: a 200.
#[derive(Debug, Clone, PartialEq)]
pub struct Served {
    /// The body (at most the limit the request was made with).
    pub body: Vec<u8>,
    /// Milliseconds from the start of the request to the end of its body.
    pub ms: f64,
    /// How a cache served it (`Miss` where there is no cache).
    pub cache: CacheStatus,
}

/// Why the origin gave nothing usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginError {
    /// The platform would not send it.
    Refused(String),
    /// The request failed (connection, time-out, protocol).
    Failed(String),
    /// The answer is larger than allowed.
    TooLarge {
        /// The path asked for.
        path: String,
        /// The limit.
        max: usize,
    },
    /// The answer's body broke off.
    Body(String),
    /// An answer other than 200.
    Status {
        /// Its status.
        status: u16,
        /// The start of its body.
        body: String,
    },
}

impl OriginError {
    /// As the client sees it (the JS adapter's `clientError` and the Rust
    /// edge's `origin_failure`: an origin's own 4xx passes, the rest is 503 or 502).
    pub fn to_http(&self) -> HttpError {
        match self {
            OriginError::TooLarge { path, max } => {
                HttpError::new(502, format!("the origin's answer for {path} is larger than {max} bytes"))
            }
            OriginError::Status { status, body } => HttpError::new(
                if (400..600).contains(status) { *status } else { 502 },
                format!("the origin answered {status}: {body}"),
            ),
            _ => HttpError::new(503, "the origin is unavailable"),
        }
    }

    /// A line for the platform's log, with the detail the client does not get.
    pub fn detail(&self) -> String {
        match self {
            OriginError::Refused(m) | OriginError::Body(m) | OriginError::Failed(m) => m.clone(),
            e => e.to_http().message,
        }
    }

    /// The start of an error answer's body, as [`OriginError::Status`] keeps it.
    pub fn status(status: u16, body: &[u8]) -> Self {
        OriginError::Status { status, body: String::from_utf8_lossy(&body[..body.len().min(1024)]).into_owned() }
    }
}

/// The origin, as one platform reaches it.
pub trait Origin {
    /// A personal request in flight.
    type Pending;

    /// Starts `GET {origin}{path}` with the user's Bearer `token`; the
    /// answer is the user's own and is never stored by a shared cache.
    fn start_personal(&mut self, path: &str, token: &str, max_bytes: usize) -> Result<Self::Pending, OriginError>;

    /// Waits for a personal answer, at most `deadline` (`Ok(None)` past it;
    /// the request is then abandoned).
    fn wait(&mut self, pending: Self::Pending, deadline: Option<Duration>) -> Result<Option<Served>, OriginError>;

    /// `GET {origin}{path}` for an answer every user shares (a regional
    /// bundle, a model, the model manifest), which the platform's cache may
    /// serve and store as the origin's `Cache-Control` allows.
    fn shared(&mut self, path: &str, max_bytes: usize) -> Result<Served, OriginError>;
}

/// Reads `r` to its end, refusing more than `max` bytes (`Err(None)`) and
/// reporting a broken read (`Err(Some(e))`).
pub fn read_bounded(r: &mut impl std::io::Read, max: usize) -> Result<Vec<u8>, Option<std::io::Error>> {
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let n = match r.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Some(e)),
        };
        if n == 0 {
            return Ok(out);
        }
        if out.len() + n > max {
            return Err(None);
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_split_and_rebuilt() {
        let o = OriginUrl::parse("http://127.0.0.1:8080/api/").expect("valid");
        assert_eq!((o.https, o.authority.as_str(), o.prefix.as_str()), (false, "127.0.0.1:8080", "/api"));
        assert_eq!(o.url("/v1/feed?k=1"), "http://127.0.0.1:8080/api/v1/feed?k=1");
        assert_eq!((o.host(), o.host_port().as_str()), ("127.0.0.1", "127.0.0.1:8080"));
        let s = OriginUrl::parse("https://origin.example").expect("valid");
        assert_eq!((s.host(), s.host_port().as_str()), ("origin.example", "origin.example:443"));
        for bad in ["ftp://x", "http://", "http://u@h", "http://h/p?q", "origin.example"] {
            assert!(OriginUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bounded_reads_stop_at_the_limit() {
        assert_eq!(read_bounded(&mut &[7u8; 10][..], 10).expect("fits"), vec![7u8; 10]);
        assert!(matches!(read_bounded(&mut &[7u8; 11][..], 10), Err(None)));
    }

    #[test]
    fn origin_failures_become_the_clients_statuses() {
        assert_eq!(OriginError::status(404, b"no such user").to_http().status, 404);
        assert_eq!(OriginError::Status { status: 302, body: String::new() }.to_http().status, 502);
        assert_eq!(OriginError::Failed("reset".into()).to_http().status, 503);
        assert_eq!(OriginError::TooLarge { path: "/b".into(), max: 1 }.to_http().status, 502);
    }
}
