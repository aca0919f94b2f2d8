//! The audit trail: writing an event inside each state change's transaction (and, with it,
//! queueing the webhook event the change stands for), reading the trail, and naming who did
//! what for people.

use chrono::NaiveDateTime;
use diesel::QueryResult;
use serde::Serialize;

use super::webhooks;
use super::Result;
use crate::db::DbConnection;
use crate::domain::audit::ActorKind;
use crate::domain::webhook::EventType;
pub use crate::store::audit::{Actor, AuditAction, AuditEvent, AuditFilter, Change, EntityType};
use crate::store::{api_keys, team, Page, PageRequest};

/// Writes one audit event and queues the webhook event it stands for, if any: every state
/// change records exactly one audit event after writing, so this is the one place webhook
/// events are queued, in the change's own transaction and with the record as it now is.
pub fn record(conn: &mut DbConnection, actor: &Actor, change: Change<'_>) -> diesel::QueryResult<()> {
    match EventType::of_change(change.action, change.before, change.after) {
        Some(event) => {
            let entity_id = change.entity_id.to_owned();
            let endpoints = crate::store::audit::record_reading_endpoints(conn, actor, change)?;
            webhooks::queue_to(conn, endpoints, event, &entity_id)
        }
        None => crate::store::audit::record(conn, actor, change),
    }
}

/// Writes many audit events at once (a payout batch's rewards), queueing the webhook events
/// they stand for as [`record`] does.
pub fn record_many<'a>(
    conn: &mut DbConnection,
    actor: &'a Actor,
    changes: impl IntoIterator<Item = Change<'a>>,
) -> diesel::QueryResult<()> {
    let mut events = Vec::new();
    let changes = changes.into_iter().inspect(|c| {
        if let Some(event) = EventType::of_change(c.action, c.before, c.after) {
            events.push((event, c.entity_id.to_owned()));
        }
    });
    crate::store::audit::record_many(conn, actor, changes)?;
    for (event, entity_id) in events {
        webhooks::queue(conn, event, &entity_id)?;
    }
    Ok(())
}

/// Audit events matching `filter`, newest first.
pub fn trail(conn: &mut DbConnection, filter: &AuditFilter, page: &PageRequest) -> Result<Page<AuditEvent>> {
    Ok(crate::store::audit::list(conn, filter, page)?)
}

/// One audit event as the console lists it: the actor named.
#[derive(Debug, Clone, Serialize)]
pub struct NamedEvent {
    pub id: String,
    #[serde(serialize_with = "crate::store::utc::ser")]
    pub occurred_at: NaiveDateTime,
    /// Who did it: a member's or key's name and role, or the kind of actor.
    pub actor: String,
    pub actor_id: Option<String>,
    pub action: String,
    pub entity_type: String,
    pub entity_id: String,
    pub before_status: Option<String>,
    pub after_status: Option<String>,
    pub details: Option<String>,
}

/// The names of the members and keys behind a page of events (two lookups by primary key).
pub(crate) struct ActorNames {
    members: Vec<(String, String)>,
    keys: Vec<(String, String)>,
}

impl ActorNames {
    /// The names behind these actors (`(kind, id)` as stored).
    pub fn load<'a>(
        conn: &mut DbConnection,
        actors: impl Iterator<Item = (&'a str, Option<&'a str>)>,
    ) -> QueryResult<Self> {
        let (mut members, mut keys) = (Vec::new(), Vec::new());
        for (kind, id) in actors {
            match (ActorKind::parse(kind), id) {
                (Some(ActorKind::TeamMember), Some(id)) => members.push(id),
                (Some(ActorKind::ApiKey), Some(id)) => keys.push(id),
                _ => {}
            }
        }
        for ids in [&mut members, &mut keys] {
            ids.sort_unstable();
            ids.dedup();
        }
        Ok(Self { members: team::names(conn, &members)?, keys: api_keys::names(conn, &keys)? })
    }

    /// The names behind a page of events.
    pub fn of_events(conn: &mut DbConnection, events: &[AuditEvent]) -> QueryResult<Self> {
        Self::load(conn, events.iter().map(|e| (e.actor_type.as_str(), e.actor_id.as_deref())))
    }

    /// "Name (role)" for a member or key, else who it was in words.
    pub fn label(&self, kind: &str, id: Option<&str>, role: Option<&str>) -> String {
        let role = role.map(|r| format!(" ({r})")).unwrap_or_default();
        let named =
            |names: &[(String, String)]| names.iter().find(|(i, _)| Some(i.as_str()) == id).map(|(_, n)| n.clone());
        match ActorKind::parse(kind) {
            Some(ActorKind::TeamMember) => {
                format!("{}{role}", named(&self.members).unwrap_or_else(|| "A team member".into()))
            }
            Some(ActorKind::ApiKey) => match named(&self.keys) {
                Some(name) => format!("API key “{name}”{role}"),
                None => format!("API key{role}"),
            },
            Some(ActorKind::Ambassador) => "An ambassador".into(),
            Some(ActorKind::Public) => "A visitor (not signed in)".into(),
            Some(ActorKind::System) | None => "System".into(),
        }
    }

    pub fn name(&self, e: AuditEvent) -> NamedEvent {
        NamedEvent {
            actor: self.label(&e.actor_type, e.actor_id.as_deref(), e.actor_role.as_deref()),
            id: e.id,
            occurred_at: e.occurred_at,
            actor_id: e.actor_id,
            action: e.action,
            entity_type: e.entity_type.to_string(),
            entity_id: e.entity_id,
            before_status: e.before_status,
            after_status: e.after_status,
            details: e.details,
        }
    }
}

/// A page of the trail with each actor named.
pub fn named_trail(conn: &mut DbConnection, filter: &AuditFilter, page: &PageRequest) -> Result<Page<NamedEvent>> {
    let events = crate::store::audit::list(conn, filter, page)?;
    let names = ActorNames::of_events(conn, &events.items)?;
    Ok(events.map(|e| names.name(e)))
}
