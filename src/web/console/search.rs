//! `/console/search?q=`: the search box (staff and admins, in the console's header) finds
//! clients by name, e-mail, phone digits or the clinic's id and ambassadors by name, e-mail or
//! code, each group newest first with a note when there are more (see `store::search` for how
//! every match is an index range).

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use minijinja::context;
use serde::Deserialize;

use super::{ConsolePage, Refused};
use crate::app::search::{self, PER_GROUP};
use crate::auth::Staff;
use crate::db::blocking;
use crate::domain::calendar::Calendar;
use crate::domain::search::SearchQuery;
use crate::web::{resource, WebError};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/console/search").route(web::get().to(search)));
}

#[derive(Debug, Deserialize)]
struct Query {
    #[serde(default)]
    q: String,
}

async fn search(
    page: ConsolePage<Staff>,
    q: web::Query<Query>,
    calendar: web::Data<Calendar>,
) -> Result<HttpResponse, WebError> {
    let typed = q.into_inner().q;
    if typed.trim().is_empty() {
        return page.render(StatusCode::OK, "console/search.html", "", context! { q => typed });
    }
    let parsed = SearchQuery::parse(&typed).map_err(|m| crate::app::Error::validation("q", m));
    let found = match parsed {
        Ok(query) => blocking(&page.pool, move |c| search::find(c, &query)).await,
        Err(e) => Err(e),
    };
    let results = match found {
        Ok(r) => r,
        Err(e) => {
            let r = Refused::of(e)?;
            return page.render(r.status, "console/search.html", "", context! { q => typed, errors => r.errors });
        }
    };
    let clients: Vec<_> = results
        .clients
        .items
        .into_iter()
        .map(|r| {
            context! {
                id => r.id,
                first_name => r.client_first_name,
                last_name => r.client_last_name,
                email => r.client_email,
                phone => r.client_phone,
                external_ref => r.external_ref,
                status => r.status.as_str(),
                registered_on => r.registered_on(&calendar).to_string(),
            }
        })
        .collect();
    let ambassadors: Vec<_> = results
        .ambassadors
        .items
        .into_iter()
        .map(|a| context! { id => a.id, name => a.name, email => a.email, status => a.status.as_str() })
        .collect();
    let ctx = context! {
        q => typed,
        searched => true,
        clients,
        more_clients => results.clients.more,
        ambassadors,
        more_ambassadors => results.ambassadors.more,
        per_group => PER_GROUP,
    };
    page.render(StatusCode::OK, "console/search.html", "", ctx)
}
