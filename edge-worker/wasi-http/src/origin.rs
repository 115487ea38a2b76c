//! GETs at the origin through `wasi:http/outgoing-handler`: bounded in time
//! (connect and first byte) and in size, started at once and waited for
//! later, so that a request can overlap with the component's own work.

use std::time::{Duration, Instant};

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, FutureIncomingResponse, IncomingBody, Method, OutgoingRequest, RequestOptions, Scheme,
};

use crate::{Bounded, HttpError};

/// How long a request may take to connect, and then to its first byte.
pub const ORIGIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The origin's base URL, split for `outgoing-request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `http` or `https`.
    pub https: bool,
    /// `host[:port]`.
    pub authority: String,
    /// A path prefix without its trailing `/` (usually empty).
    pub prefix: String,
    /// Sent as `X-Api-Key` when set.
    pub api_key: Option<String>,
}

impl Origin {
    /// Parses `http://host:port[/prefix]`.
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
        Ok(Origin { https, authority: authority.to_string(), prefix: prefix.to_string(), api_key: None })
    }

    /// Starts `GET {origin}{path}` with `token` as its Bearer credential.
    pub fn start(&self, path: &str, token: Option<&str>, max_bytes: usize) -> Result<Pending, OriginError> {
        let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
        if let Some(t) = token {
            headers.push(("authorization".into(), format!("Bearer {t}").into_bytes()));
        }
        if let Some(k) = &self.api_key {
            headers.push((edgewise_wire::headers::API_KEY.into(), k.clone().into_bytes()));
        }
        let fields = Fields::from_list(&headers).map_err(|e| OriginError::Refused(format!("{e:?}")))?;
        let req = OutgoingRequest::new(fields);
        let bad = |what: &str| OriginError::Refused(format!("the host refused the request's {what}"));
        req.set_method(&Method::Get).map_err(|()| bad("method"))?;
        req.set_scheme(Some(if self.https { &Scheme::Https } else { &Scheme::Http })).map_err(|()| bad("scheme"))?;
        req.set_authority(Some(&self.authority)).map_err(|()| bad("authority"))?;
        req.set_path_with_query(Some(&format!("{}{path}", self.prefix))).map_err(|()| bad("path"))?;
        let options = RequestOptions::new();
        let ns = ORIGIN_TIMEOUT.as_nanos() as u64;
        // A host that cannot honour a time-out says so; the request still goes.
        let _ = options.set_connect_timeout(Some(ns));
        let _ = options.set_first_byte_timeout(Some(ns));
        let _ = options.set_between_bytes_timeout(Some(ns));
        let future = outgoing_handler::handle(req, Some(options)).map_err(OriginError::Failed)?;
        let path = path.split('?').next().unwrap_or_default().to_string();
        Ok(Pending { future, path, max_bytes, started: Instant::now() })
    }
}

/// An origin request in flight.
pub struct Pending {
    future: FutureIncomingResponse,
    path: String,
    max_bytes: usize,
    started: Instant,
}

/// What the origin answered.
#[derive(Debug)]
pub struct OriginResponse {
    /// Its status.
    pub status: u16,
    /// Its body (at most the limit the request was started with).
    pub body: Vec<u8>,
    /// Milliseconds from the start of the request to the end of its body.
    pub ms: f64,
}

/// Why the origin gave nothing usable.
#[derive(Debug, Clone)]
pub enum OriginError {
    /// The host would not send it.
    Refused(String),
    /// The request failed (connection, time-out, protocol).
    Failed(ErrorCode),
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

    /// A line for the component's log (stderr), with the detail the client does not get.
    pub fn detail(&self) -> String {
        match self {
            OriginError::Refused(m) | OriginError::Body(m) => m.clone(),
            OriginError::Failed(e) => format!("{e:?}"),
            e => e.to_http().message,
        }
    }
}

impl Pending {
    /// Waits for the answer, at most `deadline` (`Ok(None)` past it; the
    /// request is then dropped, which cancels it).
    pub fn wait(self, deadline: Option<Duration>) -> Result<Option<OriginResponse>, OriginError> {
        let ready = self.future.subscribe();
        match deadline {
            None => ready.block(),
            Some(d) => {
                let timer = wasip2::clocks::monotonic_clock::subscribe_duration(d.as_nanos() as u64);
                let _ = wasip2::io::poll::poll(&[&ready, &timer]);
                if !ready.ready() {
                    return Ok(None);
                }
            }
        }
        drop(ready);
        let resp = match self.future.get() {
            Some(Ok(Ok(r))) => r,
            Some(Ok(Err(e))) => return Err(OriginError::Failed(e)),
            Some(Err(())) | None => return Err(OriginError::Refused("the response was already taken".into())),
        };
        let status = resp.status();
        let declared = resp
            .headers()
            .get("content-length")
            .first()
            .and_then(|v| std::str::from_utf8(v).ok().and_then(|s| s.trim().parse::<u64>().ok()));
        let too_large = || OriginError::TooLarge { path: self.path.clone(), max: self.max_bytes };
        if declared.is_some_and(|n| n > self.max_bytes as u64) {
            return Err(too_large());
        }
        let body: IncomingBody = resp.consume().map_err(|()| OriginError::Body("no body".into()))?;
        let stream = body.stream().map_err(|()| OriginError::Body("no body stream".into()))?;
        let bytes = crate::read_bounded(stream, self.max_bytes).map_err(|e| match e {
            Bounded::TooLarge => too_large(),
            Bounded::Io(e) => OriginError::Body(e.to_string()),
        })?;
        drop(IncomingBody::finish(body));
        drop(resp);
        if status != 200 {
            let head = String::from_utf8_lossy(&bytes[..bytes.len().min(1024)]).into_owned();
            return Err(OriginError::Status { status, body: head });
        }
        Ok(Some(OriginResponse { status, body: bytes, ms: self.started.elapsed().as_secs_f64() * 1e3 }))
    }
}
