//! Ambassador portal sign-in (public, rate limited): ask for a login link, exchange it once
//! for a 30-day session token, sign out.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::app::portal::{self, parse_login_token};
use crate::auth::{AuthCache, Me};
use crate::config::Settings;
use crate::db::blocking;
use crate::db::DbPool;
use crate::domain::contact::Email;
use crate::domain::Validation;
use crate::error::{ApiError, Problem};
use crate::extract::ApiJson;
use crate::http::idempotency::SECRET_WITHHELD;
use crate::http::{idempotency, resource, Accepted, PublicRequest};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/login").route(web::post().to(login)))
        .service(resource("/sessions").route(web::post().to(start_session)))
        .service(resource("/logout").route(web::post().to(logout)));
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    /// The `token` from the login link.
    pub token: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PortalSession {
    /// Send as `Authorization: Bearer <token>` to `/v1/me…`. `null` only in an idempotent
    /// replay (`Idempotent-Replayed: true`): the token is never stored, so never shown again.
    pub token: Option<String>,
    /// Only in an idempotent replay: why `token` is `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_withheld: Option<String>,
    pub token_type: String,
    #[serde(serialize_with = "crate::store::utc::ser")]
    pub expires_at: chrono::NaiveDateTime,
}

/// Ask for a login link by e-mail. Always 202: whether the address belongs to an ambassador
/// is never revealed. An active ambassador gets a one-time link valid 15 minutes.
#[utoipa::path(post, path = "/v1/portal/login", tag = "portal", request_body = LoginRequest,
    responses((status = 202, body = Accepted),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json")))]
pub async fn login(
    ctx: PublicRequest,
    pool: web::Data<DbPool>,
    settings: web::Data<Settings>,
    body: ApiJson<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let mut v = Validation::new();
    let email = v.check("email", Email::parse(&body.0.email));
    v.finish()?;
    let (email, actor, url) = (email.expect("validated"), ctx.actor(), settings.public_url());
    let per_hour = settings.rate_limit.login_emails_per_hour;
    blocking(&pool, move |c| {
        portal::request_login(c, &email, &portal::LoginRequest { public_url: &url, per_hour, actor: &actor })
    })
    .await?;
    Ok(HttpResponse::Accepted().json(Accepted { status: "received".into() }))
}

/// Exchange a login link's token (once) for a session token valid 30 days.
#[utoipa::path(post, path = "/v1/portal/sessions", tag = "portal", request_body = SessionRequest,
    responses((status = 201, body = PortalSession),
        (status = 422, description = "`invalid-login-link`: unknown, expired or already used", body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json")))]
pub async fn start_session(
    ctx: PublicRequest,
    pool: web::Data<DbPool>,
    body: ApiJson<SessionRequest>,
) -> Result<HttpResponse, ApiError> {
    let token = parse_login_token(&body.0.token)?;
    let request_id = ctx.request_id.clone();
    let (token, expires_at) = blocking(&pool, move |c| portal::start_session(c, &token, request_id)).await?;
    let session =
        |token, token_withheld| PortalSession { token, token_withheld, token_type: "Bearer".into(), expires_at };
    let mut res = HttpResponse::Created().json(session(Some(token), None));
    idempotency::store_instead(&mut res, &session(None, Some(SECRET_WITHHELD.into())));
    Ok(res)
}

/// End the current portal session.
#[utoipa::path(post, path = "/v1/portal/logout", tag = "portal", security(("bearer" = [])),
    responses((status = 204, description = "Signed out"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn logout(me: Me, pool: web::Data<DbPool>, cache: web::Data<AuthCache>) -> Result<HttpResponse, ApiError> {
    let (session_id, actor) = (me.0.session_id.clone(), me.0.actor());
    blocking(&pool, move |c| portal::end_session(c, &session_id, &actor)).await?;
    cache.forget_session(&me.0.session_id);
    Ok(HttpResponse::NoContent().finish())
}
