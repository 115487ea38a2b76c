//! Who may call each route: [`Access`], checked on the headers by the route
//! guard before admission reads the body, and the [`Caller`] it admits.

use super::*;

/// Who may call a route. Every `/v1` route and `/openapi.json` declares one
/// where it is mounted ([`app`]); the route guard checks it on the headers before
/// the body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (documentation).
    Open,
    /// Non-personal reads: anyone, or a read key when `auth.read_keys` is set.
    Read,
    /// An ingest key.
    Ingest,
    /// An admin key.
    Admin,
    /// A user token; the handler checks that its subject is the user the request is about.
    User,
    /// An ingest key (any user's events), or a user token (that user's own events only).
    IngestOrUser,
}

/// The caller the route guard admitted, in the request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// No credential was needed.
    Anonymous,
    /// A service key.
    Service,
    /// A user token.
    User(UserClaims),
}

impl Caller {
    /// Refuses unless the caller is a service, or the user `user` themself.
    pub fn may_act_for(&self, user: u64) -> Result<(), Denied> {
        match self {
            Caller::Service => Ok(()),
            Caller::User(c) => edgewise_http::auth::check_subject(c, user),
            Caller::Anonymous => Err(Denied::Missing("this route needs the user's token".into())),
        }
    }
}

/// Checks the route's [`Access`] on the headers, then hands the request to
/// admission (body limits, read timeout, in-flight cap).
pub(super) async fn guard(
    State((st, access)): State<(Arc<AppState>, Access)>,
    mut req: Request,
    next: Next,
) -> Response {
    let h = req.headers();
    let caller = match access {
        Access::Open => Ok(Caller::Anonymous),
        Access::Read => st.keys.read.require_if_configured(h).map(|()| Caller::Anonymous),
        Access::Ingest => st.keys.ingest.require(h).map(|()| Caller::Service),
        Access::Admin => st.keys.admin.require(h).map(|()| Caller::Service),
        Access::User => st.tokens.from_headers(h).map(Caller::User),
        Access::IngestOrUser => {
            if st.keys.ingest.presented_by(h) {
                Ok(Caller::Service)
            } else if edgewise_http::auth::bearer(h).is_some() {
                st.tokens.from_headers(h).map(Caller::User)
            } else if h.contains_key(edgewise_http::auth::API_KEY_HEADER) {
                Err(Denied::Forbidden("the key is not an ingest key".into()))
            } else {
                Err(Denied::Missing(
                    "this route needs an ingest key (X-Api-Key) or the user's token (Authorization: Bearer)".into(),
                ))
            }
        }
    };
    match caller {
        Ok(c) => {
            req.extensions_mut().insert(c);
            st.admission.run(req, next).await
        }
        Err(d) => st.admission.deny(d),
    }
}

/// The caller [`guard`] admitted (a 500 if a route was mounted without a guard).
pub(super) fn caller(req_caller: Option<axum::Extension<Caller>>) -> Result<Caller, ApiError> {
    req_caller.map(|axum::Extension(c)| c).ok_or_else(|| ApiError::internal("a route ran without its access guard"))
}
