//! Signing in and out of the console: the e-mail form (the same answer for every address,
//! rate limited per address), the page the e-mailed link opens (a button: the link is used on
//! the post), the session cookie, sign-out and sign-out everywhere.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use minijinja::context;
use serde::Deserialize;

use super::{expired_session_cookie, flash, session_cookie, signed_in, take_flash, AnyMember, Console, Refused};
use crate::app::portal::parse_login_token;
use crate::app::team::{self, SignInRequest};
use crate::config::Settings;
use crate::db::{blocking, DbPool};
use crate::domain::contact::Email;
use crate::error::ApiError;
use crate::http::PublicRequest;
use crate::web::{csrf, page, rate_limit, resource, see_other, CsrfKey, Form, WebError};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/console/sign-in").route(web::get().to(form)).route(web::post().to(request_link)))
        .service(resource("/console/check-email").route(web::get().to(check_email)))
        .service(resource("/console/link").route(web::get().to(confirm)))
        .service(resource("/console/session").route(web::post().to(start)))
        .service(resource("/console/sign-out").route(web::post().to(sign_out)))
        .service(resource("/console/sign-out-everywhere").route(web::post().to(sign_out_everywhere)));
}

/// The sign-in form (a signed-in member goes to the console's home instead).
async fn form(
    req: HttpRequest,
    settings: web::Data<Settings>,
    key: web::Data<CsrfKey>,
) -> Result<HttpResponse, WebError> {
    if signed_in(&req).await?.is_some() {
        return Ok(see_other("/console").finish());
    }
    let (binding, nonce) = csrf::visitor_or_new(&req, &settings);
    let (flash, removal) = take_flash(&req, &key, &settings);
    let ctx = context! { brand => settings.email.brand_name, csrf => key.token(&binding), flash };
    page(StatusCode::OK, "console/sign_in.html", ctx, nonce.into_iter().chain(removal))
}

/// E-mails a sign-in link to an active member (the same answer for any address).
async fn request_link(
    req: HttpRequest,
    ctx: PublicRequest,
    pool: web::Data<DbPool>,
    settings: web::Data<Settings>,
    key: web::Data<CsrfKey>,
    form: Form,
) -> Result<HttpResponse, WebError> {
    rate_limit(&req)?;
    key.check(csrf::visitor(&req).as_ref(), &form)?;
    let email = match Email::parse(&form.text("email")) {
        Ok(email) => email,
        Err(message) => {
            let refused = Refused::of(ApiError::validation("email", message))?;
            let ctx = context! {
                brand => settings.email.brand_name,
                csrf => form.text(csrf::FIELD),
                errors => refused.errors,
                values => form.values(),
            };
            return page(refused.status, "console/sign_in.html", ctx, None);
        }
    };
    let (actor, url) = (ctx.actor(), settings.public_url());
    let per_hour = settings.rate_limit.login_emails_per_hour;
    blocking(&pool, move |c| {
        team::request_sign_in(c, &email, &SignInRequest { public_url: &url, per_hour, actor: &actor })
    })
    .await?;
    Ok(see_other("/console/check-email").finish())
}

async fn check_email(settings: web::Data<Settings>) -> Result<HttpResponse, WebError> {
    page(StatusCode::OK, "console/check_email.html", context! { brand => settings.email.brand_name }, None)
}

#[derive(Debug, Deserialize)]
struct LinkQuery {
    token: Option<String>,
}

/// The page the e-mailed link opens: one button, which uses the link.
async fn confirm(
    req: HttpRequest,
    settings: web::Data<Settings>,
    key: web::Data<CsrfKey>,
    q: web::Query<LinkQuery>,
) -> Result<HttpResponse, WebError> {
    let Some(token) = q.into_inner().token.filter(|t| !t.trim().is_empty()) else {
        return Ok(see_other("/console/sign-in").finish());
    };
    let (binding, nonce) = csrf::visitor_or_new(&req, &settings);
    let ctx = context! { brand => settings.email.brand_name, csrf => key.token(&binding), token };
    page(StatusCode::OK, "console/confirm.html", ctx, nonce)
}

/// Uses the link (once), starts the session and sets its cookie.
async fn start(
    req: HttpRequest,
    ctx: PublicRequest,
    pool: web::Data<DbPool>,
    settings: web::Data<Settings>,
    key: web::Data<CsrfKey>,
    form: Form,
) -> Result<HttpResponse, WebError> {
    rate_limit(&req)?;
    key.check(csrf::visitor(&req).as_ref(), &form)?;
    let (request_id, policy) = (ctx.request_id.clone(), settings.console.session_policy());
    let started = match parse_login_token(&form.text("token")) {
        Ok(token) => blocking(&pool, move |c| team::sign_in(c, &token, &policy, request_id)).await,
        Err(e) => Err(e),
    };
    match started {
        Ok((secret, _)) => Ok(see_other("/console").cookie(session_cookie(&settings, secret)).finish()),
        Err(ApiError::Unprocessable { kind: "invalid-login-link", .. } | ApiError::Validation(_)) => {
            let ctx =
                context! { brand => settings.email.brand_name, csrf => form.text(csrf::FIELD), link_invalid => true };
            page(StatusCode::UNPROCESSABLE_ENTITY, "console/sign_in.html", ctx, None)
        }
        Err(e) => Err(e.into()),
    }
}

async fn sign_out(
    console: Console<AnyMember>,
    pool: web::Data<DbPool>,
    settings: web::Data<Settings>,
    key: web::Data<CsrfKey>,
    form: Form,
) -> Result<HttpResponse, WebError> {
    key.check(Some(&console.binding()), &form)?;
    let who = console.who;
    blocking(&pool, move |c| team::sign_out(c, &who)).await?;
    Ok(see_other("/console/sign-in")
        .cookie(expired_session_cookie(&settings))
        .cookie(flash(&settings, &key, "You are signed out."))
        .finish())
}

async fn sign_out_everywhere(
    console: Console<AnyMember>,
    pool: web::Data<DbPool>,
    settings: web::Data<Settings>,
    key: web::Data<CsrfKey>,
    form: Form,
) -> Result<HttpResponse, WebError> {
    key.check(Some(&console.binding()), &form)?;
    let who = console.who;
    blocking(&pool, move |c| team::sign_out_everywhere(c, &who)).await?;
    Ok(see_other("/console/sign-in")
        .cookie(expired_session_cookie(&settings))
        .cookie(flash(&settings, &key, "You are signed out everywhere."))
        .finish())
}
