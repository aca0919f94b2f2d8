//! Public endpoints (no key, rate limited per client address): code lookup and ambassador
//! applications.

use actix_web::{web, HttpResponse};

use crate::app::public::{
    find_code, parse_application, parse_referral, store_application, AmbassadorApplication, PublicCode, PublicReferral,
};
use crate::app::referrals;
use crate::config::Settings;
use crate::db::{blocking, read, DbPool};
use crate::domain::contact::ContactHasher;
use crate::email::MailContext;
use crate::error::{ApiError, Problem};
use crate::extract::ApiJson;
use crate::http::{resource, Accepted, PublicRequest};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/codes/{code}").route(web::get().to(lookup_code)))
        .service(resource("/ambassador-applications").route(web::post().to(apply)))
        .service(resource("/referrals").route(web::post().to(refer)));
}

/// Check a referral code. Unknown or inactive codes (or codes of an ambassador who cannot
/// refer now) are 404.
#[utoipa::path(get, path = "/v1/public/codes/{code}", tag = "public",
    params(("code" = String, Path, description = "Any case, hyphens optional")),
    responses((status = 200, body = PublicCode),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json")))]
pub async fn lookup_code(pool: web::Data<DbPool>, code: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let found = read(&pool, move |c| find_code(c, &code)).await?;
    Ok(HttpResponse::Ok().json(found.ok_or(ApiError::NotFound("referral code"))?))
}

/// Apply to become an ambassador. Always 202 for valid input: whether the e-mail is already
/// known is never revealed.
#[utoipa::path(post, path = "/v1/public/ambassador-applications", tag = "public",
    request_body = AmbassadorApplication,
    responses((status = 202, body = Accepted),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json")))]
pub async fn apply(
    ctx: PublicRequest,
    pool: web::Data<DbPool>,
    settings: web::Data<Settings>,
    body: ApiJson<AmbassadorApplication>,
) -> Result<HttpResponse, ApiError> {
    let new = parse_application(&settings, body.0)?;
    let (actor, mail) = (ctx.actor(), MailContext::new(&settings));
    blocking(&pool, move |c| store_application(c, &new, &mail, &actor)).await?;
    Ok(HttpResponse::Accepted().json(Accepted::received()))
}

/// A referred friend leaves their details (from the share link). Always 202 for well-formed
/// input: whether they were already referred is never revealed. Submissions that break a rule
/// are kept as `rejected` with the reason, for staff.
#[utoipa::path(post, path = "/v1/public/referrals", tag = "public",
    request_body = PublicReferral,
    responses((status = 202, body = Accepted),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json")))]
pub async fn refer(
    ctx: PublicRequest,
    pool: web::Data<DbPool>,
    settings: web::Data<Settings>,
    hasher: web::Data<ContactHasher>,
    body: ApiJson<PublicReferral>,
) -> Result<HttpResponse, ApiError> {
    let new = parse_referral(&settings, body.0)?;
    let (actor, mail) = (ctx.actor(), MailContext::new(&settings));
    blocking(&pool, move |c| referrals::submit_public(c, &new, &hasher, &mail, &actor)).await?;
    Ok(HttpResponse::Accepted().json(Accepted::received()))
}
