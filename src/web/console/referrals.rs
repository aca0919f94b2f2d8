//! Staff → a referral: the client, their consent, the ambassador and a timeline of sessions
//! and status changes; forms to record a session, complete, and (after a confirmation page
//! with the reason) cancel, reject or refund. Each calls the `app::referrals` use case the API
//! calls; a refusal shows the API's message on the form and stores nothing.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use chrono::NaiveDate;
use minijinja::{context, Value};

use super::referral_list::optional_count;
use super::{ConsolePage, Refused};
use crate::app::audit::AuditEvent;
use crate::app::input::{parse_client_edit, ClientEdit};
use crate::app::referrals::{self, Detail};
use crate::auth::Staff;
use crate::db::{blocking, now};
use crate::domain::calendar::Calendar;
use crate::domain::contact::ContactHasher;
use crate::domain::referral::{close_out_reason, transition, ReferralEvent};
use crate::domain::{optional_text, Validation};
use crate::web::{resource, Form, WebError};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/console/referrals/{id}").route(web::get().to(show)))
        .service(resource("/console/referrals/{id}/sessions").route(web::post().to(record_session)))
        .service(resource("/console/referrals/{id}/complete").route(web::post().to(complete)))
        .service(resource("/console/referrals/{id}/client").route(web::post().to(edit_client)));
    for (path, event) in [
        ("/console/referrals/{id}/cancel", ReferralEvent::Cancel),
        ("/console/referrals/{id}/reject", ReferralEvent::Reject),
        ("/console/referrals/{id}/refund", ReferralEvent::Refund),
    ] {
        cfg.service(
            resource(path)
                .app_data(web::Data::new(event))
                .route(web::get().to(confirm_close_out))
                .route(web::post().to(close_out)),
        );
    }
}

type StaffPage = ConsolePage<Staff>;

const REFERRAL_PAGE: &str = "console/referral.html";
const CLOSE_OUT_PAGE: &str = "console/close_out.html";

/// What a close-out is called on its button and in its flash message.
fn verb(event: ReferralEvent) -> (&'static str, &'static str) {
    match event {
        ReferralEvent::Cancel => ("cancel", "cancelled"),
        ReferralEvent::Reject => ("reject", "rejected"),
        _ => ("refund", "refunded"),
    }
}

/// A date typed in a form (`YYYY-MM-DD`; empty: today in the clinic's calendar).
fn day(form: &Form, field: &str, today: NaiveDate) -> crate::app::Result<NaiveDate> {
    match form.optional(field) {
        None => Ok(today),
        Some(s) => NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
            .map_err(|_| crate::app::Error::validation(field, "must be a date like 2026-12-31")),
    }
}

impl StaffPage {
    fn calendar(&self) -> Calendar {
        ***self.req.app_data::<web::Data<Calendar>>().expect("calendar registered")
    }

    fn today(&self) -> NaiveDate {
        self.calendar().date_of(now())
    }

    fn href(id: &str) -> String {
        format!("/console/referrals/{id}")
    }

    /// The referral as the page shows it: client, consent, ambassador, what may be done next
    /// and the timeline (oldest first).
    async fn load(&self, id: String) -> Result<Value, WebError> {
        let cal = self.calendar();
        let (detail, amb) = blocking(&self.pool, move |c| {
            let detail = referrals::detail(c, &id)?;
            let amb = referrals::ambassador_of(c, &detail.referral)?;
            Ok::<_, crate::app::Error>((detail, amb))
        })
        .await?;
        let Detail { referral: r, code, sessions, history } = detail;
        let can = |e| transition(r.status(), e).is_ok();
        let timeline: Vec<Value> = history.into_iter().rev().map(timeline_entry).collect();
        Ok(context! {
            referral => context! {
                id => r.id,
                status => r.status.as_str(),
                source => r.source.as_str(),
                first_name => r.client_first_name,
                last_name => r.client_last_name,
                email => r.client_email,
                phone => r.client_phone,
                notes => r.notes,
                external_ref => r.external_ref,
                share_name_with_ambassador => r.share_name_with_ambassador,
                planned_sessions => r.planned_sessions,
                session_count => r.session_count,
                registered_on => r.registered_on(&cal).to_string(),
                completed_on => r.completed_on.map(|d| d.to_string()),
                treatment_value_minor => r.treatment_value_minor,
                earns => r.earns,
                not_earning_reason => r.not_earning_reason,
                reason_code => r.reason_code,
                reason_note => r.reason_note,
                submitted_code => r.submitted_code,
                erased => r.erased_at.is_some(),
                code,
            },
            ambassador => amb.map(|a| context! { id => a.id, name => a.name, email => a.email, status => a.status.as_str() }),
            can => context! {
                session => can(ReferralEvent::RecordSession),
                complete => can(ReferralEvent::Complete),
                cancel => can(ReferralEvent::Cancel),
                reject => can(ReferralEvent::Reject),
                refund => can(ReferralEvent::Refund),
            },
            sessions,
            timeline,
            today => self.today().to_string(),
        })
    }

    /// The referral's page (`form`: which form was refused, what was typed and why).
    async fn referral_page(&self, status: StatusCode, id: String, form: Value) -> Result<HttpResponse, WebError> {
        let ctx = self.load(id).await?;
        self.render(status, REFERRAL_PAGE, "", context! { ..form, ..ctx })
    }

    /// A refused form on the referral's page (or the close-out step): the page again with
    /// the API's message, nothing stored.
    async fn refused(
        &self,
        e: crate::app::Error,
        template: &str,
        which: &str,
        id: String,
        form: &Form,
        extra: Value,
    ) -> Result<HttpResponse, WebError> {
        let r = Refused::of(e)?;
        let ctx = self.load(id).await?;
        let refusal = context! {
            refused => which,
            errors => r.errors,
            summary => r.summary,
            existing_referral_id => r.existing_referral_id,
            values => form.values(),
        };
        self.render(r.status, template, "", context! { ..refusal, ..extra, ..ctx })
    }
}

async fn show(page: StaffPage, id: web::Path<String>) -> Result<HttpResponse, WebError> {
    page.referral_page(StatusCode::OK, id.into_inner(), context! {}).await
}

async fn record_session(page: StaffPage, id: web::Path<String>, form: Form) -> Result<HttpResponse, WebError> {
    page.check(&form)?;
    let id = id.into_inner();
    let parsed = day(&form, "session_on", page.today()).and_then(|d| {
        let note = optional_text(form.optional("note").as_deref(), 2000)
            .map_err(|m| crate::app::Error::validation("note", m))?;
        Ok((d, note))
    });
    let recorded = match parsed {
        Ok((session_on, note)) => {
            let (cal, actor, target) = (page.calendar(), page.console.who.actor(), id.clone());
            blocking(&page.pool, move |c| {
                referrals::record_session(c, &cal, &target, session_on, note.as_deref(), &actor)
            })
            .await
        }
        Err(e) => Err(e),
    };
    match recorded {
        Ok(s) => Ok(page.done(&StaffPage::href(&id), &format!("Session on {} recorded.", s.session_on))),
        Err(e) => page.refused(e, REFERRAL_PAGE, "session", id, &form, context! {}).await,
    }
}

async fn complete(page: StaffPage, id: web::Path<String>, form: Form) -> Result<HttpResponse, WebError> {
    page.check(&form)?;
    let id = id.into_inner();
    let value = match form.optional("treatment_value_minor") {
        None => Ok(None),
        Some(v) => {
            v.trim().parse::<i64>().ok().filter(|v| (0..=1_000_000_000_000).contains(v)).map(Some).ok_or_else(|| {
                crate::app::Error::validation("treatment_value_minor", "must be a whole number of minor units (cents)")
            })
        }
    };
    let parsed = day(&form, "completed_on", page.today()).and_then(|d| Ok((d, value?)));
    let completed = match parsed {
        Ok((completed_on, value)) => {
            let (cal, actor, target) = (page.calendar(), page.console.who.actor(), id.clone());
            blocking(&page.pool, move |c| referrals::complete(c, &cal, &target, completed_on, value, &actor)).await
        }
        Err(e) => Err(e),
    };
    match completed {
        Ok((r, _)) => {
            let message = match r.earns {
                Some(false) => "Treatment completed. It earns no reward: it was outside the attribution window.",
                _ => "Treatment completed. The ambassador's reward is recorded.",
            };
            Ok(page.done(&StaffPage::href(&id), message))
        }
        Err(e) => page.refused(e, REFERRAL_PAGE, "complete", id, &form, context! {}).await,
    }
}

fn close_out_ctx(event: ReferralEvent) -> Value {
    let (verb, done) = verb(event);
    context! { verb, done, reasons => event.reason_codes() }
}

async fn confirm_close_out(
    page: StaffPage,
    id: web::Path<String>,
    event: web::Data<ReferralEvent>,
) -> Result<HttpResponse, WebError> {
    let ctx = page.load(id.into_inner()).await?;
    page.render(StatusCode::OK, CLOSE_OUT_PAGE, "", context! { ..close_out_ctx(**event), ..ctx })
}

async fn close_out(
    page: StaffPage,
    id: web::Path<String>,
    event: web::Data<ReferralEvent>,
    form: Form,
) -> Result<HttpResponse, WebError> {
    page.check(&form)?;
    let (event, id) = (**event, id.into_inner());
    let reason_code = form.text("reason_code");
    let closed = match close_out_reason(event, &reason_code, form.optional("note").as_deref()) {
        Ok(note) => {
            let (actor, target) = (page.console.who.actor(), id.clone());
            blocking(&page.pool, move |c| {
                referrals::close_out(c, &target, event, &reason_code, note.as_deref(), &actor)
            })
            .await
        }
        Err(e) => Err(e.into()),
    };
    match closed {
        Ok(_) => Ok(page.done(&StaffPage::href(&id), &format!("Referral {}.", verb(event).1))),
        Err(e) => page.refused(e, CLOSE_OUT_PAGE, "close_out", id, &form, close_out_ctx(event)).await,
    }
}

/// The edit form sends every field: a blank one clears it (the first name is required; at
/// least an e-mail or a phone stays), an unticked box withdraws the consent.
async fn edit_client(
    page: StaffPage,
    id: web::Path<String>,
    form: Form,
    hasher: web::Data<ContactHasher>,
) -> Result<HttpResponse, WebError> {
    page.check(&form)?;
    let id = id.into_inner();
    let mut v = Validation::new();
    let planned_sessions = optional_count(&mut v, &form, "planned_sessions");
    let first_name = form.text("first_name");
    let typed: Vec<Option<String>> =
        ["last_name", "email", "phone", "external_ref", "notes"].iter().map(|f| form.optional(f)).collect();
    let changes = parse_client_edit(
        &mut v,
        &page.settings,
        &ClientEdit {
            first_name: Some(&first_name),
            last_name: Some(typed[0].as_deref()),
            email: Some(typed[1].as_deref()),
            phone: Some(typed[2].as_deref()),
            external_ref: Some(typed[3].as_deref()),
            planned_sessions: Some(planned_sessions),
            share_name_with_ambassador: Some(form.checked("share_name_with_ambassador")),
            notes: Some(typed[4].as_deref()),
        },
    );
    let edited = match v.finish() {
        Ok(()) => {
            let (actor, target) = (page.console.who.actor(), id.clone());
            blocking(&page.pool, move |c| referrals::update_client(c, &target, &changes, &hasher, &actor)).await
        }
        Err(e) => Err(e.into()),
    };
    match edited {
        Ok(_) => Ok(page.done(&StaffPage::href(&id), "Client data saved.")),
        Err(e) => page.refused(e, REFERRAL_PAGE, "client", id, &form, context! {}).await,
    }
}

/// One event of a referral's history as its page shows it.
fn timeline_entry(e: AuditEvent) -> Value {
    let details: serde_json::Value =
        e.details.as_deref().and_then(|d| serde_json::from_str(d).ok()).unwrap_or_default();
    context! {
        at => e.occurred_at.format("%Y-%m-%d %H:%M").to_string(),
        datetime => e.occurred_at.and_utc().to_rfc3339(),
        action => e.action,
        before => e.before_status,
        after => e.after_status,
        session_on => details.get("session_on").and_then(|d| d.as_str().map(str::to_owned)),
        reason_code => details.get("reason_code").and_then(|d| d.as_str().map(str::to_owned)),
    }
}
