//! Finance → Payouts: the batches, a preview of the next one (who is paid, who is skipped and
//! why; nothing written), creating it, a batch's page with its lines, its files (the generic
//! report; the PayPal upload file, a form post because getting it locks the batch), and the
//! steps after a confirmation page: lock, mark paid with a reference, cancel (a reason once
//! locked), fail a line with a reason. Each is the use case `/v1/payouts` runs; a refusal shows
//! the API's message on the form and changes nothing.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use minijinja::{context, Value};

use super::home::PageQuery;
use super::{ConsolePage, Refused};
use crate::app::input::one_line_text;
use crate::app::payouts::{self, LockedBy};
use crate::app::{payout_files, Error};
use crate::auth::Finance;
use crate::db::blocking;
use crate::domain::calendar::Calendar;
use crate::domain::Validation;
use crate::http::csv_export;
use crate::store::payouts::PayoutView;
use crate::web::{resource, Form, WebError};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/console/payouts").route(web::get().to(list)).route(web::post().to(create)))
        .service(resource("/console/payouts/preview").route(web::get().to(preview)))
        .service(resource("/console/payouts/{id}").route(web::get().to(batch)))
        .service(resource("/console/payouts/{id}/export.csv").route(web::get().to(generic_file)))
        .service(resource("/console/payouts/{id}/paypal").route(web::post().to(paypal_file)))
        .service(
            resource("/console/payouts/{id}/lines/{line}/fail")
                .route(web::get().to(confirm_fail))
                .route(web::post().to(fail)),
        )
        .service(resource("/console/payouts/{id}/{step}").route(web::get().to(confirm)).route(web::post().to(step)));
}

type FinancePage = ConsolePage<Finance>;

const NAV: &str = "/console/payouts";
const BATCH_PAGE: &str = "console/payout.html";
const CONFIRM_PAGE: &str = "console/payout_confirm.html";

/// A step on a batch that needs a confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Lock,
    MarkPaid,
    Cancel,
}

impl Step {
    fn parse(s: &str) -> Result<Self, WebError> {
        match s {
            "lock" => Ok(Self::Lock),
            "mark-paid" => Ok(Self::MarkPaid),
            "cancel" => Ok(Self::Cancel),
            _ => Err(Error::NotFound("page").into()),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Lock => "lock",
            Self::MarkPaid => "mark-paid",
            Self::Cancel => "cancel",
        }
    }
}

/// A required single line of the form (a payment reference, a reason), as the API reads it.
fn one_line(form: &Form, field: &'static str, max: usize) -> Result<String, Error> {
    let mut v = Validation::new();
    let text = one_line_text(&mut v, field, &form.text(field), max);
    v.finish()?;
    text.ok_or_else(|| Error::validation(field, "is required"))
}

impl FinancePage {
    async fn load(&self, id: String) -> Result<PayoutView, WebError> {
        Ok(blocking(&self.pool, move |c| payouts::detail(c, &id)).await?)
    }

    async fn preview_page(&self, status: StatusCode, form: Value) -> Result<HttpResponse, WebError> {
        let preview = blocking(&self.pool, payouts::preview).await?;
        self.render(status, "console/payout_preview.html", NAV, context! { preview, ..form })
    }

    async fn batch_page(&self, status: StatusCode, id: String, form: Value) -> Result<HttpResponse, WebError> {
        let batch = blocking(&self.pool, move |c| payouts::detail_named(c, &id)).await?;
        self.render(status, BATCH_PAGE, NAV, context! { batch, ..form })
    }

    /// The confirmation page of `step` (or of failing line `line`).
    async fn confirm_page(
        &self,
        status: StatusCode,
        id: String,
        (step, line): (&str, Option<String>),
        form: Value,
    ) -> Result<HttpResponse, WebError> {
        let batch = self.load(id).await?;
        let line = match line {
            Some(l) => {
                Some(batch.lines.iter().flatten().find(|x| x.id == l).cloned().ok_or(Error::NotFound("payout line"))?)
            }
            None => None,
        };
        self.render(status, CONFIRM_PAGE, NAV, context! { batch, line, step, ..form })
    }
}

async fn list(page: FinancePage, q: web::Query<PageQuery>) -> Result<HttpResponse, WebError> {
    let rows = q.page()?;
    let batches = blocking(&page.pool, move |c| payouts::list(c, None, &rows)).await?;
    let batches = batches.map(|p| PayoutView::new(p, None));
    let ctx = context! { batches => batches.items, next_cursor => batches.next_cursor, paged => q.cursor.is_some() };
    page.render(StatusCode::OK, "console/payouts.html", NAV, ctx)
}

async fn preview(page: FinancePage) -> Result<HttpResponse, WebError> {
    page.preview_page(StatusCode::OK, context! {}).await
}

async fn create(page: FinancePage, form: Form) -> Result<HttpResponse, WebError> {
    page.check(&form)?;
    let actor = page.console.who.actor();
    match blocking(&page.pool, move |c| payouts::create(c, None, &actor)).await {
        Ok(id) => {
            Ok(page.done(&format!("/console/payouts/{id}"), "Draft batch created. Check it, then lock it for payment."))
        }
        Err(e) => {
            let (status, ctx) = Refused::form(e, &form)?;
            page.preview_page(status, ctx).await
        }
    }
}

async fn batch(page: FinancePage, id: web::Path<String>) -> Result<HttpResponse, WebError> {
    page.batch_page(StatusCode::OK, id.into_inner(), context! {}).await
}

/// The generic report: reading it changes nothing, so a link fetches it.
async fn generic_file(page: FinancePage, id: web::Path<String>) -> Result<HttpResponse, WebError> {
    let id = id.into_inner();
    let file = blocking(&page.pool, move |c| payout_files::generic(c, &id)).await?;
    Ok(csv_export::payout_file(&page.pool, file)?)
}

/// PayPal's upload file (`part`, from 1): it locks the batch, so it is a form post with its
/// CSRF token; a refusal shows the batch page with why.
async fn paypal_file(page: FinancePage, id: web::Path<String>, form: Form) -> Result<HttpResponse, WebError> {
    page.check(&form)?;
    let id = id.into_inner();
    let part = form.optional("part").map_or(Ok(1), |p| p.trim().parse::<i64>());
    let got = match part {
        Ok(part) => {
            let (actor, per_file, id) =
                (page.console.who.actor(), page.settings.export.paypal_rows_per_file, id.clone());
            blocking(&page.pool, move |c| payout_files::paypal(c, &id, (part, per_file), &actor)).await
        }
        Err(_) => Err(Error::validation("part", "must be a whole number")),
    };
    match got {
        Ok(file) => Ok(csv_export::payout_file(&page.pool, file)?),
        Err(e) => {
            let (status, ctx) = Refused::form(e, &form)?;
            page.batch_page(status, id, ctx).await
        }
    }
}

async fn confirm(page: FinancePage, path: web::Path<(String, String)>) -> Result<HttpResponse, WebError> {
    let (id, step) = path.into_inner();
    let step = Step::parse(&step)?;
    page.confirm_page(StatusCode::OK, id, (step.as_str(), None), context! {}).await
}

async fn step(
    page: FinancePage,
    path: web::Path<(String, String)>,
    form: Form,
    calendar: web::Data<Calendar>,
) -> Result<HttpResponse, WebError> {
    let (id, step) = path.into_inner();
    let step = Step::parse(&step)?;
    page.check(&form)?;
    let (actor, target, cal) = (page.console.who.actor(), id.clone(), **calendar);
    let done = match step {
        Step::Lock => blocking(&page.pool, move |c| payouts::lock(c, &target, LockedBy::Approval, &actor))
            .await
            .map(|()| "Batch locked for payment: its lines are what gets paid. Pay them, then mark the batch paid."),
        Step::MarkPaid => match one_line(&form, "reference", 200) {
            Ok(reference) => blocking(&page.pool, move |c| payouts::mark_paid(c, &cal, &target, &reference, &actor))
                .await
                .map(|()| "Batch marked paid. Each ambassador gets an e-mail."),
            Err(e) => Err(e),
        },
        Step::Cancel => match form.optional("reason").map(|_| one_line(&form, "reason", 500)).transpose() {
            Ok(reason) => blocking(&page.pool, move |c| payouts::cancel(c, &target, reason.as_deref(), &actor))
                .await
                .map(|()| "Batch cancelled. Its rewards are payable again."),
            Err(e) => Err(e),
        },
    };
    match done {
        Ok(message) => Ok(page.done(&format!("/console/payouts/{id}"), message)),
        Err(e) => {
            let (status, ctx) = Refused::form(e, &form)?;
            page.confirm_page(status, id, (step.as_str(), None), ctx).await
        }
    }
}

async fn confirm_fail(page: FinancePage, path: web::Path<(String, String)>) -> Result<HttpResponse, WebError> {
    let (id, line) = path.into_inner();
    page.confirm_page(StatusCode::OK, id, ("fail", Some(line)), context! {}).await
}

async fn fail(page: FinancePage, path: web::Path<(String, String)>, form: Form) -> Result<HttpResponse, WebError> {
    page.check(&form)?;
    let (id, line) = path.into_inner();
    let done = match one_line(&form, "reason", 500) {
        Ok(reason) => {
            let (actor, target, line) = (page.console.who.actor(), id.clone(), line.clone());
            blocking(&page.pool, move |c| payouts::fail_line(c, &target, &line, &reason, &actor)).await
        }
        Err(e) => Err(e),
    };
    match done {
        Ok(()) => {
            Ok(page.done(&format!("/console/payouts/{id}"), "Line marked failed. Its rewards are payable again."))
        }
        Err(e) => {
            let (status, ctx) = Refused::form(e, &form)?;
            page.confirm_page(status, id, ("fail", Some(line)), ctx).await
        }
    }
}
