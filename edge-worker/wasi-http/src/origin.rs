//! The feed's [`Origin`] over `wasi:http/outgoing-handler`: GETs bounded in
//! time (connect, first byte, between bytes) and in size, started at once and
//! waited for later, so that the personal request overlaps with the
//! component's own work. Nothing is cached: these hosts instantiate the
//! component per request, so every shared answer is a miss (a CDN in front of
//! the origin is the shared cache).

use std::time::{Duration, Instant};

use edgewise_edge_feed::origin::{ORIGIN_TIMEOUT, read_bounded};
use edgewise_edge_feed::{Config, Origin, OriginError, OriginUrl, Served};
use edgewise_wire::CacheStatus;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    Fields, FutureIncomingResponse, IncomingBody, Method, OutgoingRequest, RequestOptions, Scheme,
};

/// The origin of one request.
pub struct WasiOrigin {
    url: OriginUrl,
    api_key: Option<String>,
}

impl WasiOrigin {
    /// The origin the settings name.
    pub fn new(cfg: &Config) -> Self {
        WasiOrigin { url: cfg.origin.clone(), api_key: cfg.api_key.clone() }
    }

    /// Starts `GET {origin}{path}` with `token` as its Bearer credential.
    fn start(&self, path: &str, token: Option<&str>, max_bytes: usize) -> Result<Pending, OriginError> {
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
        req.set_scheme(Some(if self.url.https { &Scheme::Https } else { &Scheme::Http }))
            .map_err(|()| bad("scheme"))?;
        req.set_authority(Some(&self.url.authority)).map_err(|()| bad("authority"))?;
        req.set_path_with_query(Some(&format!("{}{path}", self.url.prefix))).map_err(|()| bad("path"))?;
        let options = RequestOptions::new();
        let ns = ORIGIN_TIMEOUT.as_nanos() as u64;
        // A host that cannot honour a time-out says so; the request still goes.
        let _ = options.set_connect_timeout(Some(ns));
        let _ = options.set_first_byte_timeout(Some(ns));
        let _ = options.set_between_bytes_timeout(Some(ns));
        let future = outgoing_handler::handle(req, Some(options)).map_err(|e| OriginError::Failed(format!("{e:?}")))?;
        let path = path.split('?').next().unwrap_or_default().to_string();
        Ok(Pending { future, path, max_bytes, started: Instant::now() })
    }
}

impl Origin for WasiOrigin {
    type Pending = Pending;

    fn start_personal(&mut self, path: &str, token: &str, max_bytes: usize) -> Result<Pending, OriginError> {
        self.start(path, Some(token), max_bytes)
    }

    fn wait(&mut self, pending: Pending, deadline: Option<Duration>) -> Result<Option<Served>, OriginError> {
        pending.wait(deadline)
    }

    fn shared(&mut self, path: &str, max_bytes: usize) -> Result<Served, OriginError> {
        self.start(path, None, max_bytes)?.wait(None)?.ok_or_else(|| OriginError::Refused("no answer".into()))
    }
}

/// An origin request in flight.
pub struct Pending {
    future: FutureIncomingResponse,
    path: String,
    max_bytes: usize,
    started: Instant,
}

impl Pending {
    /// Waits for the answer, at most `deadline` (`Ok(None)` past it; the
    /// request is then dropped, which cancels it).
    fn wait(self, deadline: Option<Duration>) -> Result<Option<Served>, OriginError> {
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
            Some(Ok(Err(e))) => return Err(OriginError::Failed(format!("{e:?}"))),
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
        let mut stream = body.stream().map_err(|()| OriginError::Body("no body stream".into()))?;
        let bytes = read_bounded(&mut stream, self.max_bytes).map_err(|e| match e {
            None => too_large(),
            Some(e) => OriginError::Body(e.to_string()),
        })?;
        drop(stream);
        drop(IncomingBody::finish(body));
        drop(resp);
        if status != 200 {
            return Err(OriginError::status(status, &bytes));
        }
        Ok(Some(Served { body: bytes, ms: self.started.elapsed().as_secs_f64() * 1e3, cache: CacheStatus::Miss }))
    }
}
