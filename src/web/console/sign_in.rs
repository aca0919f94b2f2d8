//! Signing in and out of the console: the e-mail form (the same answer for every address,
//! rate limited per address), the page the e-mailed link opens (a button: the link is used on
//! the post), the session cookie, sign-out and sign-out everywhere.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use minijinja::context;

use super::{expired_session_cookie, session_cookie, signed_in, take_flash, AnyMember, ConsolePage};
use crate::app::team::{self, SignInRequest};
use crate::config::Settings;
use crate::db::blocking;
use crate::web::{csrf, link_page, page, resource, see_other, CsrfKey, Form, LinkQuery, PublicPost, WebError};

const SIGN_IN_PAGE: &str = "console/sign_in.html";

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
    page(StatusCode::OK, SIGN_IN_PAGE, ctx, nonce.into_iter().chain(removal))
}

/// E-mails a sign-in link to an active member (the same answer for any address).
async fn request_link(post: PublicPost) -> Result<HttpResponse, WebError> {
    let email = match post.email(SIGN_IN_PAGE)? {
        Ok(email) => email,
        Err(again) => return Ok(again),
    };
    let (actor, url) = (post.public.actor(), post.settings.public_url());
    let per_hour = post.settings.rate_limit.login_emails_per_hour;
    blocking(&post.pool, move |c| {
        team::request_sign_in(c, &email, &SignInRequest { public_url: &url, per_hour, actor: &actor })
    })
    .await?;
    Ok(see_other("/console/check-email").finish())
}

async fn check_email(settings: web::Data<Settings>) -> Result<HttpResponse, WebError> {
    page(StatusCode::OK, "console/check_email.html", context! { brand => settings.email.brand_name }, None)
}

/// The page the e-mailed link opens: one button, which uses the link.
async fn confirm(
    req: HttpRequest,
    settings: web::Data<Settings>,
    key: web::Data<CsrfKey>,
    q: web::Query<LinkQuery>,
) -> Result<HttpResponse, WebError> {
    link_page(&req, &settings, &key, ("console/confirm.html", "/console/sign-in"), q.into_inner())
}

/// Uses the link (once), starts the session and sets its cookie.
async fn start(post: PublicPost) -> Result<HttpResponse, WebError> {
    let (request_id, policy) = (post.public.request_id.clone(), post.settings.console.session_policy());
    let started = match post.token() {
        Ok(token) => blocking(&post.pool, move |c| team::sign_in(c, &token, &policy, request_id)).await,
        Err(e) => Err(e),
    };
    post.session_started(started.map(|(secret, _)| session_cookie(&post.settings, secret)), (SIGN_IN_PAGE, "/console"))
}

/// Back to the sign-in page, the session cookie cleared, with `message`.
fn signed_out(page: &ConsolePage<AnyMember>, message: &str) -> HttpResponse {
    let mut res = page.done("/console/sign-in", message);
    let _ = res.add_cookie(&expired_session_cookie(&page.settings));
    res
}

async fn sign_out(page: ConsolePage<AnyMember>, form: Form) -> Result<HttpResponse, WebError> {
    page.check(&form)?;
    let who = page.console.who.clone();
    blocking(&page.pool, move |c| team::sign_out(c, &who)).await?;
    Ok(signed_out(&page, "You are signed out."))
}

async fn sign_out_everywhere(page: ConsolePage<AnyMember>, form: Form) -> Result<HttpResponse, WebError> {
    page.check(&form)?;
    let who = page.console.who.clone();
    blocking(&page.pool, move |c| team::sign_out_everywhere(c, &who)).await?;
    Ok(signed_out(&page, "You are signed out everywhere."))
}
