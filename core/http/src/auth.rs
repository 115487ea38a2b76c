//! Who may call a route.
//!
//! Two kinds of credential, both read from the request headers before any
//! body is read:
//!
//! * **Service keys** for ingest, admin and (optionally) read routes:
//!   `X-Api-Key: KEY` or `Authorization: Bearer KEY`. A class of routes whose
//!   key list is empty is *disabled* (ingest, admin) or *open* (reads), as the
//!   route decides. Keys are compared in constant time.
//! * **User tokens** for a user's own data: a JWT (RFC 7519) in
//!   `Authorization: Bearer`, signed by the application's backend with HS256
//!   (a shared secret) or EdDSA (Ed25519; the servers hold only the public
//!   key). Its `sub` is the user id (a decimal string); `exp` and `iat` are
//!   required, the lifetime `exp - iat` may not exceed
//!   [`UserTokenConfig::max_lifetime_s`], and `iss`/`aud` are checked when
//!   configured. The origin and the edge verify the same token with the same
//!   configuration, so the edge needs no call to the origin to know who is
//!   asking. With no key configured, every personalized route is refused with
//!   a message that says how to configure one: nothing personal is readable
//!   without a token.
//!
//! Every refusal is a [`Denied`]: 401 with `WWW-Authenticate` when the
//! credential is missing or invalid (an expired token says so, so a client
//! knows to fetch a new one), 403 when a valid credential does not allow the
//! route (a wrong service key, another user's token, a disabled route).

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use subtle::ConstantTimeEq;

/// The header that carries a service key (the alternative to `Authorization: Bearer`).
pub use edgewise_wire::headers::API_KEY as API_KEY_HEADER;

/// Longest credential header value looked at; longer ones are refused unread.
pub const MAX_CREDENTIAL_BYTES: usize = 8 << 10;

/// Why a request may not call a route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs)] // variant fields are described by each variant's error message
pub enum Denied {
    /// No credential was presented (401, `WWW-Authenticate: Bearer`).
    #[error("{0}")]
    Missing(String),
    /// A token was presented but is not valid: malformed, forged, expired,
    /// too long-lived (401, `WWW-Authenticate: Bearer error="invalid_token"`).
    #[error("{0}")]
    InvalidToken(String),
    /// The server has no user-token key, so it cannot serve personal data (401).
    #[error("{}", NOT_CONFIGURED)]
    NotConfigured,
    /// A valid credential that does not allow this route: a wrong service
    /// key, another user's token (403).
    #[error("{0}")]
    Forbidden(String),
    /// The route is disabled because no key of its class is configured (403).
    #[error("{0}")]
    Disabled(String),
}

const NOT_CONFIGURED: &str = "personalized routes need a user token, and this server has no user-token key: \
     configure auth.user_tokens.hmac_secrets (HS256) or auth.user_tokens.ed25519_public_keys (EdDSA) \
     and have the application's backend mint short-lived tokens whose sub is the user id (README: User tokens)";

impl Denied {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Denied::Missing(_) | Denied::InvalidToken(_) | Denied::NotConfigured => StatusCode::UNAUTHORIZED,
            Denied::Forbidden(_) | Denied::Disabled(_) => StatusCode::FORBIDDEN,
        }
    }
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        let mut r = crate::json_error(self.status(), self.to_string());
        let challenge = match &self {
            Denied::Missing(_) | Denied::NotConfigured => Some("Bearer realm=\"edgewise\"".to_string()),
            Denied::InvalidToken(why) => {
                // RFC 6750 §3: the description is a quoted-string of printable ASCII without quotes or backslashes.
                let desc: String =
                    why.chars().filter(|c| c.is_ascii() && !c.is_ascii_control() && *c != '"' && *c != '\\').collect();
                Some(format!("Bearer realm=\"edgewise\", error=\"invalid_token\", error_description=\"{desc}\""))
            }
            Denied::Forbidden(_) | Denied::Disabled(_) => None,
        };
        if let Some(v) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        r
    }
}

/// The credential in `Authorization: Bearer <credential>` (the scheme is case-insensitive).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim()).filter(|t| !t.is_empty())
}

/// The service keys a request presents: `X-Api-Key` and the bearer credential
/// (a request may carry both, e.g. a service key and a user token).
pub fn presented_keys(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    let api_key = headers.get(API_KEY_HEADER).and_then(|v| v.to_str().ok()).map(str::trim).filter(|k| !k.is_empty());
    api_key.into_iter().chain(bearer(headers))
}

/// One class of service keys (ingest, admin, read) and the configuration key that sets them.
#[derive(Clone)]
pub struct ServiceKeys {
    keys: Vec<String>,
    class: &'static str,
    config_key: &'static str,
}

impl std::fmt::Debug for ServiceKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the keys themselves.
        f.debug_struct("ServiceKeys").field("class", &self.class).field("keys", &self.keys.len()).finish()
    }
}

impl ServiceKeys {
    /// `keys` for routes of `class` (`"ingest"`, `"admin"`, …), set by `config_key`.
    pub fn new(keys: &[String], class: &'static str, config_key: &'static str) -> Self {
        Self { keys: keys.iter().filter(|k| !k.is_empty()).cloned().collect(), class, config_key }
    }

    /// Whether any key is configured.
    pub fn is_configured(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Whether the request presents one of these keys (constant-time comparisons).
    pub fn presented_by(&self, headers: &HeaderMap) -> bool {
        presented_keys(headers).any(|k| self.contains(k))
    }

    fn contains(&self, given: &str) -> bool {
        if given.len() > MAX_CREDENTIAL_BYTES {
            return false;
        }
        // Compare against every key, so the time does not say which one matched.
        self.keys.iter().fold(false, |found, k| found | bool::from(k.as_bytes().ct_eq(given.as_bytes())))
    }

    /// A key of this class is required; with none configured the routes are disabled.
    pub fn require(&self, headers: &HeaderMap) -> Result<(), Denied> {
        if !self.is_configured() {
            return Err(Denied::Disabled(format!(
                "{} routes are disabled on this server: configure {}",
                self.class, self.config_key
            )));
        }
        self.check(headers)
    }

    /// A key of this class is required if any is configured; otherwise the routes are open.
    pub fn require_if_configured(&self, headers: &HeaderMap) -> Result<(), Denied> {
        if self.is_configured() { self.check(headers) } else { Ok(()) }
    }

    fn check(&self, headers: &HeaderMap) -> Result<(), Denied> {
        if self.presented_by(headers) {
            Ok(())
        } else if presented_keys(headers).next().is_none() {
            Err(Denied::Missing(format!(
                "this route needs an {} key (X-Api-Key: KEY or Authorization: Bearer KEY)",
                self.class
            )))
        } else {
            Err(Denied::Forbidden(format!("the key is not an {} key", self.class)))
        }
    }
}

/// How user tokens are verified (the same section in the origin's and the edge's configuration).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UserTokenConfig {
    /// HS256 secrets, at least 32 bytes each. Several may be listed while one is rotated out.
    pub hmac_secrets: Vec<String>,
    /// Ed25519 public keys for EdDSA tokens: a PEM `PUBLIC KEY`, or the 32-byte key as 64 hex digits or base64.
    pub ed25519_public_keys: Vec<String>,
    /// The `iss` every token must carry, if set.
    pub issuer: Option<String>,
    /// The `aud` every token must carry, if set.
    pub audience: Option<String>,
    /// Longest lifetime accepted, `exp - iat`, in seconds: user tokens are short-lived.
    pub max_lifetime_s: u64,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub leeway_s: u64,
}

impl Default for UserTokenConfig {
    fn default() -> Self {
        Self {
            hmac_secrets: Vec::new(),
            ed25519_public_keys: Vec::new(),
            issuer: None,
            audience: None,
            max_lifetime_s: 3600,
            leeway_s: 30,
        }
    }
}

/// Why a [`UserTokenConfig`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs)] // variant fields are described by each variant's error message
pub enum TokenConfigError {
    /// An HS256 secret is too short to resist guessing.
    #[error("auth.user_tokens.hmac_secrets[{index}] has {len} bytes; HS256 secrets need at least {min}")]
    ShortSecret {
        /// Position in the list.
        index: usize,
        len: usize,
        min: usize,
    },
    /// An Ed25519 public key could not be read.
    #[error("auth.user_tokens.ed25519_public_keys[{index}]: {reason}")]
    BadPublicKey {
        /// Position in the list.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A lifetime of zero would refuse every token.
    #[error("auth.user_tokens.max_lifetime_s must be at least 1")]
    ZeroLifetime,
}

/// Shortest HS256 secret accepted (RFC 7518 §3.2: a key the size of the hash output).
pub const MIN_HMAC_SECRET_BYTES: usize = 32;

/// What a verified user token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserClaims {
    /// The user the token was issued for (`sub`).
    pub user: u64,
    /// When it expires, seconds since the Unix epoch (`exp`).
    pub expires_at: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    iat: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
}

/// Verifies user tokens ([`UserTokenConfig`]).
#[derive(Clone)]
pub struct UserTokens {
    hmac: Vec<DecodingKey>,
    ed25519: Vec<DecodingKey>,
    hs256: Validation,
    eddsa: Validation,
    max_lifetime_s: u64,
    leeway_s: u64,
}

impl std::fmt::Debug for UserTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserTokens")
            .field("hmac_keys", &self.hmac.len())
            .field("ed25519_keys", &self.ed25519.len())
            .field("max_lifetime_s", &self.max_lifetime_s)
            .finish_non_exhaustive()
    }
}

/// Reads an Ed25519 public key: PEM, 64 hex digits, or base64 (standard or
/// URL-safe, padded or not) of 32 bytes. A string that is not a point on the
/// curve is refused here, at configuration time, rather than per request.
/// (The edge's module-signing key is read with it too.)
pub fn parse_ed25519_public_key(text: &str) -> Result<ed25519_dalek::VerifyingKey, String> {
    let t = text.trim();
    let bytes = if t.starts_with("-----BEGIN") {
        let key = DecodingKey::from_ed_pem(t.as_bytes()).map_err(|e| format!("not an Ed25519 PEM public key: {e}"))?;
        key.try_get_as_bytes().map_err(|e| format!("not an Ed25519 PEM public key: {e}"))?.to_vec()
    } else if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        base16ct::mixed::decode_vec(t).map_err(|e| format!("not hex: {e}"))?
    } else {
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        engines
            .iter()
            .find_map(|e| e.decode(t).ok())
            .ok_or_else(|| "expected a PEM public key, 64 hex digits or base64 of 32 bytes".to_string())?
    };
    let key =
        <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| format!("the key has {} bytes, not 32", bytes.len()))?;
    ed25519_dalek::VerifyingKey::from_bytes(&key).map_err(|_| "not a valid Ed25519 public key".to_string())
}

impl UserTokens {
    /// Keys and rules from the configuration; a bad key is an error naming it.
    pub fn new(cfg: &UserTokenConfig) -> Result<Self, TokenConfigError> {
        if cfg.max_lifetime_s == 0 {
            return Err(TokenConfigError::ZeroLifetime);
        }
        let mut hmac = Vec::new();
        for (index, s) in cfg.hmac_secrets.iter().enumerate() {
            if s.len() < MIN_HMAC_SECRET_BYTES {
                return Err(TokenConfigError::ShortSecret { index, len: s.len(), min: MIN_HMAC_SECRET_BYTES });
            }
            hmac.push(DecodingKey::from_secret(s.as_bytes()));
        }
        let mut ed25519 = Vec::new();
        for (index, k) in cfg.ed25519_public_keys.iter().enumerate() {
            let key = parse_ed25519_public_key(k).map_err(|reason| TokenConfigError::BadPublicKey { index, reason })?;
            ed25519.push(DecodingKey::from_ed_der(key.as_bytes()));
        }
        let validation = |alg| {
            let mut v = Validation::new(alg);
            // Times are checked by `verify` against the caller's clock, with the lifetime cap.
            v.validate_exp = false;
            v.validate_nbf = false;
            v.required_spec_claims.clear();
            v.required_spec_claims.insert("sub".into());
            match &cfg.issuer {
                Some(i) => {
                    v.set_issuer(&[i]);
                    v.required_spec_claims.insert("iss".into());
                }
                None => v.iss = None,
            }
            match &cfg.audience {
                Some(a) => {
                    v.set_audience(&[a]);
                    v.required_spec_claims.insert("aud".into());
                }
                None => v.validate_aud = false,
            }
            v
        };
        Ok(Self {
            hmac,
            ed25519,
            hs256: validation(Algorithm::HS256),
            eddsa: validation(Algorithm::EdDSA),
            max_lifetime_s: cfg.max_lifetime_s,
            leeway_s: cfg.leeway_s,
        })
    }

    /// Whether any key is configured (without one, every token is refused).
    pub fn is_configured(&self) -> bool {
        !self.hmac.is_empty() || !self.ed25519.is_empty()
    }

    /// Verifies `token` at `now_s` (seconds since the Unix epoch).
    pub fn verify(&self, token: &str, now_s: u64) -> Result<UserClaims, Denied> {
        if !self.is_configured() {
            return Err(Denied::NotConfigured);
        }
        let invalid = |m: &str| Denied::InvalidToken(m.to_string());
        if token.len() > MAX_CREDENTIAL_BYTES {
            return Err(invalid("the token is too long"));
        }
        let head = jsonwebtoken::decode_header(token).map_err(|_| invalid("the token is not a JWT"))?;
        let (keys, validation) = match head.alg {
            Algorithm::HS256 => (&self.hmac, &self.hs256),
            Algorithm::EdDSA => (&self.ed25519, &self.eddsa),
            other => {
                return Err(Denied::InvalidToken(format!(
                    "tokens signed with {other:?} are not accepted (HS256 or EdDSA)"
                )));
            }
        };
        if keys.is_empty() {
            return Err(Denied::InvalidToken(format!("no {:?} key is configured for user tokens", head.alg)));
        }
        let mut last = invalid("the token's signature does not verify");
        let mut claims = None;
        for k in keys {
            match jsonwebtoken::decode::<Claims>(token, k, validation) {
                Ok(d) => {
                    claims = Some(d.claims);
                    break;
                }
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind as K;
                    last = match e.kind() {
                        K::InvalidSignature => invalid("the token's signature does not verify"),
                        K::InvalidIssuer => invalid("the token's iss is not the configured issuer"),
                        K::InvalidAudience => invalid("the token's aud is not the configured audience"),
                        K::MissingRequiredClaim(c) => Denied::InvalidToken(format!("the token has no {c} claim")),
                        K::Json(_) => invalid("the token's claims are malformed (sub, exp and iat are required)"),
                        _ => invalid("the token is malformed"),
                    };
                    // A wrong key gives InvalidSignature: try the next; anything else is final.
                    if !matches!(e.kind(), K::InvalidSignature) {
                        return Err(last);
                    }
                }
            }
        }
        let c = claims.ok_or(last)?;
        let user = c
            .sub
            .parse::<u64>()
            .ok()
            .filter(|u| u.to_string() == c.sub)
            .ok_or_else(|| invalid("the token's sub is not a user id (a decimal u64)"))?;
        let leeway = self.leeway_s;
        if now_s > c.exp.saturating_add(leeway) {
            return Err(invalid("the token has expired"));
        }
        if c.iat > now_s.saturating_add(leeway) {
            return Err(invalid("the token's iat is in the future"));
        }
        if c.nbf.is_some_and(|nbf| nbf > now_s.saturating_add(leeway)) {
            return Err(invalid("the token is not valid yet (nbf)"));
        }
        if c.exp < c.iat || c.exp - c.iat > self.max_lifetime_s {
            return Err(Denied::InvalidToken(format!(
                "the token lives {} s (exp - iat); at most {} s are accepted",
                c.exp.saturating_sub(c.iat),
                self.max_lifetime_s
            )));
        }
        Ok(UserClaims { user, expires_at: c.exp })
    }

    /// Verifies the bearer token of a request at the current time.
    pub fn from_headers(&self, headers: &HeaderMap) -> Result<UserClaims, Denied> {
        if !self.is_configured() {
            return Err(Denied::NotConfigured);
        }
        let token = bearer(headers).ok_or_else(|| {
            Denied::Missing("this route needs the user's token (Authorization: Bearer <token>)".into())
        })?;
        self.verify(token, now_s())
    }

    /// Verifies the bearer token and that its subject is `user`.
    pub fn require_user(&self, headers: &HeaderMap, user: u64) -> Result<UserClaims, Denied> {
        let c = self.from_headers(headers)?;
        check_subject(&c, user)?;
        Ok(c)
    }
}

/// Refuses a token issued for another user than `user`.
pub fn check_subject(c: &UserClaims, user: u64) -> Result<(), Denied> {
    if c.user == user {
        Ok(())
    } else {
        Err(Denied::Forbidden(format!("the token was issued for user {}, not user {user}", c.user)))
    }
}

/// Seconds since the Unix epoch.
pub fn now_s() -> u64 {
    crate::now_ms() / 1000
}

/// What a token to mint says (see [`mint_hs256`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpec {
    /// The user (`sub`).
    pub user: u64,
    /// Issue time, seconds since the Unix epoch (`iat`).
    pub issued_at: u64,
    /// Lifetime in seconds (`exp = iat + ttl`).
    pub ttl_s: u64,
    /// `iss`, if any.
    pub issuer: Option<String>,
    /// `aud`, if any.
    pub audience: Option<String>,
}

impl TokenSpec {
    /// A token for `user`, issued now, living `ttl_s` seconds.
    pub fn new(user: u64, ttl_s: u64) -> Self {
        Self { user, issued_at: now_s(), ttl_s, issuer: None, audience: None }
    }

    fn claims(&self) -> Claims {
        Claims {
            sub: self.user.to_string(),
            iat: self.issued_at,
            exp: self.issued_at.saturating_add(self.ttl_s),
            nbf: None,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        }
    }
}

/// Why a token could not be minted.
#[derive(Debug, thiserror::Error)]
#[error("cannot mint the token: {0}")]
pub struct MintError(String);

/// Mints an HS256 user token, as an application's backend would (the
/// `edgewise-origin token` command, the demo and the tests use it).
pub fn mint_hs256(secret: &[u8], spec: &TokenSpec) -> Result<String, MintError> {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &spec.claims(), &EncodingKey::from_secret(secret))
        .map_err(|e| MintError(e.to_string()))
}

/// Mints an EdDSA user token with a PKCS#8 DER Ed25519 private key.
pub fn mint_eddsa(pkcs8_der: &[u8], spec: &TokenSpec) -> Result<String, MintError> {
    jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &spec.claims(), &EncodingKey::from_ed_der(pkcs8_der))
        .map_err(|e| MintError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const NOW: u64 = 1_800_000_000;

    fn tokens(cfg: UserTokenConfig) -> UserTokens {
        UserTokens::new(&cfg).expect("valid config")
    }

    fn hs(user: u64, iat: u64, ttl: u64) -> String {
        mint_hs256(SECRET.as_bytes(), &TokenSpec { user, issued_at: iat, ttl_s: ttl, issuer: None, audience: None })
            .expect("mint")
    }

    #[test]
    fn hs256_tokens_verify_and_carry_the_user() {
        let t = tokens(UserTokenConfig { hmac_secrets: vec![SECRET.into()], ..Default::default() });
        let c = t.verify(&hs(42, NOW - 10, 600), NOW).expect("valid");
        assert_eq!(c, UserClaims { user: 42, expires_at: NOW + 590 });
        assert_eq!(check_subject(&c, 42), Ok(()));
        assert_eq!(check_subject(&c, 7).map_err(|d| d.status()), Err(StatusCode::FORBIDDEN));
    }

    #[test]
    fn missing_expired_forged_and_long_lived_tokens_are_refused() {
        let t = tokens(UserTokenConfig { hmac_secrets: vec![SECRET.into()], ..Default::default() });
        let expired = t.verify(&hs(42, NOW - 4000, 600), NOW).expect_err("expired");
        assert!(matches!(&expired, Denied::InvalidToken(m) if m.contains("expired")), "{expired:?}");
        assert_eq!(expired.status(), StatusCode::UNAUTHORIZED);
        // Within the leeway an expired token still passes.
        t.verify(&hs(42, NOW - 620, 600), NOW).expect("within leeway");
        let other = mint_hs256(b"another secret of thirty-two bytes!!", &TokenSpec::new(42, 600)).expect("mint");
        assert!(matches!(t.verify(&other, now_s()), Err(Denied::InvalidToken(m)) if m.contains("signature")));
        let long = t.verify(&hs(42, NOW, 7200), NOW).expect_err("two hours");
        assert!(matches!(&long, Denied::InvalidToken(m) if m.contains("at most 3600")), "{long:?}");
        assert!(matches!(t.verify(&hs(42, NOW + 600, 60), NOW), Err(Denied::InvalidToken(m)) if m.contains("future")));
        for junk in ["", "abc", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiI0MiJ9."] {
            assert!(matches!(t.verify(junk, NOW), Err(Denied::InvalidToken(_))), "{junk:?}");
        }
        // A token whose header says HS256 but whose body was edited keeps the old signature.
        let good = hs(42, NOW, 600);
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged_claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{{\"sub\":\"7\",\"iat\":{NOW},\"exp\":{}}}", NOW + 600));
        parts[1] = &forged_claims;
        assert!(matches!(t.verify(&parts.join("."), NOW), Err(Denied::InvalidToken(m)) if m.contains("signature")));
    }

    #[test]
    fn without_keys_every_token_is_refused_with_a_how_to() {
        let t = tokens(UserTokenConfig::default());
        assert!(!t.is_configured());
        let d = t.verify(&hs(1, NOW, 60), NOW).expect_err("not configured");
        assert_eq!(d, Denied::NotConfigured);
        assert_eq!(d.status(), StatusCode::UNAUTHORIZED);
        assert!(d.to_string().contains("auth.user_tokens.hmac_secrets"), "{d}");
        assert!(t.from_headers(&HeaderMap::new()).is_err());
    }

    #[test]
    fn subjects_must_be_canonical_user_ids() {
        let t = tokens(UserTokenConfig { hmac_secrets: vec![SECRET.into()], ..Default::default() });
        for sub in ["042", "-1", "x", "18446744073709551616", " 1"] {
            let claims = Claims { sub: sub.into(), iat: NOW, exp: NOW + 60, nbf: None, iss: None, aud: None };
            let token = jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET.as_bytes()))
                .expect("encode");
            assert!(matches!(t.verify(&token, NOW), Err(Denied::InvalidToken(m)) if m.contains("sub")), "{sub}");
        }
    }

    #[test]
    fn issuer_and_audience_are_enforced_when_configured() {
        let t = tokens(UserTokenConfig {
            hmac_secrets: vec![SECRET.into()],
            issuer: Some("app".into()),
            audience: Some("edgewise".into()),
            ..Default::default()
        });
        let spec = |iss: Option<&str>, aud: Option<&str>| TokenSpec {
            user: 5,
            issued_at: NOW,
            ttl_s: 60,
            issuer: iss.map(str::to_string),
            audience: aud.map(str::to_string),
        };
        let mint = |s: &TokenSpec| mint_hs256(SECRET.as_bytes(), s).expect("mint");
        t.verify(&mint(&spec(Some("app"), Some("edgewise"))), NOW).expect("both right");
        for s in [
            spec(None, Some("edgewise")),
            spec(Some("evil"), Some("edgewise")),
            spec(Some("app"), None),
            spec(Some("app"), Some("x")),
        ] {
            assert!(matches!(t.verify(&mint(&s), NOW), Err(Denied::InvalidToken(_))), "{s:?}");
        }
        // Without an audience configured, a token that carries one still verifies.
        let open = tokens(UserTokenConfig { hmac_secrets: vec![SECRET.into()], ..Default::default() });
        open.verify(&mint(&spec(Some("app"), Some("whatever"))), NOW).expect("aud not checked");
    }

    #[test]
    fn eddsa_tokens_verify_with_the_public_key_only() {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let sk = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let der = sk.to_pkcs8_der().expect("pkcs8");
        let public_hex: String = sk.verifying_key().to_bytes().iter().map(|b| format!("{b:02x}")).collect();
        let public_b64 = base64::engine::general_purpose::STANDARD.encode(sk.verifying_key().to_bytes());
        for key in [public_hex.clone(), public_b64] {
            let t = tokens(UserTokenConfig { ed25519_public_keys: vec![key], ..Default::default() });
            let tok = mint_eddsa(
                der.as_bytes(),
                &TokenSpec { user: 9, issued_at: NOW, ttl_s: 60, issuer: None, audience: None },
            )
            .expect("mint");
            assert_eq!(t.verify(&tok, NOW).expect("valid").user, 9);
            // An HS256 token is refused: no HMAC key is configured (no algorithm confusion).
            let hs_tok = mint_hs256(
                public_hex.as_bytes(),
                &TokenSpec { user: 9, issued_at: NOW, ttl_s: 60, issuer: None, audience: None },
            )
            .expect("mint");
            assert!(matches!(t.verify(&hs_tok, NOW), Err(Denied::InvalidToken(_))));
        }
    }

    #[test]
    fn bad_configurations_are_refused_with_the_key_named() {
        let short = UserTokens::new(&UserTokenConfig { hmac_secrets: vec!["short".into()], ..Default::default() });
        assert!(matches!(short, Err(TokenConfigError::ShortSecret { index: 0, len: 5, .. })));
        for bad in ["zz", "00", &"0".repeat(63), "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"] {
            let r =
                UserTokens::new(&UserTokenConfig { ed25519_public_keys: vec![bad.to_string()], ..Default::default() });
            assert!(matches!(r, Err(TokenConfigError::BadPublicKey { index: 0, .. })), "{bad:?}");
        }
        let zero = UserTokens::new(&UserTokenConfig { max_lifetime_s: 0, ..Default::default() });
        assert_eq!(zero.err(), Some(TokenConfigError::ZeroLifetime));
    }

    #[test]
    fn service_keys_missing_wrong_disabled_and_open() {
        let keys = ServiceKeys::new(&["k1".into(), "k2".into()], "admin", "auth.admin_keys");
        let mut h = HeaderMap::new();
        assert!(matches!(keys.require(&h), Err(Denied::Missing(_))));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer nope"));
        assert_eq!(keys.require(&h).map_err(|d| d.status()), Err(StatusCode::FORBIDDEN));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer k2"));
        assert_eq!(keys.require(&h), Ok(()));
        let mut x = HeaderMap::new();
        x.insert(API_KEY_HEADER, HeaderValue::from_static("k1"));
        assert!(keys.presented_by(&x));
        let none = ServiceKeys::new(&[], "admin", "auth.admin_keys");
        assert!(matches!(none.require(&x), Err(Denied::Disabled(m)) if m.contains("auth.admin_keys")));
        assert_eq!(none.require_if_configured(&HeaderMap::new()), Ok(()));
        let r = Denied::Missing("x".into()).into_response();
        assert!(r.headers().get(header::WWW_AUTHENTICATE).is_some());
    }
}
