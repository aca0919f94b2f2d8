//! Staff → Referrals: every referral newest first, filtered by status and paginated; and
//! recording a new one on the form of `POST /v1/referrals`. The code field says whose code it
//! is: as you type with the page's script (which asks `/console/codes/check`), or with the
//! "Check code" button when scripts are off. A refusal (duplicate, self-referral, unknown or
//! inactive code, bad fields) shows the API's message on the form and stores nothing; a
//! duplicate links to the referral that already holds the client.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use chrono::NaiveDate;
use minijinja::{context, Value};
use serde::{Deserialize, Serialize};

use super::{ConsolePage, Refused, PAGE_ROWS};
use crate::app::codes::{self, CodeOwner};
use crate::app::input::{parse_new_referral, ReferralInput};
use crate::app::referrals;
use crate::auth::Staff;
use crate::db::blocking;
use crate::domain::calendar::Calendar;
use crate::domain::contact::ContactHasher;
use crate::domain::referral::ReferralStatus;
use crate::domain::Validation;
use crate::store::referrals::ReferralFilter;
use crate::store::PageRequest;
use crate::web::{resource, Form, WebError};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/console/referrals").route(web::get().to(list)))
        .service(resource("/console/referrals/new").route(web::get().to(new_form)).route(web::post().to(create)))
        .service(resource("/console/codes/check").route(web::get().to(check_code)));
}

type StaffPage = ConsolePage<Staff>;

const NEW_PAGE: &str = "console/referral_new.html";

/// The list's filter and position; an empty status means any.
#[derive(Debug, Default, Deserialize, Serialize)]
struct ListQuery {
    #[serde(default)]
    status: String,
    cursor: Option<String>,
}

impl ListQuery {
    fn status(&self) -> crate::app::Result<Option<ReferralStatus>> {
        match self.status.trim() {
            "" => Ok(None),
            s => ReferralStatus::parse(s)
                .map(Some)
                .ok_or_else(|| crate::app::Error::validation("status", "is not a referral status")),
        }
    }

    /// The query string of the next page (same filter).
    fn next(&self, cursor: &str) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if !self.status.is_empty() {
            q.append_pair("status", &self.status);
        }
        q.append_pair("cursor", cursor);
        q.finish()
    }
}

async fn list(
    page: StaffPage,
    q: web::Query<ListQuery>,
    calendar: web::Data<Calendar>,
) -> Result<HttpResponse, WebError> {
    let q = q.into_inner();
    let filter = ReferralFilter { status: q.status()?, q_matches_contact: true, ..ReferralFilter::default() };
    let rows = PageRequest::parse(Some(PAGE_ROWS), q.cursor.as_deref())?;
    let cal = **calendar;
    let found = blocking(&page.pool, move |c| referrals::search(c, &cal, &filter, &rows)).await?;
    let next = found.next_cursor.as_deref().map(|c| q.next(c));
    let items: Vec<Value> = found
        .items
        .into_iter()
        .map(|(r, code)| {
            let registered_on = r.registered_on(&calendar).to_string();
            context! {
                id => r.id,
                first_name => r.client_first_name,
                last_name => r.client_last_name,
                erased => r.erased_at.is_some(),
                status => r.status.as_str(),
                source => r.source.as_str(),
                code => code.or(r.submitted_code),
                registered_on,
                session_count => r.session_count,
            }
        })
        .collect();
    let statuses: Vec<&str> = ReferralStatus::ALL.iter().map(|s| s.as_str()).collect();
    let ctx = context! { referrals => items, next, q, statuses };
    page.render(StatusCode::OK, "console/referrals.html", "/console/referrals", ctx)
}

/// What the code field says about a typed code (the same words with and without the script).
#[derive(Debug, Serialize)]
struct CodeCheck {
    found: bool,
    usable: bool,
    message: String,
}

impl CodeCheck {
    fn of(owner: Option<CodeOwner>) -> Self {
        let Some(o) = owner else {
            return Self { found: false, usable: false, message: "No referral code matches.".into() };
        };
        let message = if !o.active {
            format!("{}'s code {} is deactivated: it takes no referrals.", o.ambassador_name, o.code)
        } else if !o.usable {
            format!(
                "{}'s code {}: the ambassador is {}, so it takes no referrals.",
                o.ambassador_name,
                o.code,
                o.ambassador_status.as_str()
            )
        } else {
            format!("{}'s code {} (ambassador {}).", o.ambassador_name, o.code, o.ambassador_status.as_str())
        };
        Self { found: true, usable: o.usable, message }
    }
}

impl StaffPage {
    async fn code_check(&self, typed: String) -> Result<Option<CodeCheck>, WebError> {
        if typed.trim().is_empty() || typed.chars().count() > 64 {
            return Ok(None);
        }
        let owner = blocking(&self.pool, move |c| codes::owner(c, &typed)).await?;
        Ok(Some(CodeCheck::of(owner)))
    }

    fn new_page(&self, status: StatusCode, ctx: Value) -> Result<HttpResponse, WebError> {
        self.render(status, NEW_PAGE, "/console/referrals", ctx)
    }
}

#[derive(Debug, Deserialize)]
struct CodeQuery {
    #[serde(default)]
    code: String,
}

/// The new referral form (`?code=` fills in the code, e.g. from an ambassador's page).
async fn new_form(page: StaffPage, q: web::Query<CodeQuery>) -> Result<HttpResponse, WebError> {
    let code = q.into_inner().code;
    let check = page.code_check(code.clone()).await?;
    page.new_page(StatusCode::OK, context! { values => context! { code }, check })
}

/// Whose code it is, for the form's script: `{found, usable, message}`.
async fn check_code(page: StaffPage, q: web::Query<CodeQuery>) -> Result<HttpResponse, WebError> {
    let check = page.code_check(q.into_inner().code).await?;
    Ok(HttpResponse::Ok().insert_header((actix_web::http::header::CACHE_CONTROL, "no-store")).json(check))
}

/// A date typed in the form (`YYYY-MM-DD`), blank for none.
fn optional_day(v: &mut Validation, form: &Form, field: &str) -> Option<NaiveDate> {
    let typed = form.optional(field)?;
    v.check(
        field,
        NaiveDate::parse_from_str(typed.trim(), "%Y-%m-%d").map_err(|_| "must be a date like 2026-12-31".into()),
    )
}

/// A whole number typed in the form, blank for none.
pub(super) fn optional_count(v: &mut Validation, form: &Form, field: &str) -> Option<i32> {
    let typed = form.optional(field)?;
    v.check(field, typed.trim().parse::<i32>().map_err(|_| "must be a whole number between 1 and 100".into()))
}

async fn create(
    page: StaffPage,
    form: Form,
    calendar: web::Data<Calendar>,
    hasher: web::Data<ContactHasher>,
) -> Result<HttpResponse, WebError> {
    page.check(&form)?;
    if form.checked("check_code") {
        // "Check code" without the script: the form again with whose code it is, nothing stored.
        let check = page.code_check(form.text("code")).await?;
        return page.new_page(StatusCode::OK, context! { values => form.values(), check });
    }
    let mut v = Validation::new();
    let planned_sessions = optional_count(&mut v, &form, "planned_sessions");
    let registered_on = optional_day(&mut v, &form, "registered_on");
    let (last, email, phone) = (form.optional("last_name"), form.optional("email"), form.optional("phone"));
    let (external_ref, notes) = (form.optional("external_ref"), form.optional("notes"));
    let new = parse_new_referral(
        &mut v,
        &page.settings,
        &ReferralInput {
            code: &form.text("code"),
            first_name: &form.text("first_name"),
            last_name: last.as_deref(),
            email: email.as_deref(),
            phone: phone.as_deref(),
            external_ref: external_ref.as_deref(),
            planned_sessions,
            share_name_with_ambassador: form.checked("share_name_with_ambassador"),
            notes: notes.as_deref(),
            registered_on,
        },
    );
    let created = match v.finish() {
        Ok(()) => {
            let (cal, actor) = (**calendar, page.console.who.actor());
            blocking(&page.pool, move |c| referrals::create(c, &cal, &new, &hasher, &actor)).await
        }
        Err(e) => Err(e.into()),
    };
    match created {
        Ok((r, _)) => {
            let name = [r.client_first_name.as_deref(), r.client_last_name.as_deref()].into_iter().flatten();
            let message = format!("Referral of {} recorded.", name.collect::<Vec<_>>().join(" "));
            Ok(page.done(&format!("/console/referrals/{}", r.id), &message))
        }
        Err(e) => {
            let r = Refused::of(e)?;
            let check = page.code_check(form.text("code")).await?;
            let ctx = context! {
                errors => r.errors,
                summary => r.summary,
                existing_referral_id => r.existing_referral_id,
                values => form.values(),
                check,
            };
            page.new_page(r.status, ctx)
        }
    }
}
