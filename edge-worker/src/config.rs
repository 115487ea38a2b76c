//! Layered configuration, the same way as the origin's: built-in defaults,
//! then a TOML file (`--config`), then `EDGEWISE_EDGE__SECTION__KEY`
//! environment variables, then command-line flags.
//!
//! Everything but the origin's URL has a default that works. Example file:
//!
//! ```toml
//! [origin]
//! url = "http://origin.internal:8080"
//! timeout_ms = 5000
//!
//! [server]
//! listen = "0.0.0.0:8081"
//! admin_keys = ["s3cret"]        # none: the admin routes are disabled
//! cors_origins = ["https://app.example"]  # pages that may call the edge from a browser
//!
//! [auth.user_tokens]             # the same section as the origin's
//! hmac_secrets = ["<32+ random bytes shared with the app's backend>"]
//!
//! [cache]
//! bytes = 536870912
//! dir = "/var/cache/edgewise"    # keep what is stored on disk too: a restart starts warm
//! disk_bytes = 10737418240       # bound on the bodies kept there
//!
//! [guest]
//! module_digest = "9f2c…"      # fetch the module from the origin
//! public_key = "…"             # and require its ed25519 signature
//! deadline_ms = 10
//! memory_mib = 64
//! instances = "pooled"         # or "fresh"
//!
//! [feed]
//! refine_deadline_ms = 150
//! ```
//!
//! The same key from the environment: `EDGEWISE_EDGE__GUEST__DEADLINE_MS=20`.
//! (The origin reads `EDGEWISE__…`; the edge's own prefix keeps the two apart
//! on a host that runs both.)
//!
//! This module is the schema and its defaults, and nothing else: it sits at
//! the bottom of the crate. Each layer builds its own settings from its
//! section (`guest::Limits::from(&cfg.guest)`, `tenants::GuestOptions::from(&cfg.guest)`,
//! `feed::FeedConfig::from(&cfg.feed)`, `server::ServerSettings::from(&cfg)`),
//! so the defaults are written once, here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use edgewise_http::admission::AdmissionConfig;
use edgewise_http::serve::ServeOptions;

/// The environment prefix.
pub const ENV_PREFIX: &str = "EDGEWISE_EDGE__";

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    /// `[origin]`: where the origin is, and how the edge talks to it.
    pub origin: OriginConfig,
    /// `[server]`: the address, the admin keys, body and connection limits.
    pub server: ServerConfig,
    /// `[cache]`: how much the regional cache holds.
    pub cache: CacheConfig,
    /// `[guest]`: the guest module, its sandbox and its instances.
    pub guest: GuestConfig,
    /// `[feed]`: the refinement deadline, bundle sizes, clock skew.
    pub feed: FeedSettings,
    /// `[auth]`: how user tokens are verified.
    pub auth: AuthConfig,
}

/// `[auth]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// How user tokens are verified: the same keys as the origin's
    /// `auth.user_tokens`, so the edge checks a user's token without asking the
    /// origin. Personal feeds and `/v1/users/…` need one; with no key
    /// configured they answer 401.
    pub user_tokens: edgewise_http::auth::UserTokenConfig,
}

/// `[origin]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OriginConfig {
    /// Base URL, `http://host:port` (required).
    pub url: String,
    /// Timeout of one origin request, in ms.
    pub timeout_ms: u64,
    /// A read key sent (as `X-Api-Key`) with every request to the origin,
    /// for an origin whose `auth.read_keys` is set.
    pub api_key: Option<String>,
}

impl Default for OriginConfig {
    fn default() -> Self {
        Self { url: String::new(), timeout_ms: 5000, api_key: None }
    }
}

/// `[server]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Keys accepted on admin routes; empty: the admin routes are disabled (403).
    pub admin_keys: Vec<String>,
    /// Largest request body in bytes (413 beyond, before it is read when declared).
    pub max_body_bytes: usize,
    /// Bytes of request bodies all requests together may hold at once (429 beyond).
    pub body_budget_bytes: usize,
    /// Requests doing work at once (429 with `Retry-After` beyond); health routes are outside the cap.
    pub max_in_flight: usize,
    /// Time a client has to send a request's headers, in ms; also the longest a keep-alive connection may idle.
    pub header_read_timeout_ms: u64,
    /// Time a client has to send a request's body, in ms (408 beyond).
    pub body_read_timeout_ms: u64,
    /// Connections open at once; beyond it new ones wait in the listen backlog.
    pub max_connections: usize,
    /// Web origins (`https://app.example`) whose pages may call this edge
    /// from the browser (CORS); `["*"]`: any page. Empty: no CORS headers,
    /// so only same-origin pages can read the answers.
    pub cors_origins: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let a = AdmissionConfig::default();
        let s = ServeOptions::default();
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            admin_keys: Vec::new(),
            max_body_bytes: a.max_body_bytes,
            body_budget_bytes: a.body_budget_bytes,
            max_in_flight: 1024,
            header_read_timeout_ms: u64::try_from(s.header_read_timeout.as_millis()).unwrap_or(10_000),
            body_read_timeout_ms: u64::try_from(a.body_timeout.as_millis()).unwrap_or(10_000),
            max_connections: s.max_connections,
            cors_origins: Vec::new(),
        }
    }
}

/// `[cache]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Most bytes of responses held in memory (least recently used out first).
    pub bytes: u64,
    /// Where stored responses are also kept on disk, so a restarted edge
    /// starts warm (`edgewise_edge::disk`); none: memory only.
    pub dir: Option<std::path::PathBuf>,
    /// Most bytes of bodies kept on disk (oldest out first).
    pub disk_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self { bytes: 256 << 20, dir: None, disk_bytes: 1 << 30 }
    }
}

/// `[guest]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GuestConfig {
    /// The module file (default: the one `cargo xtask guest` builds).
    pub module: Option<PathBuf>,
    /// Fetch the module from the origin (`GET /v1/modules/{digest}`) instead.
    pub module_digest: Option<String>,
    /// ed25519 public key (64 hex digits or base64) fetched modules must be signed by.
    pub public_key: Option<String>,
    /// Wall-clock budget of one guest operation, in ms.
    pub deadline_ms: u64,
    /// Largest linear memory of one instance, in MiB.
    pub memory_mib: usize,
    /// Fuel per operation (a deterministic instruction budget); unset: unmetered.
    pub fuel: Option<u64>,
    /// Instance slots of the pooling allocator (rankings in flight plus idle instances).
    pub slots: u32,
    /// `pooled` (reuse instances with their model loaded) or `fresh` (one per ranking).
    pub instances: InstanceMode,
    /// Idle instances kept per tenant, pooled mode.
    pub max_idle: usize,
    /// Rankings run at once; 0: one per core.
    pub concurrency: usize,
    /// Cache compiled modules on disk.
    pub compiled_cache: bool,
    /// Where [default: `$XDG_CACHE_HOME/edgewise/compiled`, else `~/.cache/edgewise/compiled`].
    pub compiled_cache_dir: Option<PathBuf>,
}

impl Default for GuestConfig {
    fn default() -> Self {
        Self {
            module: None,
            module_digest: None,
            public_key: None,
            deadline_ms: 10,
            memory_mib: 64,
            fuel: None,
            slots: 128,
            instances: InstanceMode::Pooled,
            max_idle: 8,
            concurrency: 0,
            compiled_cache: true,
            compiled_cache_dir: None,
        }
    }
}

/// How a ranking gets its guest instance (`guest.instances`); what each mode
/// does is described in [`crate::pool`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceMode {
    /// A new instance per ranking, model loaded each time.
    Fresh,
    /// Idle instances are reused, and keep their model loaded.
    #[default]
    Pooled,
}

/// A `guest.instances` value that is neither mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("instance mode {0:?} is neither \"fresh\" nor \"pooled\"")]
pub struct UnknownInstanceMode(pub String);

impl std::str::FromStr for InstanceMode {
    type Err = UnknownInstanceMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fresh" => Ok(Self::Fresh),
            "pooled" => Ok(Self::Pooled),
            other => Err(UnknownInstanceMode(other.to_string())),
        }
    }
}

/// `[feed]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FeedSettings {
    /// How long a plain-JSON feed request waits for the refined ranking, in ms.
    pub refine_deadline_ms: u64,
    /// Candidates asked of the origin for each bundle.
    pub candidates: usize,
    /// How far a request's `now_ms` may be from the edge's clock, in ms (400 beyond).
    pub max_clock_skew_ms: u64,
    /// Bytes of memory for users' kept personal bundles (each user's last
    /// refined bundle, ranked in their next preliminary frame); 0 keeps none.
    pub kept_bytes: u64,
    /// How long a kept personal bundle may be used, in seconds.
    pub kept_max_age_s: u64,
}

impl Default for FeedSettings {
    fn default() -> Self {
        Self {
            refine_deadline_ms: 150,
            candidates: 300,
            max_clock_skew_ms: 3_600_000,
            kept_bytes: 64 << 20,
            kept_max_age_s: 86_400,
        }
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl EdgeConfig {
    /// Loads defaults ← `file` ← environment ← `overrides` (a partial config from flags).
    pub fn load(file: Option<&Path>, overrides: &[(&str, figment::value::Value)]) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(EdgeConfig::default()));
        if let Some(f) = file {
            if !f.exists() {
                return Err(ConfigError(format!("config file {} does not exist", f.display())));
            }
            fig = fig.merge(Toml::file(f));
        }
        fig = fig.merge(Env::prefixed(ENV_PREFIX).split("__").lowercase(true));
        for (key, value) in overrides {
            fig = fig.merge(Serialized::global(key, value.clone()));
        }
        let cfg: EdgeConfig = fig.extract().map_err(|e| ConfigError(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks values that types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError(m.to_string()));
        let url = self.origin.url.trim_end_matches('/');
        if url.is_empty() {
            return bad("origin.url is required (--origin URL, or [origin] url in the config file)");
        }
        if !(url.starts_with("http://") && url.len() > "http://".len()) {
            return Err(ConfigError(format!(
                "origin.url {:?} must be an http:// URL (https origins need a TLS-terminating proxy for now)",
                self.origin.url
            )));
        }
        if self.origin.timeout_ms == 0 {
            return bad("origin.timeout_ms must be at least 1");
        }
        if self.cache.bytes == 0 {
            return bad("cache.bytes must be at least 1");
        }
        if self.cache.dir.is_some() && self.cache.disk_bytes == 0 {
            return bad("cache.disk_bytes must be at least 1 when cache.dir is set");
        }
        let (admission, serve) = self.http_limits();
        edgewise_http::check_limits(&admission, &serve).map_err(ConfigError)?;
        if self.origin.api_key.as_deref().is_some_and(|k| k.is_empty() || !k.bytes().all(|b| b.is_ascii_graphic())) {
            return bad("origin.api_key must be printable ASCII without spaces");
        }
        edgewise_http::auth::UserTokens::new(&self.auth.user_tokens).map_err(|e| ConfigError(e.to_string()))?;
        let g = &self.guest;
        if g.module.is_some() && g.module_digest.is_some() {
            return bad(
                "guest.module and guest.module_digest are exclusive: load the module from a file or from the origin",
            );
        }
        if g.deadline_ms == 0 || g.deadline_ms > 60_000 {
            return Err(ConfigError(format!("guest.deadline_ms = {} must be in 1..=60000", g.deadline_ms)));
        }
        if g.memory_mib == 0 || g.memory_mib > 4096 {
            return Err(ConfigError(format!("guest.memory_mib = {} must be in 1..=4096", g.memory_mib)));
        }
        if g.fuel == Some(0) {
            return bad("guest.fuel must be at least 1 when it is set");
        }
        if g.slots == 0 {
            return bad("guest.slots must be at least 1");
        }
        if g.max_idle >= g.slots as usize {
            return Err(ConfigError(format!(
                "guest.max_idle = {} must be below guest.slots = {}, or idle instances would take every slot",
                g.max_idle, g.slots
            )));
        }
        check_cors_origins(&self.server.cors_origins)?;
        if self.feed.candidates == 0 || self.feed.candidates > 5000 {
            return Err(ConfigError(format!("feed.candidates = {} must be in 1..=5000", self.feed.candidates)));
        }
        if self.feed.kept_max_age_s > 30 * 86_400 {
            return Err(ConfigError(format!(
                "feed.kept_max_age_s = {} must be at most 2592000 (30 days)",
                self.feed.kept_max_age_s
            )));
        }
        Ok(())
    }

    /// The origin's URL without a trailing slash.
    pub fn origin_url(&self) -> &str {
        self.origin.url.trim_end_matches('/')
    }

    /// The `[server]` body, in-flight and connection limits, in
    /// [`edgewise_http`]'s terms.
    pub fn http_limits(&self) -> (AdmissionConfig, ServeOptions) {
        let sv = &self.server;
        let admission = AdmissionConfig {
            max_body_bytes: sv.max_body_bytes,
            body_timeout: Duration::from_millis(sv.body_read_timeout_ms),
            body_budget_bytes: sv.body_budget_bytes,
            max_in_flight: sv.max_in_flight,
        };
        let serve = ServeOptions {
            header_read_timeout: Duration::from_millis(sv.header_read_timeout_ms),
            max_connections: sv.max_connections,
            ..Default::default()
        };
        (admission, serve)
    }

    /// The compiled-module cache directory, if caching is on and a directory is known.
    pub fn compiled_cache_dir(&self) -> Option<PathBuf> {
        if !self.guest.compiled_cache {
            return None;
        }
        if let Some(d) = &self.guest.compiled_cache_dir {
            return Some(d.clone());
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".cache")))?;
        Some(base.join("edgewise").join("compiled"))
    }
}

/// Checks `server.cors_origins`: `["*"]`, or web origins written as a browser
/// sends them in `Origin` (`scheme://host[:port]`, no path, no trailing slash).
pub fn check_cors_origins(origins: &[String]) -> Result<(), ConfigError> {
    if origins.iter().any(|o| o == "*") {
        return if origins.len() == 1 {
            Ok(())
        } else {
            Err(ConfigError("server.cors_origins: \"*\" allows every page; list it alone".into()))
        };
    }
    for o in origins {
        let rest = o.strip_prefix("https://").or_else(|| o.strip_prefix("http://"));
        let ok = rest
            .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)));
        if !ok {
            return Err(ConfigError(format!(
                "server.cors_origins: {o:?} is not a web origin (scheme://host[:port], no path or trailing slash)"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
// `figment::Jail` closures return figment's (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    fn file(name: &str, text: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("ew-edge-config-{name}-{}.toml", std::process::id()));
        std::fs::write(&p, text).expect("write");
        p
    }

    #[test]
    fn layers_apply_in_order() {
        figment::Jail::expect_with(|jail| {
            let f = file(
                "layers",
                "[origin]\nurl = \"http://o:1\"\n[guest]\ndeadline_ms = 20\nmemory_mib = 32\ninstances = \"fresh\"\n[feed]\ncandidates = 100\n",
            );
            let cfg = EdgeConfig::load(Some(&f), &[]).map_err(|e| e.to_string())?;
            assert_eq!(cfg.origin_url(), "http://o:1");
            let limits = crate::guest::Limits::from(&cfg.guest);
            assert_eq!(limits.deadline, Duration::from_millis(20));
            assert_eq!(limits.memory_bytes, 32 << 20);
            assert_eq!(cfg.guest.instances, InstanceMode::Fresh);
            assert_eq!(cfg.server.listen, ServerConfig::default().listen, "untouched keys keep their defaults");

            jail.set_env("EDGEWISE_EDGE__GUEST__DEADLINE_MS", "30");
            jail.set_env("EDGEWISE_EDGE__FEED__CANDIDATES", "200");
            let cfg = EdgeConfig::load(Some(&f), &[]).map_err(|e| e.to_string())?;
            assert_eq!(cfg.guest.deadline_ms, 30, "the environment beats the file");
            assert_eq!(cfg.feed.candidates, 200);

            let cfg = EdgeConfig::load(Some(&f), &[("guest.deadline_ms", 40u64.into())]).map_err(|e| e.to_string())?;
            assert_eq!(cfg.guest.deadline_ms, 40, "flags beat the environment");
            assert_eq!(cfg.guest.memory_mib, 32);
            Ok(())
        });
    }

    #[test]
    fn bad_configurations_name_the_problem() {
        let cases: [(&str, &str); 12] = [
            ("", "origin.url is required"),
            ("[origin]\nurl = \"https://o\"\n", "must be an http:// URL"),
            ("[origin]\nurl = \"http://o\"\n[guest]\ndeadline_ms = 0\n", "guest.deadline_ms = 0"),
            ("[origin]\nurl = \"http://o\"\n[guest]\nmemory_mib = 9000\n", "guest.memory_mib = 9000"),
            ("[origin]\nurl = \"http://o\"\n[guest]\ninstances = \"warm\"\n", "warm"),
            ("[origin]\nurl = \"http://o\"\n[guest]\nslots = 4\nmax_idle = 4\n", "guest.max_idle = 4"),
            ("[origin]\nurl = \"http://o\"\n[guest]\nmodule = \"a.wasm\"\nmodule_digest = \"ab\"\n", "exclusive"),
            ("[origin]\nurl = \"http://o\"\n[cache]\nbites = 5\n", "bites"),
            ("[origin]\nurl = \"http://o\"\n[feed]\ncandidates = 0\n", "feed.candidates = 0"),
            ("[origin]\nurl = \"http://o\"\n[feed]\nkept_max_age_s = 9999999\n", "feed.kept_max_age_s = 9999999"),
            ("[origin]\nurl = \"http://o\"\n[server]\ncors_origins = [\"http://a/\"]\n", "is not a web origin"),
            ("[origin]\nurl = \"http://o\"\n[server]\ncors_origins = [\"*\", \"http://a\"]\n", "list it alone"),
        ];
        // Inside a jail: another test sets `EDGEWISE_EDGE__…` variables in its own.
        figment::Jail::expect_with(|_| {
            for (i, (text, want)) in cases.iter().enumerate() {
                let f = file(&format!("bad{i}"), text);
                let e = EdgeConfig::load(Some(&f), &[]).expect_err(text).to_string();
                assert!(e.contains(want), "{text:?}: expected {want:?} in {e}");
            }
            let e = EdgeConfig::load(Some(Path::new("/nonexistent/edge.toml")), &[]).expect_err("missing").to_string();
            assert!(e.contains("/nonexistent/edge.toml"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn compiled_cache_dir_defaults_and_switches_off() {
        let mut cfg = EdgeConfig::default();
        cfg.guest.compiled_cache_dir = Some(PathBuf::from("/var/cache/ew"));
        assert_eq!(cfg.compiled_cache_dir(), Some(PathBuf::from("/var/cache/ew")));
        cfg.guest.compiled_cache = false;
        assert_eq!(cfg.compiled_cache_dir(), None);
    }
}
