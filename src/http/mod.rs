//! HTTP plumbing shared by every route: request ids, logging and metrics, client addresses,
//! rate limits, idempotency, and the 404/405 fallbacks.

pub mod csv_export;
pub mod idempotency;
pub mod memory;
pub mod metrics;
pub mod rate_limit;

use std::net::IpAddr;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use tracing::Instrument;

use crate::config::Settings;
use crate::error::ApiError;
use crate::store::audit::Actor;
use metrics::Metrics;

/// The body of a `202 Accepted` answer to the public (an application, a referral, a login
/// request): it never says more, so nobody learns who is known.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Accepted {
    pub status: String,
}

impl Accepted {
    pub fn received() -> Self {
        Self { status: "received".into() }
    }
}

/// The id of the current request (also sent back as `X-Request-Id` and written to audit).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Outermost middleware: gives the request an id and a tracing span, and records its
/// status and latency by route pattern.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let request_id = uuid::Uuid::new_v4().to_string();
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let method = req.method().to_string();
    let method_label = metric_method(req.method());
    let path = req.path().to_owned();
    let quiet = matches!(path.as_str(), "/healthz" | "/readyz" | "/metrics");
    let span = tracing::info_span!("request", %request_id, %method, %path);
    let started = Instant::now();
    let mut res = next.call(req).instrument(span.clone()).await?;
    let elapsed = started.elapsed();
    let status = res.status().as_u16();
    let route = res.request().match_pattern().unwrap_or_else(|| "unmatched".into());
    if let Some(m) = metrics {
        m.observe_request(method_label, &route, status, elapsed);
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert(HeaderName::from_static(REQUEST_ID_HEADER), v);
    }
    let _enter = span.enter();
    let ms = elapsed.as_secs_f64() * 1000.0;
    if quiet {
        tracing::debug!(status, ms, "request finished");
    } else if status >= 500 {
        tracing::error!(status, ms, "request failed");
    } else {
        tracing::info!(status, ms, "request finished");
    }
    Ok(res)
}

/// The request line and all headers together may not exceed this (actix's own limit is
/// 128 KiB; a legitimate client of this API sends well under 4 KiB).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Refuses, before any handler or database work: request heads larger than
/// [`MAX_HEAD_BYTES`] (431), and control characters in the path or query string (422), which
/// no id or search term contains and PostgreSQL cannot even store (NUL).
pub async fn check_head(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let problem = if head_size(&req) > MAX_HEAD_BYTES {
        Some(ApiError::HeadersTooLarge { limit_bytes: MAX_HEAD_BYTES })
    } else {
        crate::extract::check_path_and_query(req.path(), req.query_string()).err()
    };
    match problem {
        Some(e) => Ok(req.error_response(e).map_into_right_body()),
        None => next.call(req).await.map(ServiceResponse::map_into_left_body),
    }
}

/// Bytes of the request line and headers as sent (name, `: `, value, CRLF per header).
fn head_size(req: &ServiceRequest) -> usize {
    let line = req.method().as_str().len() + req.uri().to_string().len() + 12;
    line + req.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum::<usize>()
}

/// The method as a metrics label: the standard methods by name, anything else `other`, so
/// clients inventing methods cannot add series without bound (routes are already bounded:
/// the matched pattern, or `unmatched`).
fn metric_method(method: &actix_web::http::Method) -> &'static str {
    const KNOWN: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"];
    KNOWN.iter().find(|m| **m == method.as_str()).copied().unwrap_or("other")
}

/// The client's address: the peer, or, when configured to trust the proxy in front, the
/// last `X-Forwarded-For` hop — the address that proxy saw. Earlier hops are whatever the
/// client sent, so they cannot be trusted (a client could pick a new one per request).
pub fn client_ip(req: &HttpRequest) -> Option<IpAddr> {
    let trust = req.app_data::<web::Data<Settings>>().is_some_and(|s| s.server.trust_forwarded_for);
    if trust {
        if let Some(ip) = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next_back())
            .and_then(|v| v.trim().parse().ok())
        {
            return Some(ip);
        }
    }
    req.peer_addr().map(|a| a.ip())
}

/// Context of an unauthenticated (public) request: its id and client address.
pub struct PublicRequest {
    pub request_id: Option<String>,
    pub ip: Option<IpAddr>,
}

impl PublicRequest {
    pub fn actor(&self) -> Actor {
        Actor::public(self.request_id.clone())
    }
}

impl FromRequest for PublicRequest {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone());
        std::future::ready(Ok(Self { request_id, ip: client_ip(req) }))
    }
}

pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound("resource"))
}

pub async fn method_not_allowed() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

/// A resource whose unsupported methods answer 405 problem+json (not actix's empty 405).
pub fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}
