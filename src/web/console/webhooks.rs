//! Admin → Webhooks: the endpoints (URL, events, enabled or disabled with Vouch's reason,
//! staff system, failure streak); registering one, its signing secret shown once in the
//! answer to the post itself (like an API key's); an endpoint's page with the edit form, a
//! test ping, rotating the secret after a confirmation page (the new one shown once, the old
//! one still signing for the grace period), deleting it after a confirmation page, and its
//! deliveries with every attempt (status, time, code, the start of the response) and a replay
//! button. Each is the use case
//! `/v1/webhooks` runs; a refusal shows the API's message on the form and stores nothing.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use minijinja::{context, Value};
use serde::{Deserialize, Serialize};

use super::home::PageQuery;
use super::{ConsolePage, Refused, PAGE_ROWS};
use crate::app::webhooks::{self, EndpointPatch, EndpointView, NewEndpointInput, Setup};
use crate::app::Error;
use crate::auth::Admin;
use crate::db::blocking;
use crate::domain::webhook::{DeliveryStatus, EventType};
use crate::store::PageRequest;
use crate::web::{resource, Form, WebError};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/console/webhooks").route(web::get().to(list)).route(web::post().to(create)))
        .service(resource("/console/webhooks/{id}").route(web::get().to(endpoint)).route(web::post().to(update)))
        .service(
            resource("/console/webhooks/{id}/rotate-secret")
                .route(web::get().to(confirm_rotate))
                .route(web::post().to(rotate)),
        )
        .service(
            resource("/console/webhooks/{id}/delete")
                .route(web::get().to(confirm_delete))
                .route(web::post().to(delete)),
        )
        .service(resource("/console/webhooks/{id}/ping").route(web::post().to(ping)))
        .service(resource("/console/webhooks/{id}/deliveries/{delivery}/replay").route(web::post().to(replay)));
}

type AdminPage = ConsolePage<Admin>;

const NAV: &str = "/console/webhooks";
const LIST_PAGE: &str = "console/webhooks.html";
const ENDPOINT_PAGE: &str = "console/webhook.html";
const SECRET_PAGE: &str = "console/webhook_secret.html";

/// The form's checkbox for an event (one per event: a form field holds one value).
fn event_field(event: EventType) -> String {
    format!("event.{}", event.as_str())
}

/// The events ticked on the form, by name (unknown ones are the API's to refuse: none here).
fn ticked_events(form: &Form) -> Vec<String> {
    EventType::ALL.iter().filter(|e| form.checked(&event_field(**e))).map(|e| e.as_str().to_owned()).collect()
}

/// Every event, for the form's checkboxes.
fn event_names() -> Vec<&'static str> {
    EventType::ALL.iter().map(|e| e.as_str()).collect()
}

/// The edit form's values for an endpoint as it is.
fn values_of(e: &EndpointView) -> HashMap<String, String> {
    let mut values =
        HashMap::from([("url".to_owned(), e.url.clone()), ("description".to_owned(), e.description.clone())]);
    let yes = |on: bool| on.then(|| "yes".to_owned());
    values.extend(yes(e.enabled).map(|v| ("enabled".to_owned(), v)));
    values.extend(yes(e.staff_system).map(|v| ("staff_system".to_owned(), v)));
    values.extend(e.events.iter().map(|ev| (event_field(*ev), "yes".to_owned())));
    values
}

fn refusal(e: Error, form: &Form) -> Result<(StatusCode, Value), WebError> {
    let r = Refused::of(e)?;
    Ok((r.status, context! { errors => r.errors, summary => r.summary, values => form.values() }))
}

/// An endpoint page's deliveries filter and position; an empty status means every status.
#[derive(Debug, Default, Deserialize, Serialize)]
struct DeliveriesQuery {
    #[serde(default)]
    status: String,
    cursor: Option<String>,
}

impl DeliveriesQuery {
    fn status(&self) -> Result<Option<DeliveryStatus>, Error> {
        match self.status.trim() {
            "" => Ok(None),
            s => DeliveryStatus::parse(s).map(Some).ok_or_else(|| Error::validation("status", "is not a status")),
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

impl AdminPage {
    fn setup(&self) -> Setup {
        Setup::new(&self.settings.webhooks)
    }

    async fn list_page(&self, status: StatusCode, q: &PageQuery, form: Value) -> Result<HttpResponse, WebError> {
        let rows = q.page()?;
        let endpoints = blocking(&self.pool, move |c| webhooks::list(c, &rows)).await?;
        let ctx = context! {
            endpoints => endpoints.items, next_cursor => endpoints.next_cursor, paged => q.cursor.is_some(),
            events => event_names(), ..form
        };
        self.render(status, LIST_PAGE, NAV, ctx)
    }

    /// The endpoint's page; `form` (a refused edit) replaces the edit form's values.
    async fn endpoint_page(
        &self,
        status: StatusCode,
        id: String,
        q: &DeliveriesQuery,
        form: Value,
    ) -> Result<HttpResponse, WebError> {
        let filter = q.status()?;
        let rows = PageRequest::parse(Some(PAGE_ROWS), q.cursor.as_deref())?;
        let (endpoint, deliveries) = blocking(&self.pool, move |c| {
            let endpoint = webhooks::get(c, &id)?;
            Ok::<_, Error>((endpoint.clone(), webhooks::deliveries(c, &endpoint.id, filter, &rows)?))
        })
        .await?;
        let next = deliveries.next_cursor.as_deref().map(|c| q.next(c));
        let statuses: Vec<&str> = DeliveryStatus::ALL.iter().map(|s| s.as_str()).collect();
        // A refused edit shows what was typed; otherwise the endpoint as it is.
        let values = match form.get_attr("values") {
            Ok(typed) if !typed.is_undefined() => typed,
            _ => Value::from_serialize(values_of(&endpoint)),
        };
        let ctx = context! {
            values, endpoint, deliveries => deliveries.items, next, q, statuses, events => event_names(), ..form
        };
        self.render(status, ENDPOINT_PAGE, NAV, ctx)
    }
}

async fn list(page: AdminPage, q: web::Query<PageQuery>) -> Result<HttpResponse, WebError> {
    page.list_page(StatusCode::OK, &q, context! { values => context! { enabled => "yes" } }).await
}

async fn create(page: AdminPage, form: Form) -> Result<HttpResponse, WebError> {
    page.check(&form)?;
    let input = NewEndpointInput::parse(
        &form.text("url"),
        form.optional("description").as_deref(),
        &ticked_events(&form),
        form.checked("enabled"),
        form.checked("staff_system"),
    );
    let created = match input {
        Ok(input) => {
            let (setup, actor) = (page.setup(), page.console.who.actor());
            blocking(&page.pool, move |c| webhooks::create(c, input, &setup, &actor)).await
        }
        Err(e) => Err(e.into()),
    };
    match created {
        // The secret is in this answer only: a redirect would have to carry it somewhere.
        Ok((endpoint, secret)) => {
            page.render(StatusCode::OK, SECRET_PAGE, NAV, context! { endpoint, secret, rotated => false })
        }
        Err(e) => {
            let (status, ctx) = refusal(e, &form)?;
            page.list_page(status, &PageQuery { cursor: None }, ctx).await
        }
    }
}

async fn endpoint(
    page: AdminPage,
    id: web::Path<String>,
    q: web::Query<DeliveriesQuery>,
) -> Result<HttpResponse, WebError> {
    page.endpoint_page(StatusCode::OK, id.into_inner(), &q, context! {}).await
}

async fn update(page: AdminPage, id: web::Path<String>, form: Form) -> Result<HttpResponse, WebError> {
    page.check(&form)?;
    let id = id.into_inner();
    let events = ticked_events(&form);
    let patch = EndpointPatch::parse(
        Some(&form.text("url")),
        Some(&form.text("description")),
        Some(&events),
        Some(form.checked("enabled")),
        Some(form.checked("staff_system")),
    );
    let updated = match patch {
        Ok(patch) => {
            let (setup, actor, target) = (page.setup(), page.console.who.actor(), id.clone());
            blocking(&page.pool, move |c| webhooks::update(c, &target, patch, &setup, &actor)).await
        }
        Err(e) => Err(e.into()),
    };
    match updated {
        Ok(e) => Ok(page.done(&format!("/console/webhooks/{id}"), &format!("Webhook endpoint {} saved.", e.url))),
        Err(e) => {
            let (status, ctx) = refusal(e, &form)?;
            page.endpoint_page(status, id, &DeliveriesQuery::default(), ctx).await
        }
    }
}

async fn confirm_rotate(page: AdminPage, id: web::Path<String>) -> Result<HttpResponse, WebError> {
    let id = id.into_inner();
    let endpoint = blocking(&page.pool, move |c| webhooks::get(c, &id)).await?;
    let grace_hours = page.settings.webhooks.rotation_grace_hours;
    page.render(StatusCode::OK, "console/webhook_rotate.html", NAV, context! { endpoint, grace_hours })
}

async fn rotate(page: AdminPage, id: web::Path<String>, form: Form) -> Result<HttpResponse, WebError> {
    page.check(&form)?;
    let (setup, actor, id) = (page.setup(), page.console.who.actor(), id.into_inner());
    let (endpoint, secret) = blocking(&page.pool, move |c| webhooks::rotate_secret(c, &id, &setup, &actor)).await?;
    page.render(StatusCode::OK, SECRET_PAGE, NAV, context! { endpoint, secret, rotated => true })
}

async fn confirm_delete(page: AdminPage, id: web::Path<String>) -> Result<HttpResponse, WebError> {
    let id = id.into_inner();
    let endpoint = blocking(&page.pool, move |c| webhooks::get(c, &id)).await?;
    page.render(StatusCode::OK, "console/webhook_delete.html", NAV, context! { endpoint })
}

async fn delete(page: AdminPage, id: web::Path<String>, form: Form) -> Result<HttpResponse, WebError> {
    page.check(&form)?;
    let (actor, id) = (page.console.who.actor(), id.into_inner());
    let gone = blocking(&page.pool, move |c| webhooks::delete(c, &id, &actor)).await?;
    let message = format!("Webhook endpoint {} deleted, with its deliveries: nothing more is sent to it.", gone.url);
    Ok(page.done(NAV, &message))
}

async fn ping(page: AdminPage, id: web::Path<String>, form: Form) -> Result<HttpResponse, WebError> {
    page.check(&form)?;
    let (actor, id) = (page.console.who.actor(), id.into_inner());
    let target = id.clone();
    blocking(&page.pool, move |c| webhooks::ping(c, &target, &actor)).await?;
    let message = "A webhook.ping event is on its way; its delivery is listed below within seconds.";
    Ok(page.done(&format!("/console/webhooks/{id}"), message))
}

async fn replay(page: AdminPage, path: web::Path<(String, String)>, form: Form) -> Result<HttpResponse, WebError> {
    page.check(&form)?;
    let (id, delivery) = path.into_inner();
    let (actor, target) = (page.console.who.actor(), id.clone());
    match blocking(&page.pool, move |c| webhooks::replay(c, Some(&target), &delivery, &actor)).await {
        Ok(d) => Ok(page.done(
            &format!("/console/webhooks/{id}"),
            &format!("The {} event is queued again, with the same webhook-id and a fresh set of tries.", d.event_type),
        )),
        Err(e) => {
            let r = Refused::of(e)?;
            page.endpoint_page(r.status, id, &DeliveriesQuery::default(), context! { summary => r.summary }).await
        }
    }
}
