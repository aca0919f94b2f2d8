//! `/console`: every member's home — what waits for a decision, and the latest activity the
//! member's role may see.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use minijinja::context;
use serde::Deserialize;

use super::{render, AnyMember, Console, PAGE_ROWS};
use crate::app::team;
use crate::config::Settings;
use crate::db::{blocking, DbPool};
use crate::store::PageRequest;
use crate::web::{resource, CsrfKey, WebError};

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

async fn home(
    req: HttpRequest,
    console: Console<AnyMember>,
    pool: web::Data<DbPool>,
    settings: web::Data<Settings>,
    key: web::Data<CsrfKey>,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, WebError> {
    let page = q.page()?;
    let who = console.who.clone();
    let home = blocking(&pool, move |c| team::home(c, &who, &page)).await?;
    let ctx = context! { home, paged => q.cursor.is_some() };
    render(&req, &key, &settings, &console, (StatusCode::OK, "console/home.html", "/console"), ctx)
}
