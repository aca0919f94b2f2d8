//! Admin → Import: a CSV file of ambassadors or referrals (the columns of the README's Import
//! section), checked first by a dry run whose row-by-row report shows what would be created,
//! updated, left unchanged or refused (line, field, why), then imported for real with one
//! press. The file travels back with that press in a hidden field (nothing is kept on the
//! server between the two posts), and the real run checks every row again. The use case
//! `/v1/imports/…` and `vouch import` run; uploads here are capped at
//! [`MAX_UPLOAD_BYTES`](crate::web::multipart::MAX_UPLOAD_BYTES) (the API and the command line
//! stream files of any size).

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use minijinja::{context, Value};
use serde::Serialize;

use super::{ConsolePage, Refused};
use crate::app::imports::{self, Kind, Options, RowReport, Totals};
use crate::auth::Admin;
use crate::db::blocking;
use crate::domain::calendar::Calendar;
use crate::domain::contact::ContactHasher;
use crate::email::MailContext;
use crate::web::multipart::{Multipart, MAX_UPLOAD_BYTES};
use crate::web::{resource, WebError};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/console/import").route(web::get().to(show)).route(web::post().to(run)));
}

type AdminPage = ConsolePage<Admin>;

const NAV: &str = "/console/import";
const TEMPLATE: &str = "console/import.html";
/// Rows of a report shown besides the refused ones (which are always all shown).
const SHOWN_ROWS: usize = 500;

/// What the report table shows.
#[derive(Serialize)]
struct Report {
    kind: Kind,
    dry_run: bool,
    totals: Totals,
    rows: Vec<RowReport>,
    /// Rows left out of the table (neither refused nor among the first shown).
    hidden: usize,
}

fn kinds() -> Vec<(&'static str, &'static str)> {
    vec![("ambassadors", "Ambassadors"), ("referrals", "Referrals")]
}

impl AdminPage {
    fn page(&self, status: StatusCode, ctx: Value) -> Result<HttpResponse, WebError> {
        let max_mib = MAX_UPLOAD_BYTES / (1024 * 1024);
        self.render(status, TEMPLATE, NAV, context! { kinds => kinds(), max_mib, ..ctx })
    }
}

async fn show(page: AdminPage) -> Result<HttpResponse, WebError> {
    page.page(StatusCode::OK, context! { values => context! { kind => "ambassadors" } })
}

/// The file's header is the file field's problem: every one of them, in one message.
fn header_is_the_file(e: crate::app::Error) -> crate::app::Error {
    match e {
        crate::app::Error::Validation(errors) if errors.iter().all(|f| f.field == "header") => {
            let all: Vec<String> = errors.into_iter().map(|f| f.message).collect();
            crate::app::Error::validation("file", format!("The header row: {}", all.join("; ")))
        }
        other => other,
    }
}

/// The upload (`mode=check`: a dry run) or the confirmation (`mode=import`: the real run, the
/// file in the hidden `csv` field).
async fn run(page: AdminPage, upload: Multipart) -> Result<HttpResponse, WebError> {
    page.check(&upload.form)?;
    let form = &upload.form;
    let values = context! {
        kind => form.text("kind"),
        send_welcome => form.checked("send_welcome"),
    };
    let refuse = |field: &str, message: &str| {
        let errors = std::collections::HashMap::from([(field.to_owned(), message.to_owned())]);
        page.page(StatusCode::UNPROCESSABLE_ENTITY, context! { errors, values => values.clone() })
    };
    let kind = match form.text("kind").as_str() {
        "ambassadors" => Kind::Ambassadors,
        "referrals" => Kind::Referrals,
        _ => return refuse("kind", "Choose what the file holds: ambassadors or referrals."),
    };
    let dry_run = form.text("mode") != "import";
    let csv = match upload.files.get("file").filter(|f| !f.is_empty()) {
        Some(file) => file.clone(),
        None => form.text("csv").into_bytes(),
    };
    if csv.is_empty() {
        return refuse("file", "Choose a CSV file.");
    }
    let opts = Options { dry_run, send_welcome: kind == Kind::Ambassadors && form.checked("send_welcome") };
    let req = &page.req;
    let calendar = ***req.app_data::<web::Data<Calendar>>().expect("calendar registered");
    let hasher = req.app_data::<web::Data<ContactHasher>>().expect("hasher registered").clone().into_inner();
    let (settings, actor) = (page.settings.clone().into_inner(), page.console.who.actor());
    let mail = MailContext::new(&settings);
    let text = String::from_utf8(csv).ok();
    let Some(text) = text else { return refuse("file", "The file is not UTF-8 text: save it as “CSV UTF-8”.") };
    let body = text.clone();
    let ran = blocking(&page.pool, move |c| {
        let ctx =
            imports::Context { settings: &settings, calendar: &calendar, mail: &mail, hasher: &hasher, actor: &actor };
        let (mut rows, mut hidden) = (Vec::new(), 0);
        let totals = imports::run(c, kind, body.as_bytes(), opts, &ctx, &mut |r| {
            if r.errors.is_empty() && rows.len() >= SHOWN_ROWS {
                hidden += 1;
            } else {
                rows.push(r.clone());
            }
        })?;
        Ok::<_, crate::app::Error>(Report { kind, dry_run, totals, rows, hidden })
    })
    .await;
    match ran {
        Ok(report) => {
            // After a dry run, the same file goes back with the "Import" button.
            let csv = report.dry_run.then_some(text);
            page.page(StatusCode::OK, context! { report, csv, values })
        }
        Err(e) => {
            let r = Refused::of(header_is_the_file(e))?;
            page.page(r.status, context! { errors => r.errors, summary => r.summary, values })
        }
    }
}
