//! Authentication and authorisation. A middleware resolves `Authorization: Bearer …` once per
//! request into a [`Caller`]; handlers declare who may call them with a typed extractor
//! ([`Auth<Staff>`], [`Auth<Admin>`], …), which answers 401 without a valid key and 403 for the
//! wrong role — before the body is even read. Verified credentials are kept for a few
//! seconds in an [`AuthCache`] (see there for what that means for a revocation).

mod cache;

use std::marker::PhantomData;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};

use crate::db::{blocking, DbPool};
use crate::domain::api_key::Role;
use crate::error::ApiError;
use crate::http::RequestId;
use crate::store::audit::{Actor, ActorKind};
use crate::store::{api_keys, portal};

pub use cache::{AuthCache, Identity};

/// Who is calling, resolved from the bearer token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: String,
    pub role: Role,
    pub request_id: Option<String>,
}

impl Caller {
    pub fn actor(&self) -> Actor {
        Actor {
            kind: ActorKind::ApiKey,
            id: Some(self.key_id.clone()),
            role: Some(self.role.as_str().to_owned()),
            request_id: self.request_id.clone(),
        }
    }
}

/// An ambassador signed in to the portal (bearer `vp_…` session token).
#[derive(Debug, Clone)]
pub struct AmbassadorCaller {
    pub ambassador_id: String,
    pub session_id: String,
    pub request_id: Option<String>,
}

impl AmbassadorCaller {
    pub fn actor(&self) -> Actor {
        Actor {
            kind: ActorKind::Ambassador,
            id: Some(self.ambassador_id.clone()),
            role: None,
            request_id: self.request_id.clone(),
        }
    }
}

/// Marks a request whose `Authorization` header was present but did not name a live key.
#[derive(Clone, Copy)]
struct BadCredentials;

fn bearer(req: &ServiceRequest) -> Option<Result<String, ()>> {
    let value = req.headers().get(actix_web::http::header::AUTHORIZATION)?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 200);
    Some(token.map(str::to_owned).ok_or(()))
}

/// Who `token` belongs to: from the [`AuthCache`] when it was verified within the TTL, else
/// from the database (an API key, or a `vp_…` portal session whose ambassador is active).
/// `None`: no live credential (unknown, revoked, expired, or a role Vouch does not know).
pub async fn identify(pool: &DbPool, cache: &AuthCache, token: String) -> Result<Option<Identity>, ApiError> {
    let miss = match cache.lookup(&token) {
        Ok(identity) => return Ok(Some(identity)),
        Err(miss) => miss,
    };
    let found = blocking(pool, move |conn| -> Result<Option<(Identity, Option<Instant>)>, ApiError> {
        if token.starts_with(portal::SESSION_PREFIX) {
            let Some((session_id, ambassador_id, expires_at)) = portal::authenticate(conn, &token)? else {
                return Ok(None);
            };
            let left = (expires_at - crate::db::now()).to_std().unwrap_or_default();
            Ok(Some((Identity::Ambassador { session_id, ambassador_id }, Some(Instant::now() + left))))
        } else {
            let Some(row) = api_keys::authenticate(conn, &token)? else {
                return Ok(None);
            };
            match Role::parse(&row.role) {
                Some(role) => Ok(Some((Identity::Key { id: row.id, role }, None))),
                // A role Vouch does not know (a damaged or hand-edited row) grants nothing.
                None => {
                    tracing::error!(key_id = %row.id, role = %row.role, "API key with an unknown role refused");
                    Ok(None)
                }
            }
        }
    })
    .await?;
    Ok(found.map(|(identity, expires)| {
        cache.keep(miss, identity.clone(), expires);
        identity
    }))
}

/// Middleware: looks the bearer token up and stores the [`Caller`] in the request.
pub async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    match bearer(&req) {
        None => {}
        Some(Err(())) => {
            req.extensions_mut().insert(BadCredentials);
        }
        Some(Ok(token)) => {
            let pool = req.app_data::<web::Data<DbPool>>().cloned().expect("pool registered");
            let cache = req.app_data::<web::Data<AuthCache>>().cloned().expect("auth cache registered");
            let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone());
            match identify(&pool, &cache, token).await {
                Ok(Some(Identity::Key { id, role })) => {
                    req.extensions_mut().insert(Caller { key_id: id, role, request_id });
                }
                Ok(Some(Identity::Ambassador { session_id, ambassador_id })) => {
                    req.extensions_mut().insert(AmbassadorCaller { ambassador_id, session_id, request_id });
                }
                Ok(None) => {
                    req.extensions_mut().insert(BadCredentials);
                }
                Err(e) => return Ok(req.error_response(e).map_into_right_body()),
            }
        }
    }
    next.call(req).await.map(ServiceResponse::map_into_left_body)
}

/// A role policy for [`Auth`]. Admin passes every policy.
pub trait Policy {
    const ROLES: &'static [Role];
}

pub struct Admin;
pub struct Staff;
pub struct Finance;
/// Staff or finance (reads both may do).
pub struct StaffOrFinance;

impl Policy for Admin {
    const ROLES: &'static [Role] = &[];
}
impl Policy for Staff {
    const ROLES: &'static [Role] = &[Role::Staff];
}
impl Policy for Finance {
    const ROLES: &'static [Role] = &[Role::Finance];
}
impl Policy for StaffOrFinance {
    const ROLES: &'static [Role] = &[Role::Staff, Role::Finance];
}

/// An authenticated caller allowed by policy `P`.
pub struct Auth<P> {
    pub caller: Caller,
    _policy: PhantomData<P>,
}

impl<P> Auth<P> {
    pub fn actor(&self) -> Actor {
        self.caller.actor()
    }
}

fn authorize(req: &HttpRequest, roles: &[Role]) -> Result<Caller, ApiError> {
    let ext = req.extensions();
    if ext.get::<AmbassadorCaller>().is_some() {
        return Err(ApiError::Forbidden);
    }
    let caller = ext.get::<Caller>().ok_or(ApiError::Unauthorized)?;
    if caller.role == Role::Admin || roles.contains(&caller.role) {
        Ok(caller.clone())
    } else {
        Err(ApiError::Forbidden)
    }
}

impl<P: Policy> FromRequest for Auth<P> {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let bad = req.extensions().get::<BadCredentials>().is_some();
        let result = if bad { Err(ApiError::Unauthorized) } else { authorize(req, P::ROLES) };
        std::future::ready(result.map(|caller| Auth { caller, _policy: PhantomData }))
    }
}

/// The signed-in ambassador, for `/v1/me` routes: 401 without a live portal session, 403 for
/// an API key (staff use the staff routes).
pub struct Me(pub AmbassadorCaller);

impl FromRequest for Me {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let ext = req.extensions();
        let result = match (ext.get::<AmbassadorCaller>(), ext.get::<Caller>()) {
            (Some(me), _) => Ok(Me(me.clone())),
            (None, Some(_)) => Err(ApiError::Forbidden),
            (None, None) => Err(ApiError::Unauthorized),
        };
        std::future::ready(result)
    }
}
