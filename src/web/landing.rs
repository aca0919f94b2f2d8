//! `/r/{code}`: the page a share link opens. It shows the clinic, the friend's offer, the
//! ambassador's display name only if they chose to show it, and the intake form, which
//! records a public referral exactly as `POST /v1/public/referrals` does.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use minijinja::context;

use super::{csrf, form_again, page, rate_limit, resource, see_other, CsrfKey, Form, WebError};
use crate::app::public::{find_code, parse_referral, PublicCode, PublicReferral};
use crate::app::referrals::submit_public;
use crate::config::Settings;
use crate::db::{blocking, read, DbPool};
use crate::domain::contact::ContactHasher;
use crate::email::MailContext;
use crate::error::ApiError;
use crate::http::PublicRequest;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/r/{code}").route(web::get().to(show)).route(web::post().to(submit)))
        .service(resource("/r/{code}/thanks").route(web::get().to(thanks)));
}

async fn lookup(pool: &DbPool, typed: String) -> Result<Option<PublicCode>, WebError> {
    Ok(read(pool, move |c| find_code(c, &typed)).await?)
}

fn unknown_code(settings: &Settings) -> Result<HttpResponse, WebError> {
    page(StatusCode::NOT_FOUND, "unknown_code.html", context! { brand => settings.email.brand_name }, None)
}

async fn show(
    req: HttpRequest,
    pool: web::Data<DbPool>,
    settings: web::Data<Settings>,
    key: web::Data<CsrfKey>,
    code: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    // A code lookup, like GET /v1/public/codes/{code}: limited, so codes cannot be guessed.
    super::rate_limit(&req)?;
    let Some(found) = lookup(&pool, code.into_inner()).await? else {
        return unknown_code(&settings);
    };
    let (binding, new_cookie) = csrf::visitor_or_new(&req, &settings);
    let ctx = context! {
        brand => settings.email.brand_name,
        csrf => key.token(&binding),
        code => found,
    };
    page(StatusCode::OK, "landing.html", ctx, new_cookie)
}

#[allow(clippy::too_many_arguments)]
async fn submit(
    req: HttpRequest,
    ctx: PublicRequest,
    pool: web::Data<DbPool>,
    settings: web::Data<Settings>,
    hasher: web::Data<ContactHasher>,
    key: web::Data<CsrfKey>,
    code: web::Path<String>,
    form: Form,
) -> Result<HttpResponse, WebError> {
    rate_limit(&req)?;
    let binding = csrf::visitor(&req);
    key.check(binding.as_ref(), &form)?;
    let Some(found) = lookup(&pool, code.into_inner()).await? else {
        return unknown_code(&settings);
    };
    let input = PublicReferral {
        code: found.code.clone(),
        first_name: form.text("first_name"),
        last_name: form.optional("last_name"),
        email: form.optional("email"),
        phone: form.optional("phone"),
        consent_to_contact: form.checked("consent_to_contact"),
        share_name_with_ambassador: form.checked("share_name_with_ambassador"),
    };
    let new = match parse_referral(&settings, input) {
        Ok(new) => new,
        Err(e) => return form_again("landing.html", &settings, &form, e, context! { code => found }),
    };
    let (actor, mail) = (ctx.actor(), MailContext::new(&settings));
    blocking(&pool, move |c| submit_public(c, &new, &hasher, &mail, &actor)).await.map_err(ApiError::from)?;
    Ok(see_other(&format!("/r/{}/thanks", found.code)).finish())
}

/// The same neutral words whatever became of the submission (never reveals an earlier referral).
async fn thanks(settings: web::Data<Settings>) -> Result<HttpResponse, WebError> {
    page(StatusCode::OK, "thanks.html", context! { brand => settings.email.brand_name }, None)
}
