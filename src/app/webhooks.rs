//! Webhooks: endpoints admins manage (URL, events, a signing secret shown once and rotatable),
//! the events queued inside the transaction of the change they announce (`queue`, called
//! from `app::audit::record`, the one place every state change passes), and the delivery
//! worker's side (claiming with the endpoint's secrets, recording each attempt, disabling an
//! endpoint after a long failure streak and e-mailing the admins).
//!
//! Discretion: payloads carry no client contact details or names unless an admin marked the
//! endpoint as a staff system; then they follow staff's view of the client, never more.

use std::net::ToSocketAddrs;

use chrono::{NaiveDateTime, TimeDelta};
use serde::Serialize;
use serde_json::{json, Value};

use super::error::{Found, Result};
use super::{notices, Error};
use crate::db::{now, write_tx, DbConnection};
use crate::domain::audit::{AuditAction, EntityType};
use crate::domain::webhook::{
    self, DeliveryStatus, EventSelection, EventType, SigningSecret, WebhookUrl, PAYLOAD_VERSION, PING,
};
use crate::domain::{optional_text, DomainError, Validation};
use crate::email::MailContext;
use crate::store::audit::{self, Actor, Change};
use crate::store::webhooks::{self as store, DeliveryRow, EndpointChanges, EndpointRow, NewDelivery, NewEndpoint};
use crate::store::{ambassadors, new_id, payouts, referrals, rewards, secrets, Page, PageRequest};

/// An endpoint as admins see it (never its secret).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EndpointView {
    pub id: String,
    pub url: String,
    pub description: String,
    /// The events it receives.
    pub events: Vec<EventType>,
    /// Disabled endpoints get no new events; Vouch disables one after a long failure streak.
    pub enabled: bool,
    /// The clinic's own staff system: payloads name clients and their contact details, as
    /// staff see them. Otherwise they carry neither.
    pub staff_system: bool,
    /// Why Vouch disabled it, if it did.
    pub disabled_reason: Option<String>,
    /// Failed attempts in a row (reset by a delivered one).
    pub failure_streak: i32,
    #[serde(serialize_with = "crate::store::utc::ser_opt")]
    pub failing_since: Option<NaiveDateTime>,
    /// Until then deliveries are signed with the previous secret too (after a rotation).
    #[serde(serialize_with = "crate::store::utc::ser_opt")]
    pub previous_secret_valid_until: Option<NaiveDateTime>,
    #[serde(serialize_with = "crate::store::utc::ser")]
    pub created_at: NaiveDateTime,
    #[serde(serialize_with = "crate::store::utc::ser")]
    pub updated_at: NaiveDateTime,
}

impl EndpointView {
    fn new(row: EndpointRow, at: NaiveDateTime) -> Self {
        Self {
            events: EventSelection::from_stored(&row.events).names(),
            previous_secret_valid_until: row.previous_secret_expires_at.filter(|until| *until > at),
            id: row.id,
            url: row.url,
            description: row.description,
            enabled: row.enabled,
            staff_system: row.staff_system,
            disabled_reason: row.disabled_reason,
            failure_streak: row.failure_streak,
            failing_since: row.failing_since,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// One try at a delivery.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AttemptView {
    /// 1 for the first try (counted afresh after a replay).
    pub attempt: i32,
    #[serde(serialize_with = "crate::store::utc::ser")]
    pub attempted_at: NaiveDateTime,
    /// The receiver's HTTP status; null when no response came.
    pub status_code: Option<i32>,
    /// The first 1 KiB of the response body.
    pub response_body: Option<String>,
    /// Why it failed without a usable response (refused address, timeout, redirect, …).
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// An event's delivery to one endpoint, with every attempt.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    pub id: String,
    pub endpoint_id: String,
    /// The `webhook-id` header: the same on every retry and replay.
    pub event_id: String,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub attempts: i32,
    /// When a pending delivery is due (for one being sent: when its claim lapses).
    #[serde(serialize_with = "crate::store::utc::ser")]
    pub next_attempt_at: NaiveDateTime,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    #[serde(serialize_with = "crate::store::utc::ser_opt")]
    pub delivered_at: Option<NaiveDateTime>,
    #[serde(serialize_with = "crate::store::utc::ser")]
    pub created_at: NaiveDateTime,
    /// The body as sent.
    #[schema(value_type = Object)]
    pub payload: Value,
    /// Oldest first.
    pub attempt_log: Vec<AttemptView>,
}

impl DeliveryView {
    fn new(row: DeliveryRow, attempts: Vec<AttemptView>) -> Self {
        Self {
            payload: serde_json::from_str(&row.payload).unwrap_or(Value::Null),
            id: row.id,
            endpoint_id: row.endpoint_id,
            event_id: row.event_id,
            event_type: row.event_type,
            status: row.status,
            attempts: row.attempts,
            next_attempt_at: row.next_attempt_at,
            last_status_code: row.last_status_code,
            last_error: row.last_error,
            delivered_at: row.delivered_at,
            created_at: row.created_at,
            attempt_log: attempts,
        }
    }
}

/// The webhook settings a use case needs (`[webhooks]` in the configuration).
#[derive(Debug, Clone)]
pub struct Setup {
    /// `allow_private_addresses`: loopback, private and link-local destinations too.
    pub allow_private: bool,
    /// `sealing_key`; empty: the instance key kept in the database.
    pub sealing_key: String,
    /// How long a rotated-out secret keeps signing.
    pub rotation_grace: TimeDelta,
}

impl Setup {
    pub fn new(settings: &crate::config::WebhookSettings) -> Self {
        Self {
            allow_private: settings.allow_private_addresses,
            sealing_key: settings.sealing_key.clone(),
            rotation_grace: TimeDelta::hours(i64::from(settings.rotation_grace_hours)),
        }
    }

    /// Refuses a URL whose host is, or resolves to, an address that is not public (unless
    /// allowed). The worker's resolver asks again at every send: DNS can change.
    pub fn check(&self, url: &WebhookUrl) -> Result<()> {
        if self.allow_private {
            return Ok(());
        }
        let refused = |detail: String| Error::Unprocessable { kind: "webhook-url-refused", detail, field: Some("url") };
        let addresses: Vec<std::net::IpAddr> = match url.ip_literal() {
            Some(ip) => vec![ip],
            None => url
                .host_and_port()
                .to_socket_addrs()
                .map_err(|e| refused(format!("The host of this URL does not resolve ({e}).")))?
                .map(|a| a.ip())
                .collect(),
        };
        match addresses.iter().find(|ip| !webhook::is_public(**ip)) {
            Some(ip) => Err(refused(format!(
                "This URL reaches {ip}, a private, loopback or link-local address; webhooks go only to public \
                 addresses unless the setting webhooks.allow_private_addresses is on."
            ))),
            None if addresses.is_empty() => Err(refused("The host of this URL does not resolve.".into())),
            None => Ok(()),
        }
    }
}

/// An endpoint's description is at most this many characters.
pub const DESCRIPTION_MAX: usize = 200;

/// A new endpoint, parsed.
pub struct NewEndpointInput {
    pub url: WebhookUrl,
    pub description: String,
    pub events: EventSelection,
    pub enabled: bool,
    pub staff_system: bool,
}

impl NewEndpointInput {
    /// The rule the API and the console share: every bad field named at once.
    pub fn parse(
        url: &str,
        description: Option<&str>,
        events: &[String],
        enabled: bool,
        staff_system: bool,
    ) -> std::result::Result<Self, DomainError> {
        let mut v = Validation::new();
        let url = v.check("url", WebhookUrl::parse(url));
        let description = v.check("description", optional_text(description, DESCRIPTION_MAX));
        let events = v.check("events", EventSelection::parse(events));
        v.finish()?;
        match (url, description, events) {
            (Some(url), Some(description), Some(events)) => {
                Ok(Self { url, description: description.unwrap_or_default(), events, enabled, staff_system })
            }
            _ => Err(DomainError::Validation(Vec::new())),
        }
    }
}

/// Changes to an endpoint, parsed; `None` keeps a field.
#[derive(Default)]
pub struct EndpointPatch {
    pub url: Option<WebhookUrl>,
    pub description: Option<String>,
    pub events: Option<EventSelection>,
    pub enabled: Option<bool>,
    pub staff_system: Option<bool>,
}

impl EndpointPatch {
    /// The rule the API and the console share; a field given as `None` is kept as it is.
    pub fn parse(
        url: Option<&str>,
        description: Option<&str>,
        events: Option<&[String]>,
        enabled: Option<bool>,
        staff_system: Option<bool>,
    ) -> std::result::Result<Self, DomainError> {
        let mut v = Validation::new();
        let patch = Self {
            url: url.and_then(|u| v.check("url", WebhookUrl::parse(u))),
            description: description
                .and_then(|d| v.check("description", optional_text(Some(d), DESCRIPTION_MAX)))
                .map(Option::unwrap_or_default),
            events: events.and_then(|e| v.check("events", EventSelection::parse(e))),
            enabled,
            staff_system,
        };
        v.finish()?;
        Ok(patch)
    }
}

fn seal(conn: &mut DbConnection, setup: &Setup, endpoint_id: &str, secret: &SigningSecret) -> Result<String> {
    let key = secrets::webhook_sealing_key(conn, &setup.sealing_key)?;
    webhook::seal(&key, endpoint_id, secret).map_err(Error::internal)
}

fn audit_endpoint(
    conn: &mut DbConnection,
    actor: &Actor,
    action: AuditAction,
    id: &str,
    details: Option<Value>,
) -> Result<()> {
    let change = Change { action, entity_type: EntityType::Webhook, entity_id: id, before: None, after: None, details };
    Ok(audit::record(conn, actor, change)?)
}

/// Registers an endpoint; returns it and its signing secret, which is shown this once.
pub fn create(
    conn: &mut DbConnection,
    input: NewEndpointInput,
    setup: &Setup,
    actor: &Actor,
) -> Result<(EndpointView, String)> {
    setup.check(&input.url)?;
    let id = new_id();
    let secret = SigningSecret::generate();
    let sealed = seal(conn, setup, &id, &secret)?;
    let at = now();
    write_tx(conn, |conn| {
        store::insert_endpoint(
            conn,
            &NewEndpoint {
                id: &id,
                url: input.url.as_str(),
                description: &input.description,
                events: &input.events.stored(),
                enabled: input.enabled,
                staff_system: input.staff_system,
                secret_sealed: &sealed,
                created_at: at,
                updated_at: at,
            },
        )?;
        let details =
            json!({ "url": input.url.as_str(), "events": input.events.stored(), "staff_system": input.staff_system });
        audit_endpoint(conn, actor, AuditAction::WebhookCreated, &id, Some(details))?;
        Ok((EndpointView::new(store::find_endpoint(conn, &id)?, at), secret.shown()))
    })
}

pub fn list(conn: &mut DbConnection, page: &PageRequest) -> Result<Page<EndpointView>> {
    let at = now();
    Ok(store::list_endpoints(conn, page)?.map(|r| EndpointView::new(r, at)))
}

pub fn get(conn: &mut DbConnection, id: &str) -> Result<EndpointView> {
    Ok(EndpointView::new(store::find_endpoint(conn, id).or_not_found("webhook endpoint")?, now()))
}

/// Changes an endpoint. Enabling it again clears Vouch's reason and the failure streak;
/// deliveries still pending are sent from then on.
pub fn update(
    conn: &mut DbConnection,
    id: &str,
    patch: EndpointPatch,
    setup: &Setup,
    actor: &Actor,
) -> Result<EndpointView> {
    if let Some(url) = &patch.url {
        setup.check(url)?;
    }
    write_tx(conn, |conn| {
        let before = store::find_endpoint(conn, id).or_not_found("webhook endpoint")?;
        let enabling = patch.enabled == Some(true) && !before.enabled;
        let changes = EndpointChanges {
            url: patch.url.as_ref().map(|u| u.as_str().to_owned()),
            description: patch.description.clone(),
            events: patch.events.as_ref().map(EventSelection::stored),
            enabled: patch.enabled,
            staff_system: patch.staff_system,
            disabled_reason: enabling.then_some(None),
            failure_streak: enabling.then_some(0),
            failing_since: enabling.then_some(None),
        };
        store::update_endpoint(conn, id, &changes)?;
        let details = json!({
            "url": changes.url, "description": changes.description, "events": changes.events,
            "enabled": changes.enabled, "staff_system": changes.staff_system,
        });
        audit_endpoint(conn, actor, AuditAction::WebhookUpdated, id, Some(details))?;
        Ok(EndpointView::new(store::find_endpoint(conn, id)?, now()))
    })
}

/// Deletes an endpoint with its delivery history; nothing more is sent to it.
pub fn delete(conn: &mut DbConnection, id: &str, actor: &Actor) -> Result<EndpointView> {
    write_tx(conn, |conn| {
        let row = store::find_endpoint(conn, id).or_not_found("webhook endpoint")?;
        store::delete_endpoint(conn, id)?;
        audit_endpoint(conn, actor, AuditAction::WebhookDeleted, id, Some(json!({ "url": row.url })))?;
        Ok(EndpointView::new(row, now()))
    })
}

/// A new signing secret, shown this once; the current one keeps signing (both signatures
/// are sent) for the rotation grace period, so receivers can switch without losing an event.
pub fn rotate_secret(
    conn: &mut DbConnection,
    id: &str,
    setup: &Setup,
    actor: &Actor,
) -> Result<(EndpointView, String)> {
    let grace = setup.rotation_grace;
    let secret = SigningSecret::generate();
    let sealed = seal(conn, setup, id, &secret)?;
    write_tx(conn, |conn| {
        let row = store::find_endpoint(conn, id).or_not_found("webhook endpoint")?;
        let until = now() + grace;
        let previous = (grace > TimeDelta::zero()).then_some((row.secret_sealed.as_str(), until));
        store::set_secrets(conn, id, &sealed, previous)?;
        let details = json!({ "previous_valid_until": previous.map(|p| crate::store::utc::format(&p.1)) });
        audit_endpoint(conn, actor, AuditAction::WebhookSecretRotated, id, Some(details))?;
        Ok((EndpointView::new(store::find_endpoint(conn, id)?, now()), secret.shown()))
    })
}

fn delivery_views(conn: &mut DbConnection, rows: Vec<DeliveryRow>) -> Result<Vec<DeliveryView>> {
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let attempts = store::attempts_of(conn, &ids)?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let log = attempts
                .iter()
                .filter(|a| a.delivery_id == row.id)
                .map(|a| AttemptView {
                    attempt: a.attempt,
                    attempted_at: a.attempted_at,
                    status_code: a.status_code,
                    response_body: a.response_body.clone(),
                    error: a.error.clone(),
                    duration_ms: a.duration_ms,
                })
                .collect();
            DeliveryView::new(row, log)
        })
        .collect())
}

/// An endpoint's deliveries, newest first, with their attempts.
pub fn deliveries(
    conn: &mut DbConnection,
    endpoint_id: &str,
    status: Option<DeliveryStatus>,
    page: &PageRequest,
) -> Result<Page<DeliveryView>> {
    store::find_endpoint(conn, endpoint_id).or_not_found("webhook endpoint")?;
    let page = store::list_deliveries(conn, endpoint_id, status, page)?;
    let items = delivery_views(conn, page.items)?;
    Ok(Page { items, next_cursor: page.next_cursor })
}

fn delivery(conn: &mut DbConnection, id: &str) -> Result<DeliveryView> {
    let row = store::find_delivery(conn, id)?;
    Ok(delivery_views(conn, vec![row])?.remove(0))
}

/// Sends a delivered or failed delivery again (same `webhook-id`, a fresh set of tries).
/// With `endpoint`, only a delivery to that endpoint (the console's page of one endpoint).
pub fn replay(conn: &mut DbConnection, endpoint: Option<&str>, id: &str, actor: &Actor) -> Result<DeliveryView> {
    write_tx(conn, |conn| {
        let before = store::find_delivery(conn, id).or_not_found("webhook delivery")?;
        if endpoint.is_some_and(|e| e != before.endpoint_id) {
            return Err(Error::NotFound("webhook delivery"));
        }
        if store::requeue(conn, id)? != 1 {
            return Err(Error::InvalidTransition {
                entity: "webhook delivery",
                current: before.status.as_str().to_owned(),
                event: "replay".into(),
                hint: Some("It is still being delivered.".into()),
            });
        }
        audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::WebhookDeliveryReplayed,
                entity_type: EntityType::WebhookDelivery,
                entity_id: id,
                before: Some(before.status.as_str()),
                after: Some(DeliveryStatus::Pending.as_str()),
                details: Some(json!({ "endpoint_id": before.endpoint_id, "event_type": before.event_type })),
            },
        )?;
        delivery(conn, id)
    })
}

/// Queues a `webhook.ping` event to this endpoint alone (enabled or not: checking a fix
/// before enabling it again is the point).
pub fn ping(conn: &mut DbConnection, id: &str, actor: &Actor) -> Result<DeliveryView> {
    write_tx(conn, |conn| {
        store::find_endpoint(conn, id).or_not_found("webhook endpoint")?;
        let event_id = new_id();
        let body = envelope(PING, &json!({ "endpoint_id": id }));
        let delivery_id = new_id();
        insert_delivery(conn, &delivery_id, id, &event_id, PING, &format!("webhook:{id}"), &body)?;
        audit_endpoint(conn, actor, AuditAction::WebhookPinged, id, None)?;
        delivery(conn, &delivery_id)
    })
}

fn envelope(kind: &str, data: &Value) -> String {
    json!({
        "type": kind,
        "version": PAYLOAD_VERSION,
        "timestamp": crate::store::utc::format(&now()),
        "data": data,
    })
    .to_string()
}

fn insert_delivery(
    conn: &mut DbConnection,
    id: &str,
    endpoint_id: &str,
    event_id: &str,
    kind: &str,
    entity_key: &str,
    payload: &str,
) -> diesel::QueryResult<()> {
    let at = now();
    store::insert_delivery(
        conn,
        &NewDelivery {
            id,
            endpoint_id,
            event_id,
            event_type: kind,
            entity_key,
            payload,
            next_attempt_at: at,
            created_at: at,
        },
    )
}

/// Queues `event` about `entity_id` to every enabled endpoint subscribed to it, inside the
/// caller's transaction (the change's own), with the record as it is now. Called from
/// `app::audit` once the change is written.
pub fn queue(conn: &mut DbConnection, event: EventType, entity_id: &str) -> diesel::QueryResult<()> {
    let endpoints = store::enabled_endpoints(conn)?;
    queue_to(conn, endpoints, event, entity_id)
}

/// [`queue`] with the enabled endpoints already read (in the audit event's own statement:
/// `store::audit::record_reading_endpoints`).
pub fn queue_to(
    conn: &mut DbConnection,
    enabled: Vec<EndpointRow>,
    event: EventType,
    entity_id: &str,
) -> diesel::QueryResult<()> {
    let endpoints: Vec<EndpointRow> =
        enabled.into_iter().filter(|e| EventSelection::from_stored(&e.events).contains(event)).collect();
    if endpoints.is_empty() {
        return Ok(());
    }
    let event_id = new_id();
    let entity_key = entity_key(conn, event, entity_id)?;
    let mut bodies: [Option<String>; 2] = [None, None];
    for endpoint in endpoints {
        let view = usize::from(endpoint.staff_system);
        let body = match &bodies[view] {
            Some(body) => body.clone(),
            None => {
                let body = envelope(event.as_str(), &data(conn, event, entity_id, endpoint.staff_system)?);
                bodies[view] = Some(body.clone());
                body
            }
        };
        insert_delivery(conn, &new_id(), &endpoint.id, &event_id, event.as_str(), &entity_key, &body)?;
    }
    Ok(())
}

/// What a delivery is ordered by: the record the event is about (`referral:<id>`), except
/// that a failed payout line is its batch's event, so `payout.locked`, `payout.line_failed`
/// and `payout.paid` about one batch arrive in the order they happened.
fn entity_key(conn: &mut DbConnection, event: EventType, entity_id: &str) -> diesel::QueryResult<String> {
    Ok(match event.entity() {
        EntityType::PayoutLine => {
            format!("{}:{}", EntityType::Payout.as_str(), payouts::line(conn, entity_id)?.payout_id)
        }
        entity => format!("{}:{entity_id}", entity.as_str()),
    })
}

/// `data` of the `ambassador.*` events.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AmbassadorData {
    pub id: String,
    pub status: crate::domain::ambassador::AmbassadorStatus,
    /// `staff` or `application`.
    pub source: String,
    pub name: String,
    pub display_name: Option<String>,
    /// Reason given for the last status change (a suspension's, for instance).
    pub status_reason: Option<String>,
    /// Staff systems only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Staff systems only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<Option<String>>,
    #[serde(serialize_with = "crate::store::utc::ser")]
    pub created_at: NaiveDateTime,
    #[serde(serialize_with = "crate::store::utc::ser")]
    pub status_changed_at: NaiveDateTime,
}

/// The client as staff see them: only in payloads to an endpoint marked as a staff system.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClientForStaff {
    pub client_first_name: Option<String>,
    pub client_last_name: Option<String>,
    pub client_email: Option<String>,
    pub client_phone: Option<String>,
}

/// `data` of the `referral.*` events: no client names or contact details unless the
/// endpoint is a staff system.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReferralData {
    pub id: String,
    pub ambassador_id: Option<String>,
    /// The code, as issued.
    pub code: Option<String>,
    pub status: crate::domain::referral::ReferralStatus,
    /// `staff` or `public_form`.
    pub source: String,
    /// The clinic's own client id.
    pub external_ref: Option<String>,
    pub planned_sessions: Option<i32>,
    pub session_count: i32,
    #[serde(serialize_with = "crate::store::date::ser_opt")]
    pub first_session_on: Option<chrono::NaiveDate>,
    #[serde(serialize_with = "crate::store::date::ser_opt")]
    pub completed_on: Option<chrono::NaiveDate>,
    pub treatment_value_minor: Option<i64>,
    /// Set at completion: whether it earns a reward.
    pub earns: Option<bool>,
    pub not_earning_reason: Option<String>,
    /// Reason code of a cancel, reject or refund.
    pub reason_code: Option<String>,
    #[serde(serialize_with = "crate::store::utc::ser")]
    pub registered_at: NaiveDateTime,
    #[serde(serialize_with = "crate::store::utc::ser_opt")]
    pub treatment_started_at: Option<NaiveDateTime>,
    #[serde(serialize_with = "crate::store::utc::ser_opt")]
    pub completed_at: Option<NaiveDateTime>,
    #[serde(serialize_with = "crate::store::utc::ser_opt")]
    pub cancelled_at: Option<NaiveDateTime>,
    #[serde(serialize_with = "crate::store::utc::ser_opt")]
    pub rejected_at: Option<NaiveDateTime>,
    #[serde(serialize_with = "crate::store::utc::ser_opt")]
    pub refunded_at: Option<NaiveDateTime>,
    /// Staff systems only.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientForStaff>,
}

/// `data` of `payout.line_failed`: the line as finance sees it, and its batch.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PayoutLineData {
    pub payout_id: String,
    #[serde(flatten)]
    pub line: payouts::LineView,
}

/// `data` of a referral's event: as finance sees it, with the client for a staff system.
fn referral_data(conn: &mut DbConnection, id: &str, staff: bool) -> diesel::QueryResult<ReferralData> {
    let r = referrals::find(conn, id)?.ok_or(diesel::result::Error::NotFound)?;
    let code = referrals::code_of(conn, &r)?;
    Ok(ReferralData {
        client: staff.then(|| ClientForStaff {
            client_first_name: r.client_first_name.clone(),
            client_last_name: r.client_last_name.clone(),
            client_email: r.client_email.clone(),
            client_phone: r.client_phone.clone(),
        }),
        id: r.id,
        ambassador_id: r.ambassador_id,
        code,
        status: r.status,
        source: r.source.as_str().to_owned(),
        external_ref: r.external_ref,
        planned_sessions: r.planned_sessions,
        session_count: r.session_count,
        first_session_on: r.first_session_on,
        completed_on: r.completed_on,
        treatment_value_minor: r.treatment_value_minor,
        earns: r.earns,
        not_earning_reason: r.not_earning_reason,
        reason_code: r.reason_code,
        registered_at: r.registered_at,
        treatment_started_at: r.treatment_started_at,
        completed_at: r.completed_at,
        cancelled_at: r.cancelled_at,
        rejected_at: r.rejected_at,
        refunded_at: r.refunded_at,
    })
}

/// The payload's `data`: the record as finance sees it (no client names or contact), or as
/// staff see it for a staff system.
fn data(conn: &mut DbConnection, event: EventType, id: &str, staff: bool) -> diesel::QueryResult<Value> {
    let value = match event.entity() {
        EntityType::Ambassador => {
            let a = ambassadors::find(conn, id)?;
            serde_json::to_value(AmbassadorData {
                status: a.status(),
                email: staff.then(|| a.email.clone()),
                phone: staff.then(|| a.phone.clone()),
                id: a.id,
                source: a.source,
                name: a.name,
                display_name: a.display_name,
                status_reason: a.status_reason,
                created_at: a.created_at,
                status_changed_at: a.status_changed_at,
            })
        }
        EntityType::Referral => serde_json::to_value(referral_data(conn, id, staff)?),
        EntityType::Reward => serde_json::to_value(rewards::RewardView::new(rewards::find(conn, id)?, now())),
        EntityType::PayoutLine => {
            let line = payouts::line(conn, id)?;
            let names = payouts::ambassador_names(conn, &[line.ambassador_id.as_str()])?;
            let name = names.into_iter().next().map(|n| n.1).unwrap_or_default();
            serde_json::to_value(PayoutLineData {
                payout_id: line.payout_id.clone(),
                line: payouts::LineView::new(line, name),
            })
        }
        _ => serde_json::to_value(payouts::PayoutView::new(payouts::find(conn, id)?, None)),
    };
    value.map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))
}

/// When a client's personal data is erased: deliveries about the referral (to staff systems,
/// the only ones that named the client) no longer hold it, sent or not; unsent ones go out
/// without it.
pub fn forget_client(conn: &mut DbConnection, referral_id: &str) -> diesel::QueryResult<()> {
    let key = format!("{}:{referral_id}", EntityType::Referral.as_str());
    for (id, payload) in store::payloads_about(conn, &key)? {
        let mut body: Value = serde_json::from_str(&payload).unwrap_or(Value::Null);
        let Some(data) = body.get_mut("data").and_then(Value::as_object_mut) else { continue };
        let before = data.len();
        data.retain(|field, _| !field.starts_with("client_"));
        if data.len() != before {
            store::set_payload(conn, &id, &body.to_string())?;
        }
    }
    Ok(())
}

/// A claimed delivery, ready to send: where, what, and the secrets that sign it.
pub struct Prepared {
    pub delivery: DeliveryRow,
    pub url: String,
    pub secrets: Vec<SigningSecret>,
}

/// Claims due deliveries for the worker (see `store::webhooks::claim`).
pub fn claim(conn: &mut DbConnection, setup: &Setup, limit: i64, lease: TimeDelta) -> Result<Vec<Prepared>> {
    let claimed = store::claim(conn, limit, lease)?;
    if claimed.is_empty() {
        return Ok(Vec::new());
    }
    let key = secrets::webhook_sealing_key(conn, &setup.sealing_key)?;
    let at = now();
    let mut out = Vec::new();
    for delivery in claimed {
        let endpoint = store::find_endpoint(conn, &delivery.endpoint_id)?;
        let mut secrets = vec![webhook::open(&key, &endpoint.id, &endpoint.secret_sealed).map_err(Error::internal)?];
        if let (Some(previous), Some(until)) = (&endpoint.previous_secret_sealed, endpoint.previous_secret_expires_at) {
            if until > at {
                secrets.push(webhook::open(&key, &endpoint.id, previous).map_err(Error::internal)?);
            }
        }
        out.push(Prepared { delivery, url: endpoint.url, secrets });
    }
    Ok(out)
}

/// How deliveries are retried and when an endpoint is given up on.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: i32,
    pub base: std::time::Duration,
    pub cap: std::time::Duration,
    /// Consecutive failed attempts that disable an endpoint …
    pub disable_after_failures: i32,
    /// … or failing without a success for this long.
    pub disable_after: TimeDelta,
}

/// What a try got: a response (delivered when 2xx) or none.
pub struct Attempt<'a> {
    pub status_code: Option<u16>,
    pub response_body: Option<&'a str>,
    pub error: Option<&'a str>,
    pub duration_ms: i64,
}

impl Attempt<'_> {
    fn delivered(&self) -> bool {
        self.error.is_none() && self.status_code.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Records a try and what follows: delivered; retried after a jittered backoff; or failed
/// for good once the tries are used up. A failure lengthens the endpoint's streak, and a
/// long streak disables the endpoint and e-mails the admins (one transaction).
pub fn record(
    conn: &mut DbConnection,
    delivery: &DeliveryRow,
    attempt: &Attempt<'_>,
    policy: &RetryPolicy,
    mail: &MailContext,
) -> Result<()> {
    let delivered = attempt.delivered();
    let next = if delivered {
        None
    } else if delivery.attempts >= policy.max_attempts {
        Some(None)
    } else {
        let delay = webhook::retry_delay(policy.base, policy.cap, delivery.attempts, rand::random::<f64>());
        Some(Some(now() + TimeDelta::from_std(delay).unwrap_or(TimeDelta::hours(1))))
    };
    let error = match (attempt.error, attempt.status_code) {
        (Some(e), _) => Some(e.to_owned()),
        (None, Some(code)) if !delivered => Some(format!("the endpoint answered HTTP {code}")),
        _ => None,
    };
    let outcome = store::Outcome {
        status_code: attempt.status_code.map(i32::from),
        response_body: attempt.response_body,
        error: error.as_deref(),
        duration_ms: attempt.duration_ms,
    };
    if !store::record_attempt(conn, delivery, &outcome, next)? {
        tracing::info!(delivery_id = %delivery.id, "claim lapsed and was taken over; outcome not recorded");
        return Ok(());
    }
    if delivered {
        store::endpoint_succeeded(conn, &delivery.endpoint_id)?;
        return Ok(());
    }
    let endpoint = match store::endpoint_failed(conn, &delivery.endpoint_id, now()) {
        Err(diesel::result::Error::NotFound) => return Ok(()), // deleted meanwhile
        other => other?,
    };
    let since = endpoint.failing_since.unwrap_or_else(now);
    if endpoint.enabled
        && (endpoint.failure_streak >= policy.disable_after_failures || now() - since >= policy.disable_after)
    {
        disable(conn, &endpoint, since, mail)?;
    }
    Ok(())
}

fn disable(conn: &mut DbConnection, endpoint: &EndpointRow, since: NaiveDateTime, mail: &MailContext) -> Result<()> {
    let reason =
        format!("{} attempts in a row failed since {}", endpoint.failure_streak, crate::store::utc::format(&since));
    write_tx(conn, |conn| {
        if store::disable_endpoint(conn, &endpoint.id, &reason)? == 0 {
            return Ok(());
        }
        audit::record(
            conn,
            &Actor::system(),
            Change {
                action: AuditAction::WebhookDisabled,
                entity_type: EntityType::Webhook,
                entity_id: &endpoint.id,
                before: Some("enabled"),
                after: Some("disabled"),
                details: Some(json!({ "reason": reason })),
            },
        )?;
        notices::webhook_disabled(conn, mail, &endpoint.id, &endpoint.url, &reason)?;
        tracing::warn!(endpoint_id = %endpoint.id, %reason, "webhook endpoint disabled");
        Ok(())
    })
}
