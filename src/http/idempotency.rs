//! `Idempotency-Key` for every POST: the first response (status and body) is stored for
//! 24 hours and replayed for a retry with the same key and body; the same key with a
//! different body is 422; a retry while the first is still running is 409 (on SQLite, where
//! writers take turns, it usually gets the first one's reply instead). Keys are scoped to
//! the caller (API key or ambassador, else client address), so callers never see each other's
//! responses.
//!
//! What is stored is chosen with care (see `store::idempotency` for the never-twice rule; this
//! module words what the store finds as replies):
//! - answers that say "try again" (429, 409 `concurrent-update`, any 5xx) are not stored;
//! - a handler whose reply holds a secret hands over a redacted copy to store instead
//!   ([`store_instead`]): a replay never shows a secret again and never mints a second one;
//! - a handler whose reply names a referred client says which referral ([`concerns`]), so
//!   erasing that client's personal data also scrubs the stored copy.
//!
//! The request runs holding its claim (`db::claim`), and its first change writes the claim in
//! the same transaction: two transactions per request (the change, the reply), not three. After
//! it ran, the claim is either written (store the reply), refused because another request
//! holds the key (nothing was changed: answer with that request's reply, or 409/422), or never
//! written because nothing was changed (store the claim with its reply in one statement). A
//! retry or a mismatched key therefore runs the request's checks again but can never change
//! anything.
//!
//! Unauthenticated requests outside the public scopes are not tracked at all, and the public
//! scopes count requests against the rate limit before this step: an anonymous client cannot
//! fill the table.

use actix_web::body::{self, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpResponse, ResponseError};
use sha2::{Digest, Sha256};

use super::RequestId;
use crate::auth::{AmbassadorCaller, Caller};
use crate::db::blocking;
use crate::db::claim::{ClaimState, ClaimWriter, RequestClaim};
use crate::db::{DbConnection, DbPool};
use crate::domain::api_key::hex;
use crate::error::{ApiError, TryAgain};
use crate::extract::{read_body, MAX_BODY_BYTES};
use crate::store::idempotency::{self, Claim, Reply, Request};

pub const HEADER: &str = "idempotency-key";
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// What a replay of a created key or session says in place of its secret.
pub const SECRET_WITHHELD: &str =
    "The secret was shown once, in the first response, and is not stored; if it was lost, revoke this and create another.";

fn scope_of(req: &ServiceRequest) -> String {
    if let Some(caller) = req.extensions().get::<Caller>() {
        return format!("key:{}", caller.key_id);
    }
    if let Some(me) = req.extensions().get::<AmbassadorCaller>() {
        return format!("ambassador:{}", me.ambassador_id);
    }
    match super::client_ip(req.request()) {
        Some(ip) => format!("ip:{ip}"),
        None => "ip:unknown".into(),
    }
}

fn reject(req: ServiceRequest, e: ApiError) -> ServiceResponse<BoxBody> {
    req.error_response(e)
}

/// Set on a response by a handler whose body holds a secret: the idempotency step stores
/// this (redacted) body instead, and a replay shows it.
#[derive(Debug, Clone)]
pub struct StoreInstead(pub String);

/// Set on a response that names a referred client: the referral it concerns.
#[derive(Debug, Clone)]
pub struct Concerns(pub String);

/// Stores `redacted` for replays instead of the response's own body.
pub fn store_instead(res: &mut HttpResponse, redacted: &impl serde::Serialize) {
    let body = serde_json::to_string(redacted).unwrap_or_default();
    res.extensions_mut().insert(StoreInstead(body));
}

/// Marks the response as naming the client of this referral.
pub fn concerns(res: &mut HttpResponse, referral_id: &str) {
    res.extensions_mut().insert(Concerns(referral_id.to_owned()));
}

fn has_caller(req: &ServiceRequest) -> bool {
    let ext = req.extensions();
    ext.get::<Caller>().is_some() || ext.get::<AmbassadorCaller>().is_some()
}

/// For authenticated routes: requests without a valid caller are answered 401 by the route
/// and never tracked here.
pub async fn authenticated(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if !has_caller(&req) {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    }
    idempotency(req, next).await
}

/// For the public scopes (rate limited before this step): anonymous callers are scoped by
/// their address.
pub async fn public(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    idempotency(req, next).await
}

async fn idempotency(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let key = match req.headers().get(HEADER) {
        Some(v) if req.method() == Method::POST => v.to_str().map(str::to_owned).map_err(|_| ()),
        _ => return next.call(req).await.map(ServiceResponse::map_into_boxed_body),
    };
    let key = match key {
        Ok(k) if !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()) => k,
        _ => {
            let e = ApiError::validation("Idempotency-Key", "must be 1 to 255 visible ASCII characters");
            return Ok(reject(req, e));
        }
    };
    let too_large = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .is_some_and(|n| n > MAX_BODY_BYTES);
    if too_large {
        return Ok(reject(req, ApiError::PayloadTooLarge));
    }
    let body = match read_body(req.take_payload()).await {
        Ok(b) => b,
        Err(e) => return Ok(reject(req, e)),
    };
    let claim = claim_for(&req, key, &body);
    req.set_payload(actix_web::dev::Payload::from(body));

    let pool = req.app_data::<web::Data<DbPool>>().cloned().expect("pool registered");
    // The request runs with its claim, which its first change writes (`db::claim`).
    let held = RequestClaim::new(claim.clone());
    let res = held.clone().scope(next.call(req)).await?.map_into_boxed_body();
    let (http_req, res) = res.into_parts();
    let state = held.state();
    if state == ClaimState::Refused {
        // The key is another request's: nothing of this run was written; answer for that one.
        let answer = answer_for_holder(&pool, claim).await;
        return Ok(ServiceResponse::new(http_req, answer));
    }
    let (res, outcome) = buffered(res).await;
    if state == ClaimState::Written {
        record_or_retry_later(&pool, claim, outcome).await;
    } else if let Some(answer) = store_unchanged(&pool, claim, outcome).await {
        return Ok(ServiceResponse::new(http_req, answer));
    }
    Ok(ServiceResponse::new(http_req, res))
}

impl ClaimWriter for Claimed {
    fn write(&self, conn: &mut DbConnection) -> diesel::QueryResult<bool> {
        idempotency::claim_with_change(conn, &self.request())
    }
}

/// The response with its body buffered, and what to keep of it: its reply (the redacted
/// copy a handler handed over instead), or nothing for a "try again" answer.
async fn buffered(res: HttpResponse<BoxBody>) -> (HttpResponse<BoxBody>, Outcome) {
    let status = res.status();
    let try_again = status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || res.extensions().get::<TryAgain>().is_some();
    let instead = res.extensions().get::<StoreInstead>().map(|s| s.0.clone());
    let subject = res.extensions().get::<Concerns>().map(|c| c.0.clone());
    let (res, body) = res.into_parts();
    match body::to_bytes(body).await {
        Ok(bytes) => {
            let outcome = if try_again {
                Outcome::Unstored
            } else {
                let body = instead.unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
                Outcome::Reply { status: status.as_u16(), body, subject }
            };
            (res.set_body(BoxBody::new(bytes)), outcome)
        }
        Err(_) => {
            let res = ApiError::internal("could not buffer response for idempotency").error_response();
            (res, Outcome::Unstored)
        }
    }
}

/// The answer for a request whose key another request holds: that request's reply, or the
/// problem that says why there is none (yet).
async fn answer_for_holder(pool: &DbPool, claim: Claimed) -> HttpResponse {
    let found = blocking(pool, move |c| {
        let req = claim.request();
        let found = claim_key(c, &req)?;
        if found == Claim::Fresh {
            // The holder's row went (purged) between the two statements, or it was an abandoned
            // claim that changed nothing and this one took it over, without having run: give
            // it back; the client's next retry runs.
            let lost = lost(claim.request_id.clone());
            idempotency::finish_unstored(c, &req, (lost.status(), &lost.problem_json()))?;
        }
        Ok::<_, ApiError>(found)
    })
    .await;
    match found {
        Ok(Claim::Fresh) => ApiError::IdempotencyInProgress.error_response(),
        Ok(found) => answer(found),
        Err(e) => e.error_response(),
    }
}

/// Stores the reply of a request that changed nothing, with its claim. `Some` answer when
/// another request holds the key by now (its reply, a mismatch, …): that answer stands.
async fn store_unchanged(pool: &DbPool, claim: Claimed, outcome: Outcome) -> Option<HttpResponse> {
    let Outcome::Reply { status, body, subject } = outcome else {
        return None;
    };
    let found = blocking(pool, move |c| {
        let req = claim.request();
        let reply = Reply { status, body: &body, subject_id: subject.as_deref() };
        if idempotency::store_unchanged(c, &req, &reply)? {
            return Ok(None);
        }
        match claim_key(c, &req)? {
            // An expired or abandoned row taken over: this reply is the key's now.
            Claim::Fresh => idempotency::complete(c, &req, &reply).map(|()| None).map_err(ApiError::from),
            found => Ok(Some(found)),
        }
    })
    .await;
    match found {
        Ok(found) => found.map(answer),
        Err(e) => {
            // Nothing was changed: a retry that runs again does no harm.
            tracing::warn!(error = %e, "could not store the reply of a request that changed nothing");
            None
        }
    }
}

/// The answer a key's stored state gives a request that did not run under it.
fn answer(found: Claim) -> HttpResponse {
    match found {
        Claim::Replay { status, body } => replay(status, body),
        Claim::Erased => replay_problem(&ApiError::ReplyErased),
        Claim::Lost { request_id, .. } => replay_problem(&lost(request_id)),
        Claim::Mismatch => ApiError::IdempotencyKeyReused.error_response(),
        Claim::InProgress | Claim::Fresh => ApiError::IdempotencyInProgress.error_response(),
    }
}

/// Claims the key for this request. A claim lost with its request carried out is answered
/// from now on by the problem that says so: stored here as its reply.
fn claim_key(c: &mut DbConnection, req: &Request<'_>) -> Result<Claim, ApiError> {
    let claim = idempotency::claim(c, req)?;
    if let Claim::Lost { request_id, created_at } = &claim {
        let lost = lost(request_id.clone());
        idempotency::settle(c, req, *created_at, (lost.status(), &lost.problem_json()))?;
    }
    Ok(claim)
}

/// The answer for a request carried out whose reply was never stored.
fn lost(request_id: String) -> ApiError {
    ApiError::IdempotencyReplyLost { request_id }
}

/// This request's claim on `key`: its scope (the caller), the hash of what it asks (path,
/// query and body), and its request id (which the audit rows of its changes carry).
fn claim_for(req: &ServiceRequest, key: String, body: &[u8]) -> Claimed {
    let mut hasher = Sha256::new();
    hasher.update(req.path().as_bytes());
    hasher.update([0]);
    hasher.update(req.query_string().as_bytes());
    hasher.update([0]);
    hasher.update(body);
    Claimed {
        scope: scope_of(req),
        key,
        hash: hex(&hasher.finalize()),
        request_id: req
            .extensions()
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
    }
}

/// A problem in place of the stored reply, marked as a replay.
fn replay_problem(e: &ApiError) -> HttpResponse {
    replay(e.status(), e.problem_json())
}

/// The stored reply of the first request with this key, marked as a replay.
fn replay(status: u16, body: String) -> HttpResponse {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let content_type = if status.is_success() { "application/json" } else { crate::error::PROBLEM_JSON };
    HttpResponse::build(status).content_type(content_type).insert_header((REPLAYED_HEADER, "true")).body(body)
}

/// How a claim ends: with a reply to replay, or unstored (a "try again" answer).
#[derive(Clone)]
enum Outcome {
    Reply { status: u16, body: String, subject: Option<String> },
    Unstored,
}

async fn record(pool: &DbPool, claim: Claimed, outcome: Outcome) -> Result<(), ApiError> {
    blocking(pool, move |c| match &outcome {
        Outcome::Unstored => {
            let lost = lost(claim.request_id.clone());
            Ok(idempotency::finish_unstored(c, &claim.request(), (lost.status(), &lost.problem_json()))?)
        }
        Outcome::Reply { status, body, subject } => {
            let reply = Reply { status: *status, body, subject_id: subject.as_deref() };
            Ok(idempotency::complete(c, &claim.request(), &reply)?)
        }
    })
    .await
}

/// Waits between tries to record a claim's outcome after the first failed; together well
/// under [`idempotency::ABANDONED_AFTER`].
const RECORD_RETRIES_MS: [u64; 8] = [200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 40_000];

/// Records the outcome; when the database cannot take it now (a restart, a failover), keeps
/// trying in the background, so the client's retry soon gets the stored reply (or runs
/// again) instead of `idempotency-in-progress` until the claim is judged abandoned. Should
/// every try fail, the claim stays open and the audit trail decides: never run twice.
async fn record_or_retry_later(pool: &DbPool, claim: Claimed, outcome: Outcome) {
    let Err(e) = record(pool, claim.clone(), outcome.clone()).await else {
        return;
    };
    tracing::warn!(error = %e, "could not record the idempotent response; retrying in the background");
    let pool = pool.clone();
    actix_web::rt::spawn(async move {
        for wait in RECORD_RETRIES_MS {
            actix_web::rt::time::sleep(std::time::Duration::from_millis(wait)).await;
            match record(&pool, claim.clone(), outcome.clone()).await {
                Ok(()) => return,
                Err(e) => tracing::debug!(error = %e, "recording the idempotent response failed again"),
            }
        }
        tracing::warn!("gave up recording the idempotent response; the audit trail will answer retries");
    });
}

/// The claim this request holds, owned (it crosses into blocking tasks).
#[derive(Clone)]
struct Claimed {
    scope: String,
    key: String,
    hash: String,
    request_id: String,
}

impl Claimed {
    fn request(&self) -> Request<'_> {
        Request { scope: &self.scope, key: &self.key, hash: &self.hash, id: &self.request_id }
    }
}
