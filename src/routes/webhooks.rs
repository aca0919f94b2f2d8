//! `/v1/webhooks` and `/v1/webhook-deliveries` (admin): endpoints (a signing secret shown
//! once, rotatable with a grace period), their deliveries with every attempt, replays and a
//! test ping. The events themselves are documented in the OpenAPI document's `webhooks`.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::app::webhooks::{self, DeliveryView, EndpointPatch, EndpointView, NewEndpointInput, Setup};
use crate::auth::{Admin, Auth};
use crate::config::Settings;
use crate::db::{blocking, DbPool};
use crate::domain::webhook::DeliveryStatus;
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, ApiQuery};
use crate::http::idempotency::{self, SECRET_WITHHELD};
use crate::http::resource;
use crate::store::PageRequest;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/webhooks").route(web::post().to(create)).route(web::get().to(list)))
        .service(
            resource("/webhooks/{id}")
                .route(web::get().to(get))
                .route(web::patch().to(update))
                .route(web::delete().to(delete)),
        )
        .service(resource("/webhooks/{id}/rotate-secret").route(web::post().to(rotate_secret)))
        .service(resource("/webhooks/{id}/deliveries").route(web::get().to(deliveries)))
        .service(resource("/webhooks/{id}/test").route(web::post().to(test)))
        .service(resource("/webhook-deliveries/{id}/replay").route(web::post().to(replay)));
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// `https://` (or `http://`) URL that receives the events as POST requests.
    pub url: String,
    /// What the endpoint is, e.g. "booking system".
    pub description: Option<String>,
    /// The events it receives (at least one), e.g. `["referral.completed", "reward.earned"]`.
    pub events: Vec<String>,
    /// Default true.
    pub enabled: Option<bool>,
    /// The clinic's own staff system: payloads name clients with their contact details, as
    /// staff see them. Default false: no client names or contact details.
    pub staff_system: Option<bool>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    pub url: Option<String>,
    pub description: Option<String>,
    pub events: Option<Vec<String>>,
    /// `true` enables it again after Vouch disabled it (clearing the reason and the streak).
    pub enabled: Option<bool>,
    pub staff_system: Option<bool>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookWithSecret {
    #[serde(flatten)]
    pub endpoint: EndpointView,
    /// The signing secret (`whsec_…`), shown this once: store it now. `null` only in an
    /// idempotent replay (`Idempotent-Replayed: true`).
    pub secret: Option<String>,
    /// Only in an idempotent replay: why `secret` is `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_withheld: Option<String>,
}

impl WebhookWithSecret {
    /// The response with the secret, kept for idempotent replays without it.
    fn respond(mut res: actix_web::HttpResponseBuilder, endpoint: EndpointView, secret: String) -> HttpResponse {
        let redacted = Self { endpoint: endpoint.clone(), secret: None, secret_withheld: Some(SECRET_WITHHELD.into()) };
        let mut res = res.json(Self { endpoint, secret: Some(secret), secret_withheld: None });
        idempotency::store_instead(&mut res, &redacted);
        res
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookList {
    pub items: Vec<EndpointView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryList {
    pub items: Vec<DeliveryView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// Only deliveries in this status.
    pub status: Option<DeliveryStatus>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// Register a webhook endpoint; its signing secret is in this response only.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", security(("bearer" = [])),
    request_body = CreateWebhook,
    responses((status = 201, body = WebhookWithSecret),
        (status = 422, description = "`webhook-url-refused`: the URL reaches a private, loopback or link-local address (or does not resolve)", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn create(
    auth: Auth<Admin>,
    pool: web::Data<DbPool>,
    settings: web::Data<Settings>,
    body: ApiJson<CreateWebhook>,
) -> Result<HttpResponse, ApiError> {
    let b = body.0;
    let input = NewEndpointInput::parse(
        &b.url,
        b.description.as_deref(),
        &b.events,
        b.enabled.unwrap_or(true),
        b.staff_system.unwrap_or(false),
    )?;
    let (setup, actor) = (Setup::new(&settings.webhooks), auth.actor());
    let (endpoint, secret) = blocking(&pool, move |c| webhooks::create(c, input, &setup, &actor)).await?;
    Ok(WebhookWithSecret::respond(HttpResponse::Created(), endpoint, secret))
}

/// Webhook endpoints, newest first (never their secrets).
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = WebhookList),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn list(
    _auth: Auth<Admin>,
    pool: web::Data<DbPool>,
    q: ApiQuery<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = PageRequest::parse(q.0.limit, q.0.cursor.as_deref())?;
    let result = blocking(&pool, move |c| webhooks::list(c, &page)).await?;
    Ok(HttpResponse::Ok().json(WebhookList { items: result.items, next_cursor: result.next_cursor }))
}

/// One webhook endpoint.
#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = EndpointView),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn get(_auth: Auth<Admin>, pool: web::Data<DbPool>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let endpoint = blocking(&pool, move |c| webhooks::get(c, &id)).await?;
    Ok(HttpResponse::Ok().json(endpoint))
}

/// Change an endpoint's URL, description, events, staff-system mark, or enable/disable it.
#[utoipa::path(patch, path = "/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = UpdateWebhook,
    responses((status = 200, body = EndpointView),
        (status = 422, description = "`webhook-url-refused`", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn update(
    auth: Auth<Admin>,
    pool: web::Data<DbPool>,
    settings: web::Data<Settings>,
    id: web::Path<String>,
    body: ApiJson<UpdateWebhook>,
) -> Result<HttpResponse, ApiError> {
    let b = body.0;
    let patch = EndpointPatch::parse(
        b.url.as_deref(),
        b.description.as_deref(),
        b.events.as_deref(),
        b.enabled,
        b.staff_system,
    )?;
    let (setup, actor) = (Setup::new(&settings.webhooks), auth.actor());
    let endpoint = blocking(&pool, move |c| webhooks::update(c, &id, patch, &setup, &actor)).await?;
    Ok(HttpResponse::Ok().json(endpoint))
}

/// Delete an endpoint and its delivery history; nothing more is sent to it.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = EndpointView),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn delete(
    auth: Auth<Admin>,
    pool: web::Data<DbPool>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let actor = auth.actor();
    let endpoint = blocking(&pool, move |c| webhooks::delete(c, &id, &actor)).await?;
    Ok(HttpResponse::Ok().json(endpoint))
}

/// A new signing secret, shown this once. The previous one keeps signing for
/// `webhooks.rotation_grace_hours` (both signatures are sent, space-separated).
#[utoipa::path(post, path = "/v1/webhooks/{id}/rotate-secret", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = WebhookWithSecret),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn rotate_secret(
    auth: Auth<Admin>,
    pool: web::Data<DbPool>,
    settings: web::Data<Settings>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (setup, actor) = (Setup::new(&settings.webhooks), auth.actor());
    let (endpoint, secret) = blocking(&pool, move |c| webhooks::rotate_secret(c, &id, &setup, &actor)).await?;
    Ok(WebhookWithSecret::respond(HttpResponse::Ok(), endpoint, secret))
}

/// An endpoint's deliveries, newest first, each with every attempt (status code, the
/// first 1 KiB of the response, duration).
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path), DeliveryQuery),
    responses((status = 200, body = DeliveryList),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn deliveries(
    _auth: Auth<Admin>,
    pool: web::Data<DbPool>,
    id: web::Path<String>,
    q: ApiQuery<DeliveryQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = PageRequest::parse(q.0.limit, q.0.cursor.as_deref())?;
    let status = q.0.status;
    let result = blocking(&pool, move |c| webhooks::deliveries(c, &id, status, &page)).await?;
    Ok(HttpResponse::Ok().json(DeliveryList { items: result.items, next_cursor: result.next_cursor }))
}

/// Send a `webhook.ping` event to this endpoint (enabled or not), to check it receives and
/// verifies signatures.
#[utoipa::path(post, path = "/v1/webhooks/{id}/test", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 202, body = DeliveryView),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn test(auth: Auth<Admin>, pool: web::Data<DbPool>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let actor = auth.actor();
    let delivery = blocking(&pool, move |c| webhooks::ping(c, &id, &actor)).await?;
    Ok(HttpResponse::Accepted().json(delivery))
}

/// Send a delivered or failed delivery again: the same event and `webhook-id`, a fresh set of
/// tries.
#[utoipa::path(post, path = "/v1/webhook-deliveries/{id}/replay", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 202, body = DeliveryView),
        (status = 409, description = "`invalid-transition`: it is still being delivered", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn replay(
    auth: Auth<Admin>,
    pool: web::Data<DbPool>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let actor = auth.actor();
    let delivery = blocking(&pool, move |c| webhooks::replay(c, None, &id, &actor)).await?;
    Ok(HttpResponse::Accepted().json(delivery))
}
