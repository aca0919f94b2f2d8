//! Admin → E-mail outbox: how many e-mails wait, are being sent, went out or failed; the list
//! filtered by status (newest first, paginated) with what the API's outbox view shows (never a
//! payload: a sign-in link in one would sign its reader in); retrying a failed e-mail after a
//! confirmation page — the use case `POST /v1/emails/{id}/retry` runs.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use minijinja::{context, Value};
use serde::{Deserialize, Serialize};

use super::{ConsolePage, Refused, PAGE_ROWS};
use crate::app::outbox;
use crate::auth::Admin;
use crate::db::blocking;
use crate::domain::notice::EmailStatus;
use crate::store::PageRequest;
use crate::web::{resource, Form, WebError};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/console/outbox").route(web::get().to(list))).service(
        resource("/console/outbox/{id}/retry").route(web::get().to(confirm_retry)).route(web::post().to(retry)),
    );
}

type AdminPage = ConsolePage<Admin>;

const NAV: &str = "/console/outbox";

/// The list's filter and position; an empty status means every status.
#[derive(Debug, Default, Deserialize, Serialize)]
struct OutboxQuery {
    #[serde(default)]
    status: String,
    cursor: Option<String>,
}

impl OutboxQuery {
    fn status(&self) -> Result<Option<EmailStatus>, crate::app::Error> {
        match self.status.trim() {
            "" => Ok(None),
            s => EmailStatus::parse(s)
                .map(Some)
                .ok_or_else(|| crate::app::Error::validation("status", "is not a status")),
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

async fn list(page: AdminPage, q: web::Query<OutboxQuery>) -> Result<HttpResponse, WebError> {
    let q = q.into_inner();
    let status = q.status()?;
    let rows = PageRequest::parse(Some(PAGE_ROWS), q.cursor.as_deref())?;
    let (emails, counts) = blocking(&page.pool, move |c| {
        Ok::<_, crate::app::Error>((outbox::list(c, status, &rows)?, outbox::counts_by_status(c)?))
    })
    .await?;
    // Every status, in the order an e-mail goes through them, with zero for the empty ones.
    let counts: Vec<Value> = EmailStatus::ALL
        .iter()
        .map(|s| {
            let n = counts.iter().find(|(k, _)| k == s.as_str()).map_or(0, |(_, n)| *n);
            context! { status => s.as_str(), count => n }
        })
        .collect();
    let next = emails.next_cursor.as_deref().map(|c| q.next(c));
    let ctx = context! { emails => emails.items, counts, next, q };
    page.render(StatusCode::OK, "console/outbox.html", NAV, ctx)
}

impl AdminPage {
    async fn retry_page(&self, status: StatusCode, id: String, form: Value) -> Result<HttpResponse, WebError> {
        let email = blocking(&self.pool, move |c| outbox::get(c, &id)).await?;
        self.render(status, "console/outbox_retry.html", NAV, context! { email, ..form })
    }
}

async fn confirm_retry(page: AdminPage, id: web::Path<String>) -> Result<HttpResponse, WebError> {
    page.retry_page(StatusCode::OK, id.into_inner(), context! {}).await
}

async fn retry(page: AdminPage, id: web::Path<String>, form: Form) -> Result<HttpResponse, WebError> {
    page.check(&form)?;
    let (actor, id) = (page.console.who.actor(), id.into_inner());
    let target = id.clone();
    match blocking(&page.pool, move |c| outbox::retry(c, &target, &actor)).await {
        Ok(e) => Ok(page.done(
            "/console/outbox?status=failed",
            &format!("The {} e-mail to {} is queued again with a fresh set of tries.", e.template, e.to_address),
        )),
        Err(e) => {
            let r = Refused::of(e)?;
            page.retry_page(r.status, id, context! { summary => r.summary }).await
        }
    }
}
