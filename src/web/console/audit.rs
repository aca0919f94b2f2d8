//! Admin → Audit trail: every recorded change, newest first, filtered by entity type, entity
//! id, actor, action and a date range (days of the clinic's calendar), paginated; each page is
//! one indexed query (`store::audit::list`), and each actor is named (a member's or key's
//! name) where known.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use chrono::NaiveDate;
use minijinja::context;
use serde::{Deserialize, Serialize};

use super::{ConsolePage, PAGE_ROWS};
use crate::app::{api_keys, audit, team, Error};
use crate::auth::Admin;
use crate::db::blocking;
use crate::domain::audit::{AuditAction, EntityType};
use crate::domain::calendar::Calendar;
use crate::domain::Validation;
use crate::store::audit::AuditFilter;
use crate::store::PageRequest;
use crate::web::{resource, WebError};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/console/audit").route(web::get().to(trail)));
}

/// Members listed in the actor filter (a clinic's team is far smaller).
const ACTOR_CHOICES: i64 = 200;

/// The trail's filters as typed; empty fields mean "any".
#[derive(Debug, Default, Deserialize, Serialize)]
struct AuditQuery {
    #[serde(default)]
    entity_type: String,
    #[serde(default)]
    entity_id: String,
    #[serde(default)]
    actor_id: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    cursor: Option<String>,
}

fn day(v: &mut Validation, field: &str, value: &str) -> Option<NaiveDate> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    v.check(field, NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| "must be a date like 2026-12-31".into()))
}

impl AuditQuery {
    /// The filter; `from` and `to` are whole days of the clinic's calendar (both included).
    fn filter(&self, calendar: &Calendar) -> Result<AuditFilter, Error> {
        let mut v = Validation::new();
        let text = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        let entity_type = text(&self.entity_type).and_then(|t| {
            v.check("entity_type", EntityType::parse(&t).ok_or_else(|| "is not a kind of record".into()))
        });
        let action = text(&self.action)
            .and_then(|a| v.check("action", AuditAction::parse(&a).ok_or_else(|| "is not an action".into())));
        let from = day(&mut v, "from", &self.from);
        let to = day(&mut v, "to", &self.to);
        if let (Some(f), Some(t)) = (from, to) {
            if t < f {
                v.push("to", "must not be before the start date");
            }
        }
        v.finish()?;
        Ok(AuditFilter {
            entity_type,
            entity_id: text(&self.entity_id),
            actor_id: text(&self.actor_id),
            action,
            since: from.map(|d| calendar.start_of(d)),
            until: to.and_then(|d| d.succ_opt()).map(|d| calendar.start_of(d)),
        })
    }

    /// The query string of these filters, at `cursor` (or the newest page).
    fn query(&self, cursor: Option<&str>) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("entity_type", &self.entity_type),
            ("entity_id", &self.entity_id),
            ("actor_id", &self.actor_id),
            ("action", &self.action),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if !v.trim().is_empty() {
                q.append_pair(k, v.trim());
            }
        }
        if let Some(cursor) = cursor {
            q.append_pair("cursor", cursor);
        }
        q.finish()
    }

    fn filtered(&self) -> bool {
        [&self.entity_type, &self.entity_id, &self.actor_id, &self.action, &self.from, &self.to]
            .iter()
            .any(|v| !v.trim().is_empty())
    }
}

async fn trail(
    page: ConsolePage<Admin>,
    q: web::Query<AuditQuery>,
    calendar: web::Data<Calendar>,
) -> Result<HttpResponse, WebError> {
    let q = q.into_inner();
    let (filter, errors) = match q.filter(&calendar) {
        Ok(f) => (Some(f), None),
        Err(e) => (None, Some(super::Refused::of(e)?.errors)),
    };
    let rows = PageRequest::parse(Some(PAGE_ROWS), q.cursor.as_deref())?;
    let (events, members, keys) = blocking(&page.pool, move |c| {
        let events = filter.map(|f| audit::named_trail(c, &f, &rows)).transpose()?;
        let members = team::list(c, &PageRequest { limit: ACTOR_CHOICES, after_id: None })?.items;
        Ok::<_, Error>((events, members, api_keys::list(c)?))
    })
    .await?;
    let status = if errors.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let next = events.as_ref().and_then(|e| e.next_cursor.as_deref()).map(|c| q.query(Some(c)));
    let ctx = context! {
        events => events.map(|e| e.items).unwrap_or_default(),
        next,
        newest => q.query(None),
        filtered => q.filtered(),
        q,
        errors,
        members,
        keys,
        entity_types => EntityType::ALL.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
        actions => AuditAction::ALL.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
        time_zone => calendar.name(),
    };
    page.render(status, "console/audit.html", "/console/audit", ctx)
}
