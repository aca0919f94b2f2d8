//! `/portal`: the ambassador portal in the browser. Sign-in by e-mailed link (the same
//! one-time tokens as the API), then a dashboard (share links, balance, masked referrals,
//! payouts) and a profile page. The session is the API's `vp_…` session token in an HttpOnly,
//! SameSite=Lax cookie limited to `/portal` (Secure when `public_url` is https).
//!
//! Opening the e-mailed link shows a "Sign in" button rather than signing in on the GET:
//! mail scanners that fetch every link would otherwise use up the one-time link.

use actix_web::cookie::{time::Duration, Cookie};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use minijinja::context;
use serde::Deserialize;

use super::{
    cookie, csrf, field_errors, link_page, page, resource, see_other, CsrfKey, Form, LinkQuery, PublicPost, WebError,
};
use crate::app::portal::{self as me, LoginRequest, MeView, UpdateMe};
use crate::auth::{identify, AmbassadorCaller, AuthCache, Identity};
use crate::config::Settings;
use crate::db::blocking;
use crate::db::DbPool;
use crate::domain::ambassador::{NotificationPreferences, PayoutMethod};
use crate::domain::calendar::Calendar;
use crate::error::ApiError;
use crate::http::RequestId;
use crate::store::{portal, PageRequest};

/// The session cookie (the portal session token itself).
pub const SESSION_COOKIE: &str = "vouch_session";
const SESSION_PATH: &str = "/portal";
/// Referrals and payouts shown on the dashboard (newest first).
const DASHBOARD_ROWS: i64 = 50;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/portal").route(web::get().to(home)))
        .service(resource("/portal/login").route(web::get().to(confirm_login)).route(web::post().to(request_link)))
        .service(resource("/portal/check-email").route(web::get().to(check_email)))
        .service(resource("/portal/session").route(web::post().to(sign_in)))
        .service(resource("/portal/profile").route(web::get().to(profile)).route(web::post().to(update_profile)))
        .service(resource("/portal/logout").route(web::post().to(sign_out)));
}

/// A signed-in ambassador, from the session cookie: the API's caller plus the cookie's secret
/// (which the session's CSRF tokens are bound to).
struct Session {
    secret: String,
    caller: AmbassadorCaller,
}

impl Session {
    fn binding(&self) -> csrf::Binding {
        csrf::Binding::Session(self.secret.clone())
    }
}

/// The live session named by the cookie, if any (expired, revoked or unknown: none).
async fn session(req: &HttpRequest, pool: &DbPool) -> Result<Option<Session>, WebError> {
    let cache = req.app_data::<web::Data<AuthCache>>().expect("auth cache registered");
    let Some(secret) = req
        .cookie(SESSION_COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|s| s.starts_with(portal::SESSION_PREFIX) && s.len() <= 200)
    else {
        return Ok(None);
    };
    let request_id = {
        use actix_web::HttpMessage;
        req.extensions().get::<RequestId>().map(|r| r.0.clone())
    };
    match identify(pool, cache, secret.clone()).await? {
        Some(Identity::Ambassador { session_id, ambassador_id }) => {
            Ok(Some(Session { secret, caller: AmbassadorCaller { ambassador_id, session_id, request_id } }))
        }
        _ => Ok(None),
    }
}

fn session_cookie(settings: &Settings, secret: String) -> Cookie<'static> {
    let mut c = cookie(settings, SESSION_COOKIE, secret, SESSION_PATH);
    c.set_max_age(Duration::seconds(portal::SESSION_TTL.num_seconds()));
    c
}

fn expired_session_cookie(settings: &Settings) -> Cookie<'static> {
    let mut c = cookie(settings, SESSION_COOKIE, String::new(), SESSION_PATH);
    c.make_removal();
    c
}

#[derive(Debug, Deserialize)]
struct HomeQuery {
    signed_out: Option<String>,
}

/// The dashboard when signed in, else the sign-in form.
async fn home(
    req: HttpRequest,
    pool: web::Data<DbPool>,
    settings: web::Data<Settings>,
    calendar: web::Data<Calendar>,
    key: web::Data<CsrfKey>,
    q: web::Query<HomeQuery>,
) -> Result<HttpResponse, WebError> {
    let Some(s) = session(&req, &pool).await? else {
        let (binding, new_cookie) = csrf::visitor_or_new(&req, &settings);
        let ctx = context! {
            brand => settings.email.brand_name,
            csrf => key.token(&binding),
            signed_out => q.signed_out.is_some(),
        };
        return page(StatusCode::OK, "login.html", ctx, new_cookie);
    };
    let (id, url, cal) = (s.caller.ambassador_id.clone(), settings.public_url(), **calendar);
    let rows = PageRequest { limit: DASHBOARD_ROWS, after_id: None };
    let (me, codes, referrals, payouts) = blocking(&pool, move |c| {
        Ok::<_, crate::app::Error>((
            me::load_profile(c, &id)?,
            me::active_codes(c, &id, &url)?,
            me::my_referrals(c, &cal, &id, None, &rows)?,
            me::my_payouts(c, &cal, &id, &rows)?,
        ))
    })
    .await
    .map_err(ApiError::from)?;
    let ctx = context! {
        brand => settings.email.brand_name,
        csrf => key.token(&s.binding()),
        signed_in => true,
        me => me,
        codes => codes,
        referrals => referrals.items,
        more_referrals => referrals.next_cursor.is_some(),
        payouts => payouts.items,
    };
    page(StatusCode::OK, "dashboard.html", ctx, None)
}

/// Asks for a login link (same answer whether or not the address is an ambassador's).
async fn request_link(post: PublicPost) -> Result<HttpResponse, WebError> {
    let email = match post.email("login.html")? {
        Ok(email) => email,
        Err(again) => return Ok(again),
    };
    let (actor, url) = (post.public.actor(), post.settings.public_url());
    let per_hour = post.settings.rate_limit.login_emails_per_hour;
    blocking(&post.pool, move |c| {
        me::request_login(c, &email, &LoginRequest { public_url: &url, per_hour, actor: &actor })
    })
    .await?;
    Ok(see_other("/portal/check-email").finish())
}

async fn check_email(settings: web::Data<Settings>) -> Result<HttpResponse, WebError> {
    page(StatusCode::OK, "check_email.html", context! { brand => settings.email.brand_name }, None)
}

/// The page the e-mailed link opens: one button that signs in (the token is used on the post).
async fn confirm_login(
    req: HttpRequest,
    settings: web::Data<Settings>,
    key: web::Data<CsrfKey>,
    q: web::Query<LinkQuery>,
) -> Result<HttpResponse, WebError> {
    link_page(&req, &settings, &key, ("confirm_login.html", "/portal"), q.into_inner())
}

/// Exchanges the link's token (once) for a session and sets the session cookie.
async fn sign_in(post: PublicPost) -> Result<HttpResponse, WebError> {
    let request_id = post.public.request_id.clone();
    let started = match post.token() {
        Ok(token) => blocking(&post.pool, move |c| me::start_session(c, &token, request_id)).await,
        Err(e) => Err(e),
    };
    post.session_started(started.map(|(secret, _)| session_cookie(&post.settings, secret)), ("login.html", "/portal"))
}

fn profile_values(me: &MeView) -> serde_json::Value {
    let (paypal_email, bank_reference) = match &me.payout_method {
        Some(PayoutMethod::Paypal { email }) => (email.as_str(), ""),
        Some(PayoutMethod::Bank { reference }) => ("", reference.as_str()),
        _ => ("", ""),
    };
    serde_json::json!({
        "display_name": me.display_name.as_deref().unwrap_or_default(),
        "show_name_to_referrals": me.show_name_to_referrals,
        "payout_method": me.payout_method.as_ref().map_or("none", PayoutMethod::kind),
        "paypal_email": paypal_email,
        "bank_reference": bank_reference,
        "notify_referral_updates": me.notification_preferences.referral_updates,
        "notify_reward_updates": me.notification_preferences.reward_updates,
    })
}

#[derive(Debug, Deserialize)]
struct ProfileQuery {
    saved: Option<String>,
}

async fn profile(
    req: HttpRequest,
    pool: web::Data<DbPool>,
    settings: web::Data<Settings>,
    key: web::Data<CsrfKey>,
    q: web::Query<ProfileQuery>,
) -> Result<HttpResponse, WebError> {
    let Some(s) = session(&req, &pool).await? else {
        return Ok(see_other("/portal").finish());
    };
    let id = s.caller.ambassador_id.clone();
    let me = blocking(&pool, move |c| me::load_profile(c, &id)).await.map_err(ApiError::from)?;
    let ctx = context! {
        brand => settings.email.brand_name,
        csrf => key.token(&s.binding()),
        signed_in => true,
        me => me,
        values => profile_values(&me),
        saved => q.saved.is_some(),
    };
    page(StatusCode::OK, "profile.html", ctx, None)
}

/// The profile form as the API's `PATCH /v1/me` body, so both are validated alike.
fn update_from_form(form: &Form) -> UpdateMe {
    let payout_method = match form.text("payout_method").as_str() {
        "paypal" => Some(PayoutMethod::Paypal { email: form.text("paypal_email") }),
        "bank" => Some(PayoutMethod::Bank { reference: form.text("bank_reference") }),
        "store_credit" => Some(PayoutMethod::StoreCredit),
        _ => None,
    };
    UpdateMe {
        display_name: Some(form.optional("display_name")),
        show_name_to_referrals: Some(form.checked("show_name_to_referrals")),
        payout_method: Some(payout_method),
        notification_preferences: Some(NotificationPreferences {
            referral_updates: form.checked("notify_referral_updates"),
            reward_updates: form.checked("notify_reward_updates"),
        }),
    }
}

async fn update_profile(
    req: HttpRequest,
    pool: web::Data<DbPool>,
    settings: web::Data<Settings>,
    key: web::Data<CsrfKey>,
    form: Form,
) -> Result<HttpResponse, WebError> {
    let Some(s) = session(&req, &pool).await? else {
        // No session: the form cannot be bound to anything, so it is refused like a forgery.
        return Err(WebError::Csrf);
    };
    key.check(Some(&s.binding()), &form)?;
    let changes = match me::parse_update(update_from_form(&form)) {
        Ok(changes) => changes,
        Err(e) => {
            let errors = field_errors(e.into())?;
            let id = s.caller.ambassador_id.clone();
            let me = blocking(&pool, move |c| me::load_profile(c, &id)).await.map_err(ApiError::from)?;
            let mut values = serde_json::to_value(form.values()).unwrap_or_default();
            for flag in ["show_name_to_referrals", "notify_referral_updates", "notify_reward_updates"] {
                values[flag] = form.checked(flag).into();
            }
            let ctx = context! {
                brand => settings.email.brand_name,
                csrf => form.text(csrf::FIELD),
                signed_in => true,
                me => me,
                values => values,
                errors => errors,
            };
            return page(StatusCode::UNPROCESSABLE_ENTITY, "profile.html", ctx, None);
        }
    };
    let (id, actor) = (s.caller.ambassador_id.clone(), s.caller.actor());
    blocking(&pool, move |c| me::apply_update(c, &id, &changes, &actor)).await.map_err(ApiError::from)?;
    Ok(see_other("/portal/profile?saved=1").finish())
}

async fn sign_out(
    req: HttpRequest,
    pool: web::Data<DbPool>,
    cache: web::Data<AuthCache>,
    settings: web::Data<Settings>,
    key: web::Data<CsrfKey>,
    form: Form,
) -> Result<HttpResponse, WebError> {
    let Some(s) = session(&req, &pool).await? else {
        return Ok(see_other("/portal").cookie(expired_session_cookie(&settings)).finish());
    };
    key.check(Some(&s.binding()), &form)?;
    let (session_id, actor) = (s.caller.session_id.clone(), s.caller.actor());
    blocking(&pool, move |c| me::end_session(c, &session_id, &actor)).await.map_err(ApiError::from)?;
    cache.forget_session(&s.caller.session_id);
    Ok(see_other("/portal?signed_out=1").cookie(expired_session_cookie(&settings)).finish())
}
