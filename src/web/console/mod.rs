//! `/console`: the clinic's console for team members. Sign-in by e-mailed one-time link (the
//! link opens a page with a button, so mail scanners cannot use it up), then a session cookie
//! (`vouch_console`: HttpOnly, SameSite=Lax, Path=/console, Secure on https) with an idle
//! timeout and an absolute lifetime. Every page checks the member's role on the server
//! ([`Console`]); every form carries a CSRF token bound to the session; actions answer with a
//! redirect and a one-read flash message. Pages call `app::team` only.

mod ambassadors;
mod api_keys;
mod audit;
mod home;
mod imports;
mod ledger;
mod outbox;
mod payouts;
mod program;
mod referral_list;
mod referrals;
mod reports;
mod search;
mod sign_in;
mod team;
mod webhooks;

use std::collections::HashMap;
use std::marker::PhantomData;

use actix_web::cookie::{time::Duration, Cookie};
use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use futures_util::future::LocalBoxFuture;
use minijinja::{context, Value};
use serde::Serialize;

use super::{cookie, csrf, page, render_body, sentence, CsrfKey, WebError};
use crate::app::team::SignedIn;
use crate::auth::Policy;
use crate::config::Settings;
use crate::db::{blocking, DbPool};
use crate::domain::team::Role;
use crate::error::ApiError;
use crate::http::RequestId;

/// The console session cookie (the session token itself).
pub const SESSION_COOKIE: &str = "vouch_console";
/// The one-read flash message after an action (sealed: only this service writes it).
pub const FLASH_COOKIE: &str = "vouch_flash";
const PATH: &str = "/console";
/// Rows per page in the console's lists.
const PAGE_ROWS: i64 = 25;

pub fn configure(cfg: &mut web::ServiceConfig) {
    sign_in::configure(cfg);
    home::configure(cfg);
    imports::configure(cfg);
    // Before `referrals`: `/console/referrals/new` is not a referral's id.
    referral_list::configure(cfg);
    referrals::configure(cfg);
    search::configure(cfg);
    team::configure(cfg);
    payouts::configure(cfg);
    ledger::configure(cfg);
    reports::configure(cfg);
    ambassadors::configure(cfg);
    api_keys::configure(cfg);
    program::configure(cfg);
    outbox::configure(cfg);
    audit::configure(cfg);
    webhooks::configure(cfg);
}

/// Every role: what any signed-in member may open.
pub(crate) struct AnyMember;
impl Policy for AnyMember {
    const ROLES: &'static [Role] = &[Role::Staff, Role::Finance];
}

/// A signed-in member whom policy `P` lets open the page (admins pass every policy). Without
/// a live session the page answers with a redirect to the sign-in page (a post does nothing);
/// with the wrong role, a 403 page.
pub(crate) struct Console<P> {
    pub who: SignedIn,
    /// The session cookie's value (the member's forms' CSRF tokens are bound to it).
    secret: String,
    _policy: PhantomData<P>,
}

impl<P> Console<P> {
    pub fn binding(&self) -> csrf::Binding {
        csrf::Binding::Member(self.secret.clone())
    }
}

/// The signed-in member behind the request's cookie, and the cookie's value.
pub(crate) async fn signed_in(req: &HttpRequest) -> Result<Option<(SignedIn, String)>, WebError> {
    let Some(secret) = req.cookie(SESSION_COOKIE).map(|c| c.value().to_owned()) else {
        return Ok(None);
    };
    let pool = req.app_data::<web::Data<DbPool>>().cloned().expect("pool registered");
    let policy = req.app_data::<web::Data<Settings>>().expect("settings registered").console.session_policy();
    let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone());
    let lookup = secret.clone();
    let who = blocking(&pool, move |c| crate::app::team::session(c, &lookup, &policy, request_id)).await?;
    Ok(who.map(|w| (w, secret)))
}

impl<P: Policy> FromRequest for Console<P> {
    type Error = WebError;
    type Future = LocalBoxFuture<'static, Result<Self, WebError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let (who, secret) = signed_in(&req).await?.ok_or(WebError::SignInRequired)?;
            let console = Console { who, secret, _policy: PhantomData };
            let role = console.who.member.role;
            if role == Role::Admin || P::ROLES.contains(&role) {
                return Ok(console);
            }
            let settings = req.app_data::<web::Data<Settings>>().expect("settings registered");
            let key = req.app_data::<web::Data<CsrfKey>>().expect("CSRF key registered");
            let ctx = context! { required => P::ROLES.iter().map(|r| r.as_str()).collect::<Vec<_>>() };
            let body = render_body("console/forbidden.html", &chrome(settings, key, &console, "", ctx))?;
            Err(WebError::Page { status: StatusCode::FORBIDDEN, body })
        })
    }
}

/// What a console page's handler works with: the member whom `P` lets open it, the request,
/// and the app's pool, settings and CSRF key.
pub(crate) struct ConsolePage<P> {
    pub console: Console<P>,
    pub req: HttpRequest,
    pub pool: web::Data<DbPool>,
    pub settings: web::Data<Settings>,
    pub key: web::Data<CsrfKey>,
}

impl<P: Policy + 'static> FromRequest for ConsolePage<P> {
    type Error = WebError;
    type Future = LocalBoxFuture<'static, Result<Self, WebError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let console = Console::<P>::from_request(&req, &mut Payload::None).await?;
            let pool = req.app_data::<web::Data<DbPool>>().cloned().expect("pool registered");
            let settings = req.app_data::<web::Data<Settings>>().cloned().expect("settings registered");
            let key = req.app_data::<web::Data<CsrfKey>>().cloned().expect("CSRF key registered");
            Ok(Self { console, req, pool, settings, key })
        })
    }
}

impl<P> ConsolePage<P> {
    /// The page `template` (the navigation marks `current`), with the last action's flash.
    pub fn render(
        &self,
        status: StatusCode,
        template: &str,
        current: &str,
        ctx: Value,
    ) -> Result<HttpResponse, WebError> {
        render(&self.req, &self.key, &self.settings, &self.console, (status, template, current), ctx)
    }

    /// Refuses a form whose CSRF token is not bound to this member's session.
    pub fn check(&self, form: &super::Form) -> Result<(), WebError> {
        self.key.check(Some(&self.console.binding()), form)
    }

    /// After an action: to `location`, with `message` to show there once.
    pub fn done(&self, location: &str, message: &str) -> HttpResponse {
        super::see_other(location).cookie(flash(&self.settings, &self.key, message)).finish()
    }
}

/// One entry of the console's navigation.
#[derive(Serialize)]
struct NavItem {
    href: &'static str,
    label: &'static str,
    current: bool,
}

/// The navigation a role sees: only the pages it may open.
fn nav(role: Role, current: &str) -> Vec<NavItem> {
    let mut items = vec![("/console", "Home")];
    if matches!(role, Role::Admin | Role::Staff) {
        items.push(("/console/referrals", "Referrals"));
    }
    if role == Role::Admin {
        items.push(("/console/team", "Team"));
        items.push(("/console/api-keys", "API keys"));
        items.push(("/console/program", "Program"));
        items.push(("/console/outbox", "Outbox"));
        items.push(("/console/audit", "Audit"));
        items.push(("/console/webhooks", "Webhooks"));
        items.push(("/console/import", "Import"));
    }
    if matches!(role, Role::Admin | Role::Staff) {
        items.push(("/console/ambassadors", "Ambassadors"));
    }
    if matches!(role, Role::Admin | Role::Finance) {
        items.push(("/console/payouts", "Payouts"));
        items.push(("/console/ledger", "Ledger"));
        items.push(("/console/reports", "Reports"));
    }
    items.into_iter().map(|(href, label)| NavItem { href, label, current: href == current }).collect()
}

/// The layout's values (brand, the member, navigation, the sign-out form's token) with the
/// page's own `ctx`.
fn chrome<P>(settings: &Settings, key: &CsrfKey, console: &Console<P>, current: &str, ctx: Value) -> Value {
    let m = &console.who.member;
    context! {
        brand => settings.email.brand_name,
        me => context! { id => m.id, name => m.name, email => m.email, role => m.role.as_str() },
        nav => nav(m.role, current),
        csrf => key.token(&console.binding()),
        ..ctx
    }
}

/// A console page for the signed-in member, with the flash message left by the last action
/// (read once: the cookie is removed with this page).
pub(crate) fn render<P>(
    req: &HttpRequest,
    key: &CsrfKey,
    settings: &Settings,
    console: &Console<P>,
    (status, template, current): (StatusCode, &str, &str),
    ctx: Value,
) -> Result<HttpResponse, WebError> {
    let (flash, removal) = take_flash(req, key, settings);
    let ctx = chrome(settings, key, console, current, context! { flash, ..ctx });
    page(status, template, ctx, removal)
}

/// The flash message, and the cookie that removes it.
fn take_flash(req: &HttpRequest, key: &CsrfKey, settings: &Settings) -> (Option<String>, Option<Cookie<'static>>) {
    let Some(c) = req.cookie(FLASH_COOKIE) else {
        return (None, None);
    };
    let mut removal = cookie(settings, FLASH_COOKIE, String::new(), PATH);
    removal.make_removal();
    (key.open(c.value()), Some(removal))
}

/// A flash message for the next page.
pub(crate) fn flash(settings: &Settings, key: &CsrfKey, message: &str) -> Cookie<'static> {
    cookie(settings, FLASH_COOKIE, key.seal(message), PATH)
}

fn session_cookie(settings: &Settings, secret: String) -> Cookie<'static> {
    let mut c = cookie(settings, SESSION_COOKIE, secret, PATH);
    c.set_max_age(Duration::hours(i64::from(settings.console.session_max_hours)));
    c
}

fn expired_session_cookie(settings: &Settings) -> Cookie<'static> {
    let mut c = cookie(settings, SESSION_COOKIE, String::new(), PATH);
    c.make_removal();
    c
}

/// A refused form: its status, the message for each field, and a message for the form as a
/// whole when no field is to blame (the last admin, a deactivated member). Errors that are
/// not about the input (not found, unavailable) become the error page.
pub(crate) struct Refused {
    pub status: StatusCode,
    pub errors: HashMap<String, String>,
    pub summary: Option<String>,
    /// For a duplicate referral: the existing referral's id (the page links to it).
    pub existing_referral_id: Option<String>,
}

impl Refused {
    pub fn of(e: impl Into<ApiError>) -> Result<Self, WebError> {
        let e: ApiError = e.into();
        match e {
            ApiError::Validation(_)
            | ApiError::Conflict { .. }
            | ApiError::Unprocessable { .. }
            | ApiError::InvalidTransition { .. }
            | ApiError::DuplicateReferral { .. }
            | ApiError::Store(_) => {
                let problem = e.problem();
                let mut errors = HashMap::new();
                for f in problem.errors {
                    errors.entry(f.field).or_insert_with(|| sentence(&f.message));
                }
                let summary = errors.is_empty().then_some(problem.detail);
                let existing_referral_id = match &e {
                    ApiError::DuplicateReferral { existing_referral_id } => Some(existing_referral_id.clone()),
                    _ => None,
                };
                Ok(Self { status: e.status_code(), errors, summary, existing_referral_id })
            }
            other => Err(other.into()),
        }
    }

    /// The refusal as a re-rendered form shows it: its status, the messages, what was typed.
    pub fn form(e: impl Into<ApiError>, form: &super::Form) -> Result<(StatusCode, Value), WebError> {
        let r = Self::of(e)?;
        Ok((r.status, context! { errors => r.errors, summary => r.summary, values => form.values() }))
    }
}

/// The query string of a filtered list's page: the filters that are set, and `cursor` (none:
/// the newest page).
pub(crate) fn list_query(filters: &[(&str, &str)], cursor: Option<&str>) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in filters {
        if !v.is_empty() {
            q.append_pair(k, v);
        }
    }
    if let Some(cursor) = cursor {
        q.append_pair("cursor", cursor);
    }
    q.finish()
}
