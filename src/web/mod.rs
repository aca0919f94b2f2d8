//! Server-rendered pages for people without curl: the share-link landing page (`/r/{code}`),
//! the ambassador application (`/apply`), the ambassador portal (`/portal`) and the clinic's
//! console (`/console`). Pages call the
//! same parsing and store functions as the JSON API; their errors are HTML pages (the API
//! under `/v1` keeps problem+json). Templates (`templates/web/`), the stylesheet and the one
//! small script are embedded in the binary: the pages load nothing from the network.

mod apply;
mod assets;
mod console;
pub mod csrf;
mod landing;
pub(crate) mod multipart;
mod portal;

use std::collections::HashMap;
use std::sync::LazyLock;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::http::{header, StatusCode};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, HttpResponseBuilder, ResponseError};
use futures_util::future::LocalBoxFuture;
use minijinja::{context, Environment, UndefinedBehavior, Value};

use crate::config::Settings;
use crate::db::DbPool;
use crate::domain::contact::Email;
use crate::domain::money::{Currency, Money};
use crate::error::ApiError;
use crate::http::rate_limit::RateLimiter;
use crate::http::PublicRequest;

pub use csrf::CsrfKey;

pub fn configure(cfg: &mut web::ServiceConfig) {
    assets::configure(cfg);
    landing::configure(cfg);
    apply::configure(cfg);
    portal::configure(cfg);
    console::configure(cfg);
}

macro_rules! pages {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../templates/web/", $name))),)*]
    };
}

const SOURCES: &[(&str, &str)] = pages!(
    "layout.html",
    "forms.html",
    "landing.html",
    "unknown_code.html",
    "thanks.html",
    "apply.html",
    "applied.html",
    "login.html",
    "check_email.html",
    "confirm_login.html",
    "dashboard.html",
    "profile.html",
    "error.html",
    "console/layout.html",
    "console/pagination.html",
    "console/names.html",
    "console/sign_in.html",
    "console/check_email.html",
    "console/confirm.html",
    "console/home.html",
    "console/team.html",
    "console/member.html",
    "console/deactivate.html",
    "console/referral.html",
    "console/referrals.html",
    "console/referral_new.html",
    "console/search.html",
    "console/close_out.html",
    "console/forbidden.html",
    "console/payouts.html",
    "console/payout_preview.html",
    "console/payout.html",
    "console/payout_confirm.html",
    "console/ledger.html",
    "console/reports.html",
    "console/ambassadors.html",
    "console/ambassador_new.html",
    "console/ambassador.html",
    "console/ambassador_step.html",
    "console/code_deactivate.html",
    "console/ambassador_share.html",
    "console/api_keys.html",
    "console/api_key_created.html",
    "console/api_key_revoke.html",
    "console/outbox.html",
    "console/outbox_retry.html",
    "console/audit.html",
    "console/program.html",
    "console/program_example.html",
    "console/webhook_form.html",
    "console/webhooks.html",
    "console/webhook.html",
    "console/webhook_secret.html",
    "console/webhook_rotate.html",
    "console/webhook_delete.html",
    "console/import.html",
);

/// The page templates: compiled once, HTML auto-escaping on (every template is `.html`).
static PAGES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // Missing optional values (no errors yet, no values on a first view) read as empty.
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.set_formatter(crate::email::templates::html_formatter);
    env.add_filter("money", |minor: i64, currency: String| {
        Money::new(minor, Currency::from_stored(&currency)).to_string()
    });
    env.add_filter("percent", crate::domain::program::percent);
    env.add_filter("label", |status: String| {
        let words = status.replace('_', " ");
        let mut chars = words.chars();
        chars.next().map(|c| c.to_uppercase().chain(chars).collect::<String>()).unwrap_or_default()
    });
    for (name, source) in SOURCES {
        env.add_template(name, source).expect("embedded page templates parse");
    }
    env
});

/// Pages may not be framed, load only this origin's CSS and script, post only here, and the
/// script fetches only from here (the program page's live example).
const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn html_headers(res: &mut HttpResponseBuilder) {
    res.content_type("text/html; charset=utf-8")
        // Pages carry personal data and CSRF tokens: never cached, never sent on as a referrer
        // (login links and share codes stay out of other sites' logs).
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"));
}

fn render_body(template: &str, ctx: &Value) -> Result<String, ApiError> {
    PAGES
        .get_template(template)
        .and_then(|t| t.render(ctx))
        .map_err(|e| ApiError::internal(format!("rendering page {template}: {e:#}")))
}

/// A rendered page with the pages' headers; `cookies` are set with it.
pub(crate) fn page(
    status: StatusCode,
    template: &str,
    ctx: Value,
    cookies: impl IntoIterator<Item = Cookie<'static>>,
) -> Result<HttpResponse, WebError> {
    let body = render_body(template, &ctx)?;
    let mut res = HttpResponse::build(status);
    html_headers(&mut res);
    for c in cookies {
        res.cookie(c);
    }
    Ok(res.body(body))
}

/// 303 to another page (after a form post: reloading the result never posts twice).
pub(crate) fn see_other(location: &str) -> HttpResponseBuilder {
    let mut res = HttpResponse::SeeOther();
    res.insert_header((header::LOCATION, location.to_owned())).insert_header((header::CACHE_CONTROL, "no-store"));
    res
}

/// A cookie as the pages set them: HttpOnly, SameSite=Lax, Secure when served over https.
pub(crate) fn cookie(settings: &Settings, name: &'static str, value: String, path: &'static str) -> Cookie<'static> {
    Cookie::build(name, value)
        .path(path)
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(settings.public_url().starts_with("https://"))
        .finish()
}

/// Counts a public form post against the client address's rate limit.
pub(crate) fn rate_limit(req: &HttpRequest) -> Result<(), WebError> {
    let limiter = req.app_data::<web::Data<RateLimiter>>();
    if let (Some(limiter), Some(ip)) = (limiter, crate::http::client_ip(req)) {
        limiter.check(ip).map_err(|retry_after_secs| ApiError::RateLimited { retry_after_secs })?;
    }
    Ok(())
}

/// The fields of a posted HTML form (`application/x-www-form-urlencoded`); for a repeated
/// name the last value wins. Missing fields read as empty, unchecked boxes as false.
pub(crate) struct Form(HashMap<String, String>);

impl FromRequest for Form {
    type Error = WebError;
    type Future = LocalBoxFuture<'static, Result<Self, WebError>>;

    /// Read with the API's body reader (the same 64 KiB limit, answered here with a page).
    fn from_request(_: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let payload = payload.take();
        Box::pin(async move {
            let body = crate::extract::read_body(payload).await?;
            let fields: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
            for (name, value) in &fields {
                crate::extract::refuse_controls(name, name)?;
                crate::extract::refuse_controls(name, value)?;
            }
            Ok(Self(fields))
        })
    }
}

impl Form {
    pub fn text(&self, name: &str) -> String {
        self.0.get(name).cloned().unwrap_or_default()
    }

    /// The value, or `None` when missing or blank.
    pub fn optional(&self, name: &str) -> Option<String> {
        self.0.get(name).filter(|v| !v.trim().is_empty()).cloned()
    }

    pub fn checked(&self, name: &str) -> bool {
        self.0.get(name).is_some_and(|v| !v.is_empty())
    }

    /// The values to show again in a re-rendered form (never the CSRF token).
    pub fn values(&self) -> HashMap<&str, &str> {
        self.0.iter().filter(|(k, _)| k.as_str() != csrf::FIELD).map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }
}

/// A form page shown again after bad input (422): the errors next to their fields, what was
/// typed kept, a fresh copy of the same CSRF token; `extra` adds the page's own values.
pub(crate) fn form_again(
    template: &str,
    settings: &Settings,
    form: &Form,
    e: impl Into<ApiError>,
    extra: Value,
) -> Result<HttpResponse, WebError> {
    let ctx = context! {
        brand => settings.email.brand_name,
        csrf => form.text(csrf::FIELD),
        errors => field_errors(e.into())?,
        values => form.values(),
        ..extra
    };
    page(StatusCode::UNPROCESSABLE_ENTITY, template, ctx, None)
}

/// The query of the page an e-mailed sign-in link opens (portal and console).
#[derive(Debug, serde::Deserialize)]
pub(crate) struct LinkQuery {
    token: Option<String>,
}

/// The page an e-mailed sign-in link opens (`template`): one button that posts the token, so
/// the link is used only when a person presses it, never by a mail scanner that opens every
/// link. Without a token: to `start`.
pub(crate) fn link_page(
    req: &HttpRequest,
    settings: &Settings,
    key: &CsrfKey,
    (template, start): (&str, &str),
    q: LinkQuery,
) -> Result<HttpResponse, WebError> {
    let Some(token) = q.token.filter(|t| !t.trim().is_empty()) else {
        return Ok(see_other(start).finish());
    };
    let (binding, new_cookie) = csrf::visitor_or_new(req, settings);
    let ctx = context! { brand => settings.email.brand_name, csrf => key.token(&binding), token };
    page(StatusCode::OK, template, ctx, new_cookie)
}

/// A form post of the sign-in pages (portal and console), before anyone is signed in: counted
/// against the client address's rate limit and checked against the visitor's CSRF cookie
/// before the handler runs.
pub(crate) struct PublicPost {
    pub public: PublicRequest,
    pub pool: web::Data<DbPool>,
    pub settings: web::Data<Settings>,
    pub form: Form,
}

impl FromRequest for PublicPost {
    type Error = WebError;
    type Future = LocalBoxFuture<'static, Result<Self, WebError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let form = Form::from_request(&req, payload);
        Box::pin(async move {
            let form = form.await?;
            rate_limit(&req)?;
            let key = req.app_data::<web::Data<CsrfKey>>().cloned().expect("CSRF key registered");
            key.check(csrf::visitor(&req).as_ref(), &form)?;
            let public = PublicRequest::from_request(&req, &mut Payload::None).await?;
            let pool = req.app_data::<web::Data<DbPool>>().cloned().expect("pool registered");
            let settings = req.app_data::<web::Data<Settings>>().cloned().expect("settings registered");
            Ok(Self { public, pool, settings, form })
        })
    }
}

impl PublicPost {
    /// The posted e-mail address; or the answer: the form page (`template`) again with why.
    pub fn email(&self, template: &str) -> Result<Result<Email, HttpResponse>, WebError> {
        match Email::parse(&self.form.text("email")) {
            Ok(email) => Ok(Ok(email)),
            Err(why) => {
                form_again(template, &self.settings, &self.form, ApiError::validation("email", why), context! {})
                    .map(Err)
            }
        }
    }

    /// The posted sign-in link's token (a malformed one is refused like an unknown one).
    pub fn token(&self) -> crate::app::Result<String> {
        crate::app::portal::parse_login_token(&self.form.text("token"))
    }

    /// A sign-in's answer: to `home` with the session cookie; or, for a link that is invalid,
    /// expired or used, the sign-in page (`template`) again with the reason (422).
    pub fn session_started(
        &self,
        started: crate::app::Result<Cookie<'static>>,
        (template, home): (&str, &str),
    ) -> Result<HttpResponse, WebError> {
        match started {
            Ok(session) => Ok(see_other(home).cookie(session).finish()),
            Err(
                crate::app::Error::Unprocessable { kind: "invalid-login-link", .. } | crate::app::Error::Validation(_),
            ) => {
                let csrf = self.form.text(csrf::FIELD);
                let ctx = context! { brand => self.settings.email.brand_name, csrf, link_invalid => true };
                page(StatusCode::UNPROCESSABLE_ENTITY, template, ctx, None)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The fields a refused form gets its messages next to; any other error is passed on.
pub(crate) fn field_errors(e: ApiError) -> Result<HashMap<String, String>, WebError> {
    let errors = match e {
        ApiError::Validation(errors) => errors,
        e @ (ApiError::Unprocessable { field: Some(_), .. } | ApiError::Conflict { field: Some(_), .. }) => {
            e.problem().errors
        }
        other => return Err(other.into()),
    };
    let mut out = HashMap::new();
    for e in errors {
        let message = match e.field.as_str() {
            "consent_to_contact" => {
                "Please tick this box: the clinic can only record your details if it may contact you.".to_owned()
            }
            _ => sentence(&e.message),
        };
        out.entry(e.field).or_insert(message);
    }
    Ok(out)
}

/// The API's field messages ("must not be empty") as a sentence next to the field.
fn sentence(message: &str) -> String {
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => {
            let s: String = first.to_uppercase().chain(chars).collect();
            if s.ends_with('.') {
                s
            } else {
                s + "."
            }
        }
        None => String::new(),
    }
}

/// What a page handler can fail with; rendered as an HTML error page.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A form post without a valid CSRF token: nothing was done.
    #[error("form token missing or invalid")]
    Csrf,
    /// A console page without a live console session: to the sign-in page (nothing done).
    #[error("console sign-in required")]
    SignInRequired,
    /// A page already rendered for this refusal (the console's 403 for a wrong role).
    #[error("refused with status {status}")]
    Page { status: StatusCode, body: String },
}

impl From<crate::app::Error> for WebError {
    fn from(e: crate::app::Error) -> Self {
        Self::Api(e.into())
    }
}

impl ResponseError for WebError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Api(e) => e.status_code(),
            Self::Csrf => StatusCode::FORBIDDEN,
            Self::SignInRequired => StatusCode::SEE_OTHER,
            Self::Page { status, .. } => *status,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::SignInRequired => return see_other("/console/sign-in").finish(),
            Self::Page { status, body } => {
                let mut res = HttpResponse::build(*status);
                html_headers(&mut res);
                return res.body(body.clone());
            }
            _ => {}
        }
        let (heading, message) = match self {
            Self::SignInRequired | Self::Page { .. } => unreachable!("answered above"),
            Self::Csrf => (
                "This form has expired",
                "For your security the form could not be accepted, and nothing was saved. Go back, \
                 reload the page and send it again. (Cookies must be allowed for this site.)",
            ),
            Self::Api(e) => match e {
                ApiError::NotFound(_) => ("Page not found", "There is no page at this address."),
                ApiError::RateLimited { .. } => {
                    ("Too many attempts", "Please wait a minute, then try again. Nothing was saved.")
                }
                ApiError::PayloadTooLarge => ("That was too much text", "Please shorten what you typed and try again."),
                ApiError::Unavailable(_) => {
                    ("Please try again", "The service is busy for a moment. Nothing was saved; try again shortly.")
                }
                ApiError::MethodNotAllowed => ("Not available", "This page cannot be used that way."),
                ApiError::Internal(cause) => {
                    tracing::error!(%cause, "internal error on a page");
                    ("Something went wrong", "Something went wrong on our side. It has been logged.")
                }
                _ => ("This did not work", "Please go back and check what you entered."),
            },
        };
        if let Self::Api(ApiError::Unavailable(cause)) = self {
            tracing::warn!(%cause, "service unavailable");
        }
        let mut res = HttpResponse::build(self.status_code());
        html_headers(&mut res);
        match self {
            Self::Api(ApiError::RateLimited { retry_after_secs }) => {
                res.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            Self::Api(ApiError::Unavailable(_)) => {
                res.insert_header((header::RETRY_AFTER, "1"));
            }
            _ => {}
        }
        let ctx = context! { heading, message };
        match render_body("error.html", &ctx) {
            Ok(body) => res.body(body),
            Err(e) => {
                tracing::error!(error = %e, "error page did not render");
                res.body(heading)
            }
        }
    }
}

/// Pages answer unknown methods with the HTML error page.
pub(crate) async fn method_not_allowed() -> Result<HttpResponse, WebError> {
    Err(ApiError::MethodNotAllowed.into())
}

/// A page resource whose unsupported methods answer 405 as an HTML page.
pub(crate) fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}
