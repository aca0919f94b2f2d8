//! Public endpoints (no key, rate limited per client address): code lookup and ambassador
//! applications.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::db::blocking;
use crate::db::DbPool;
use crate::domain::contact::ContactHasher;
use crate::domain::{optional_text, Validation};
use crate::email::MailContext;
use crate::error::{ApiError, Problem};
use crate::extract::ApiJson;
use crate::http::{resource, PublicRequest};
use crate::routes::ambassadors::{parse_person, PersonFields};
use crate::routes::referrals::parse_client;
use crate::store::ambassadors::{self, Enrolment, NewAmbassador};
use crate::store::codes;
use crate::store::referrals::{self, NewReferral};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/codes/{code}").route(web::get().to(lookup_code)))
        .service(resource("/ambassador-applications").route(web::post().to(apply)))
        .service(resource("/referrals").route(web::post().to(refer)));
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PublicCode {
    /// The code as issued (`7Q4K-9MZD`).
    pub code: String,
    pub valid: bool,
    /// Only when the ambassador chose to show their name.
    pub ambassador_display_name: Option<String>,
    /// What the referred friend gets (from the program rules).
    pub client_offer: Option<String>,
}

/// Check a referral code. Unknown or inactive codes (or codes of an ambassador who cannot
/// refer now) are 404.
#[utoipa::path(get, path = "/v1/public/codes/{code}", tag = "public",
    params(("code" = String, Path, description = "Any case, hyphens optional")),
    responses((status = 200, body = PublicCode),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json")))]
pub async fn lookup_code(pool: web::Data<DbPool>, code: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let found = blocking(&pool, move |c| find_code(c, &code)).await?;
    Ok(HttpResponse::Ok().json(found.ok_or(ApiError::NotFound("referral code"))?))
}

/// What a friend sees of a usable code (the API's lookup and the share-link page); `None` for
/// unknown or inactive codes, and codes of an ambassador who cannot refer now.
pub(crate) fn find_code(c: &mut crate::db::DbConnection, code: &str) -> Result<Option<PublicCode>, ApiError> {
    if code.len() > 64 {
        return Ok(None);
    }
    let Some((code, amb)) = codes::find_usable(c, code)? else {
        return Ok(None);
    };
    Ok(Some(PublicCode {
        code: code.code,
        valid: true,
        ambassador_display_name: amb.display_name.filter(|_| amb.show_name_to_referrals),
        client_offer: crate::store::program::current(c)?.rules.client_offer,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AmbassadorApplication {
    pub name: String,
    pub email: String,
    pub phone: Option<String>,
    pub display_name: Option<String>,
    #[serde(default)]
    pub show_name_to_referrals: bool,
    /// Anything the applicant wants the clinic to know.
    pub message: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    pub status: String,
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
    Ok(HttpResponse::Accepted().json(Accepted { status: "received".into() }))
}

/// Validates an application (the API's and the `/apply` page's).
pub(crate) fn parse_application(settings: &Settings, a: AmbassadorApplication) -> Result<NewAmbassador, ApiError> {
    let mut v = Validation::new();
    let PersonFields { name, email, phone, display_name } =
        parse_person(&mut v, settings, &a.name, &a.email, a.phone.as_deref(), a.display_name.as_deref());
    let message = v.check("message", optional_text(a.message.as_deref(), 2000));
    v.finish()?;
    Ok(NewAmbassador {
        name: name.unwrap_or_default(),
        email: email.expect("validated"),
        phone: phone.flatten(),
        show_name_to_referrals: a.show_name_to_referrals && matches!(display_name, Some(Some(_))),
        display_name: display_name.flatten(),
        payout_method: None,
        notifications: Default::default(),
        notes: None,
        application_message: message.flatten(),
        vanity_code: None,
    })
}

/// Records an `applied` ambassador (staff alerted in the same transaction). An e-mail that is
/// already known is silently accepted: the answer never reveals who is an ambassador.
pub(crate) fn store_application(
    c: &mut crate::db::DbConnection,
    new: &NewAmbassador,
    mail: &MailContext,
    actor: &crate::store::audit::Actor,
) -> Result<(), ApiError> {
    match ambassadors::enrol(c, new, Enrolment::Application, mail, actor) {
        Ok(_) | Err(ApiError::Conflict { kind: "email-taken", .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublicReferral {
    /// The code from the share link.
    pub code: String,
    pub first_name: String,
    pub last_name: Option<String>,
    /// E-mail and/or phone: at least one.
    pub email: Option<String>,
    pub phone: Option<String>,
    /// Must be true: the friend agrees to be contacted by the clinic.
    pub consent_to_contact: bool,
    /// The friend agrees that the ambassador sees their first name and initial.
    #[serde(default)]
    pub share_name_with_ambassador: bool,
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
    Ok(HttpResponse::Accepted().json(Accepted { status: "received".into() }))
}

/// Validates a friend's intake form (the API's and the share-link page's).
pub(crate) fn parse_referral(settings: &Settings, b: PublicReferral) -> Result<NewReferral, ApiError> {
    let mut v = Validation::new();
    let client = parse_client(
        &mut v,
        settings,
        &b.code,
        &b.first_name,
        b.last_name.as_deref(),
        b.email.as_deref(),
        b.phone.as_deref(),
    );
    if !b.consent_to_contact {
        v.push("consent_to_contact", "must be true: we can only record you if the clinic may contact you");
    }
    v.finish()?;
    Ok(NewReferral { share_name_with_ambassador: b.share_name_with_ambassador, ..client })
}
