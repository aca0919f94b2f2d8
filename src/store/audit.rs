//! The audit trail: who changed what, from which status to which, in which request.

use chrono::NaiveDateTime;
use diesel::dsl;
use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::audit_events;
use crate::db::{now, DbConnection, WriteThenRead};
pub use crate::domain::audit::{ActorKind, AuditAction, EntityType};
use crate::store::webhooks::EndpointRow;
use crate::store::{first_id_at, new_id, Page, PageRequest, UNNEST_ROWS};

/// Who is acting, as recorded in audit events.
#[derive(Debug, Clone)]
pub struct Actor {
    pub kind: ActorKind,
    pub id: Option<String>,
    pub role: Option<String>,
    pub request_id: Option<String>,
}

impl Actor {
    pub fn system() -> Self {
        Self { kind: ActorKind::System, id: None, role: None, request_id: None }
    }

    /// `api_key:<id>`, `ambassador:<id>`, `public`, `system`: who made a ledger row.
    pub fn label(&self) -> String {
        match &self.id {
            Some(id) => format!("{}:{id}", self.kind.as_str()),
            None => self.kind.as_str().to_owned(),
        }
    }

    pub fn public(request_id: Option<String>) -> Self {
        Self { kind: ActorKind::Public, id: None, role: None, request_id }
    }
}

/// One audit row to write; `record` fills in time, actor and id.
pub struct Change<'a> {
    pub action: AuditAction,
    /// What the event is about.
    pub entity_type: EntityType,
    pub entity_id: &'a str,
    pub before: Option<&'a str>,
    pub after: Option<&'a str>,
    pub details: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = audit_events)]
pub struct AuditEvent {
    pub id: String,
    #[serde(serialize_with = "crate::store::utc::ser")]
    #[diesel(deserialize_as = crate::db::time::Stamp)]
    pub occurred_at: chrono::NaiveDateTime,
    pub actor_type: String,
    pub actor_id: Option<String>,
    pub actor_role: Option<String>,
    pub action: String,
    pub entity_type: EntityType,
    pub entity_id: String,
    pub before_status: Option<String>,
    pub after_status: Option<String>,
    pub request_id: Option<String>,
    /// JSON text with the reason or changed fields, when there are any.
    pub details: Option<String>,
}

/// One `audit_events` row, ready to insert.
type Row<'a> = (
    dsl::Eq<audit_events::id, String>,
    dsl::Eq<audit_events::occurred_at, NaiveDateTime>,
    dsl::Eq<audit_events::actor_type, ActorKind>,
    dsl::Eq<audit_events::actor_id, Option<&'a str>>,
    dsl::Eq<audit_events::actor_role, Option<&'a str>>,
    dsl::Eq<audit_events::action, AuditAction>,
    dsl::Eq<audit_events::entity_type, EntityType>,
    dsl::Eq<audit_events::entity_id, &'a str>,
    dsl::Eq<audit_events::before_status, Option<&'a str>>,
    dsl::Eq<audit_events::after_status, Option<&'a str>>,
    dsl::Eq<audit_events::request_id, Option<&'a str>>,
    dsl::Eq<audit_events::details, Option<String>>,
);

fn row<'a>(actor: &'a Actor, change: Change<'a>, at: NaiveDateTime) -> Row<'a> {
    (
        audit_events::id.eq(new_id()),
        audit_events::occurred_at.eq(at),
        audit_events::actor_type.eq(actor.kind),
        audit_events::actor_id.eq(actor.id.as_deref()),
        audit_events::actor_role.eq(actor.role.as_deref()),
        audit_events::action.eq(change.action),
        audit_events::entity_type.eq(change.entity_type),
        audit_events::entity_id.eq(change.entity_id),
        audit_events::before_status.eq(change.before),
        audit_events::after_status.eq(change.after),
        audit_events::request_id.eq(actor.request_id.as_deref()),
        audit_events::details.eq(change.details.map(|d| d.to_string())),
    )
}

/// Writes one audit event; call it inside the state change's transaction.
pub fn record(conn: &mut DbConnection, actor: &Actor, change: Change<'_>) -> QueryResult<()> {
    diesel::insert_into(audit_events::table).values(row(actor, change, now())).execute(conn)?;
    Ok(())
}

/// Writes one audit event, as [`record`] does, and reads the enabled webhook endpoints (the
/// change stands for a webhook event, which goes to those subscribed): on PostgreSQL in one
/// statement, one round trip instead of two for most state changes.
pub fn record_reading_endpoints(
    conn: &mut DbConnection,
    actor: &Actor,
    change: Change<'_>,
) -> QueryResult<Vec<EndpointRow>> {
    let insert = diesel::insert_into(audit_events::table).values(row(actor, change, now()));
    match conn {
        DbConnection::Postgres(pg) => {
            WriteThenRead { write: insert, read: crate::store::webhooks::enabled_endpoints_query!() }.load(pg)
        }
        DbConnection::Sqlite(_) => {
            insert.execute(conn)?;
            crate::store::webhooks::enabled_endpoints(conn)
        }
    }
}

/// Audit rows per INSERT statement on SQLite: at 12 values a row, under its 32,766 bind
/// parameters.
const ROWS_PER_INSERT: usize = 1_000;

/// Writes one audit event per change, as [`record`] does, in a few statements: a batch step
/// that moves 100,000 rewards writes their 100,000 events in 20 `INSERT … SELECT … FROM
/// unnest(…)` on PostgreSQL (an array per column that varies, [`UNNEST_ROWS`] rows each), in
/// 100 multi-row INSERTs on SQLite (in process, no round trip to save).
pub fn record_many<'a>(
    conn: &mut DbConnection,
    actor: &'a Actor,
    changes: impl IntoIterator<Item = Change<'a>>,
) -> QueryResult<()> {
    let at = now();
    let mut changes = changes.into_iter().peekable();
    while changes.peek().is_some() {
        match conn {
            DbConnection::Postgres(pg) => insert_many_pg(pg, actor, changes.by_ref().take(UNNEST_ROWS), at)?,
            DbConnection::Sqlite(lite) => {
                let chunk: Vec<Row<'a>> = changes.by_ref().take(ROWS_PER_INSERT).map(|c| row(actor, c, at)).collect();
                diesel::insert_into(audit_events::table).values(chunk).execute(lite)?;
            }
        };
    }
    Ok(())
}

/// The actor and time are the same for every event: bound once, not once a row.
const INSERT_MANY_PG: &str = "INSERT INTO audit_events (id, action, entity_type, entity_id, before_status, \
     after_status, details, occurred_at, actor_type, actor_id, actor_role, request_id) \
     SELECT u.*, $8, $9, $10, $11, $12 \
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) AS u";

fn insert_many_pg<'a>(
    pg: &mut diesel::PgConnection,
    actor: &'a Actor,
    changes: impl IntoIterator<Item = Change<'a>>,
    at: NaiveDateTime,
) -> QueryResult<()> {
    use diesel::sql_types::{Array, Nullable, Text, Timestamp};
    let mut c = EventColumns::default();
    for change in changes {
        c.id.push(new_id());
        c.action.push(change.action.as_str());
        c.entity_type.push(change.entity_type.as_str());
        c.entity_id.push(change.entity_id);
        c.before.push(change.before);
        c.after.push(change.after);
        c.details.push(change.details.map(|d| d.to_string()));
    }
    diesel::sql_query(INSERT_MANY_PG)
        .bind::<Array<Text>, _>(c.id)
        .bind::<Array<Text>, _>(c.action)
        .bind::<Array<Text>, _>(c.entity_type)
        .bind::<Array<Text>, _>(c.entity_id)
        .bind::<Array<Nullable<Text>>, _>(c.before)
        .bind::<Array<Nullable<Text>>, _>(c.after)
        .bind::<Array<Nullable<Text>>, _>(c.details)
        .bind::<Timestamp, _>(at)
        .bind::<Text, _>(actor.kind.as_str())
        .bind::<Nullable<Text>, _>(actor.id.as_deref())
        .bind::<Nullable<Text>, _>(actor.role.as_deref())
        .bind::<Nullable<Text>, _>(actor.request_id.as_deref())
        .execute(pg)?;
    Ok(())
}

/// The values that differ between the events [`insert_many_pg`] writes, a column each.
#[derive(Default)]
struct EventColumns<'a> {
    id: Vec<String>,
    action: Vec<&'static str>,
    entity_type: Vec<&'static str>,
    entity_id: Vec<&'a str>,
    before: Vec<Option<&'a str>>,
    after: Vec<Option<&'a str>>,
    details: Vec<Option<String>>,
}

/// Which events a reader may see: `None` every event; else those about these entity types,
/// and those about `own_entity` (the reader's own sign-ins and role changes).
pub struct Visible<'a> {
    pub entity_types: Option<&'a [EntityType]>,
    pub own_entity: &'a str,
}

/// A page of the events `visible` lets a reader see, newest first.
///
/// Each visible record type, and the reader's own record, is one range of an index ending in
/// `id` (`(entity_type, id)`, `(entity_id, id)`), read backwards from the cursor for at most a
/// page; the page is the newest of those few short lists. One `OR` of them would make both
/// databases gather every matching event (hundreds of thousands) and sort them to find the
/// newest page: 0.4 s for a staff member's home page at 200,000 referrals.
pub fn recent_visible(
    conn: &mut DbConnection,
    visible: &Visible<'_>,
    page: &PageRequest,
) -> QueryResult<Page<AuditEvent>> {
    let newest = |conn: &mut DbConnection, filter: Option<RangeFilter>| -> QueryResult<Vec<AuditEvent>> {
        let mut query = audit_events::table.select(AuditEvent::as_select()).into_boxed();
        query = match filter {
            // The type as a range `t ..= t`, ordered by the whole index: with `= t` PostgreSQL
            // knows the first column is fixed and may walk the primary key backwards instead,
            // through every newer event of other types (the 100,000 reward events of a large
            // payout batch: 77 ms, where the index range takes 0.1 ms).
            Some(RangeFilter::Type(t)) => query
                .filter(audit_events::entity_type.ge(t))
                .filter(audit_events::entity_type.le(t))
                .order((audit_events::entity_type.desc(), audit_events::id.desc())),
            Some(RangeFilter::Entity(id)) => {
                query.filter(audit_events::entity_id.eq(id.to_owned())).order(audit_events::id.desc())
            }
            None => query.order(audit_events::id.desc()),
        };
        if let Some(after) = &page.after_id {
            query = query.filter(audit_events::id.lt(after.clone()));
        }
        query.limit(page.limit + 1).load(conn)
    };
    let rows = match visible.entity_types {
        None => newest(conn, None)?,
        Some(types) => {
            let mut rows = newest(conn, Some(RangeFilter::Entity(visible.own_entity)))?;
            for t in types {
                rows.extend(newest(conn, Some(RangeFilter::Type(*t)))?);
            }
            rows.sort_unstable_by(|a, b| b.id.cmp(&a.id));
            rows.dedup_by(|a, b| a.id == b.id);
            rows.truncate(usize::try_from(page.limit + 1).unwrap_or(usize::MAX));
            rows
        }
    };
    Ok(page.finish(rows, |r| &r.id))
}

/// One index range of [`recent_visible`].
enum RangeFilter<'a> {
    Type(EntityType),
    Entity(&'a str),
}

/// What the audit trail is filtered by; `None`: any.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub entity_type: Option<EntityType>,
    pub entity_id: Option<String>,
    /// The member, key or ambassador who acted.
    pub actor_id: Option<String>,
    pub action: Option<AuditAction>,
    /// Events at or after this moment.
    pub since: Option<chrono::NaiveDateTime>,
    /// Events before this moment.
    pub until: Option<chrono::NaiveDateTime>,
}

impl AuditFilter {
    pub fn entity(id: &str) -> Self {
        Self { entity_id: Some(id.to_owned()), ..Self::default() }
    }
}

/// A page of events matching `filter`, newest first, in one statement. Each of entity,
/// actor, action and entity type has an index ending in `id`, and the time range is a range
/// of ids (ids are UUID v7, made with the event: [`first_id_at`]), so whichever index the
/// planner picks, the page is a range of it read backwards, never a sort of the table.
pub fn list(conn: &mut DbConnection, filter: &AuditFilter, page: &PageRequest) -> QueryResult<Page<AuditEvent>> {
    let mut query = audit_events::table.select(AuditEvent::as_select()).into_boxed();
    if let Some(t) = filter.entity_type {
        query = query.filter(audit_events::entity_type.eq(t));
    }
    if let Some(id) = &filter.entity_id {
        query = query.filter(audit_events::entity_id.eq(id.clone()));
    }
    if let Some(id) = &filter.actor_id {
        query = query.filter(audit_events::actor_id.eq(id.clone()));
    }
    if let Some(a) = filter.action {
        query = query.filter(audit_events::action.eq(a));
    }
    if let Some(since) = filter.since {
        query = query.filter(audit_events::id.ge(first_id_at(since)));
    }
    if let Some(until) = filter.until {
        query = query.filter(audit_events::id.lt(first_id_at(until)));
    }
    if let Some(after) = &page.after_id {
        query = query.filter(audit_events::id.lt(after.clone()));
    }
    let rows = query.order(audit_events::id.desc()).limit(page.limit + 1).load(conn)?;
    Ok(page.finish(rows, |r| &r.id))
}
