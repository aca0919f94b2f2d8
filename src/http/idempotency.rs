//! `Idempotency-Key` for every POST: the first response (status and body) is stored for
//! 24 hours and replayed for a retry with the same key and body; the same key with a
//! different body is 422; a retry while the first is still running is 409. Keys are scoped to
//! the caller (API key or ambassador, else client address), so callers never see each other's
//! responses. Server errors (5xx) are not stored, so a retry runs again.

use actix_web::body::{self, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpResponse, ResponseError};
use sha2::{Digest, Sha256};

use super::blocking;
use crate::auth::{AmbassadorCaller, Caller};
use crate::db::DbPool;
use crate::domain::api_key::hex;
use crate::error::ApiError;
use crate::extract::{read_body, MAX_BODY_BYTES};
use crate::store::idempotency::{self, Claim};

pub const HEADER: &str = "idempotency-key";
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

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

pub async fn idempotency(
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
    let mut hasher = Sha256::new();
    hasher.update(req.path().as_bytes());
    hasher.update([0]);
    hasher.update(req.query_string().as_bytes());
    hasher.update([0]);
    hasher.update(&body);
    let request_hash = hex(&hasher.finalize());
    req.set_payload(actix_web::dev::Payload::from(body));

    let pool = req.app_data::<web::Data<DbPool>>().cloned().expect("pool registered");
    let scope = scope_of(&req);
    let claim = {
        let (scope, key) = (scope.clone(), key.clone());
        blocking(&pool, move |c| idempotency::claim(c, &scope, &key, &request_hash)).await
    };
    match claim {
        Err(e) => return Ok(reject(req, e)),
        Ok(Claim::Mismatch) => return Ok(reject(req, ApiError::IdempotencyKeyReused)),
        Ok(Claim::InProgress) => return Ok(reject(req, ApiError::IdempotencyInProgress)),
        Ok(Claim::Replay { status, body }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let content_type = if status.is_success() { "application/json" } else { crate::error::PROBLEM_JSON };
            let res = HttpResponse::build(status)
                .content_type(content_type)
                .insert_header((REPLAYED_HEADER, "true"))
                .body(body);
            return Ok(req.into_response(res));
        }
        Ok(Claim::Fresh) => {}
    }

    let res = next.call(req).await?;
    let status = res.status();
    let (http_req, res) = res.into_parts();
    let (res, body) = res.into_parts();
    let bytes = match body::to_bytes(body).await {
        Ok(b) => b,
        Err(_) => {
            let _ = blocking(&pool, move |c| idempotency::release(c, &scope, &key)).await;
            let res = ApiError::internal("could not buffer response for idempotency").error_response();
            return Ok(ServiceResponse::new(http_req, res));
        }
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let stored = if status.is_server_error() {
        blocking(&pool, move |c| idempotency::release(c, &scope, &key)).await
    } else {
        blocking(&pool, move |c| idempotency::complete(c, &scope, &key, status.as_u16(), &text)).await
    };
    if let Err(e) = stored {
        tracing::warn!(error = %e, "could not record idempotent response");
    }
    Ok(ServiceResponse::new(http_req, res.set_body(BoxBody::new(bytes))))
}
