//! `/console`: every member's home — what waits for a decision, and the latest activity the
//! member's role may see.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use minijinja::context;
use serde::Deserialize;

use super::{AnyMember, ConsolePage, PAGE_ROWS};
use crate::app::team;
use crate::db::blocking;
use crate::domain::calendar::Calendar;
use crate::store::PageRequest;
use crate::web::{resource, WebError};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/console").route(web::get().to(home)));
}

/// A list page's position (`cursor` from the pagination links).
#[derive(Debug, Deserialize)]
pub(crate) struct PageQuery {
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn page(&self) -> Result<PageRequest, WebError> {
        Ok(PageRequest::parse(Some(PAGE_ROWS), self.cursor.as_deref())?)
    }
}

async fn home(page: ConsolePage<AnyMember>, q: web::Query<PageQuery>) -> Result<HttpResponse, WebError> {
    let rows = q.page()?;
    let who = page.console.who.clone();
    let calendar = page.req.app_data::<web::Data<Calendar>>().expect("calendar registered");
    let days = i64::from(page.settings.console.stale_after_days);
    let stale_since = calendar.date_of(crate::db::now()) - chrono::TimeDelta::days(days);
    let home = blocking(&page.pool, move |c| team::home(c, &who, &rows, stale_since)).await?;
    let ctx = context! { home, paged => q.cursor.is_some(), stale_after_days => days };
    page.render(StatusCode::OK, "console/home.html", "/console", ctx)
}
