//! `/v1/api-keys` (admin): create, list, revoke.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::app::api_keys;
use crate::auth::{Admin, Auth, AuthCache};
use crate::db::blocking;
use crate::db::DbPool;
use crate::domain::api_key::{NewKey, Role};
use crate::error::{ApiError, Problem};
use crate::extract::ApiJson;
use crate::http::idempotency::{self, SECRET_WITHHELD};
use crate::http::resource;
use crate::store::api_keys::ApiKeyView;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api-keys").route(web::post().to(create)).route(web::get().to(list)))
        .service(resource("/api-keys/{id}").route(web::delete().to(revoke)));
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// What the key is for, e.g. "front desk".
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub key: ApiKeyView,
    /// The secret, shown this once. Store it now. `null` only in an idempotent replay
    /// (`Idempotent-Replayed: true`): secrets are never stored, so never shown again.
    pub secret: Option<String>,
    /// Only in an idempotent replay: why `secret` is `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_withheld: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiKeyList {
    pub items: Vec<ApiKeyView>,
    pub next_cursor: Option<String>,
}

/// Create an API key; the secret is in this response only (an idempotent replay withholds it).
#[utoipa::path(post, path = "/v1/api-keys", tag = "api-keys", security(("bearer" = [])),
    request_body = CreateApiKey,
    responses((status = 201, body = CreatedApiKey),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn create(
    auth: Auth<Admin>,
    pool: web::Data<DbPool>,
    body: ApiJson<CreateApiKey>,
) -> Result<HttpResponse, ApiError> {
    let new = NewKey::parse(&body.0.name, Ok(body.0.role))?;
    let actor = auth.actor();
    let (key, secret) = blocking(&pool, move |c| api_keys::create(c, &new, &actor)).await?;
    let redacted = CreatedApiKey { key: key.clone(), secret: None, secret_withheld: Some(SECRET_WITHHELD.into()) };
    let mut res = HttpResponse::Created().json(CreatedApiKey { key, secret: Some(secret), secret_withheld: None });
    idempotency::store_instead(&mut res, &redacted);
    Ok(res)
}

/// List API keys (never their secrets).
#[utoipa::path(get, path = "/v1/api-keys", tag = "api-keys", security(("bearer" = [])),
    responses((status = 200, body = ApiKeyList),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn list(_auth: Auth<Admin>, pool: web::Data<DbPool>) -> Result<HttpResponse, ApiError> {
    let items = blocking(&pool, api_keys::list).await?;
    Ok(HttpResponse::Ok().json(ApiKeyList { items, next_cursor: None }))
}

/// Revoke an API key; it stops working at once.
#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "api-keys", security(("bearer" = [])),
    params(("id" = String, Path, description = "API key id")),
    responses((status = 200, body = ApiKeyView),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn revoke(
    auth: Auth<Admin>,
    pool: web::Data<DbPool>,
    cache: web::Data<AuthCache>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let actor = auth.actor();
    let key = blocking(&pool, move |c| api_keys::revoke(c, &id, &actor)).await?;
    cache.forget_key(&key.id);
    Ok(HttpResponse::Ok().json(key))
}
