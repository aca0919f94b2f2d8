//! The e-mail outbox: rows written inside the transaction of the change that causes them,
//! each with a dedupe key unique in the table, so nothing is queued (or sent) twice.

use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::email_outbox;
use crate::db::{now, DbConnection};
use crate::store::new_id;

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = email_outbox)]
pub struct OutboxRow {
    pub id: String,
    pub dedupe_key: String,
    pub template: String,
    pub to_address: String,
    pub payload: String,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: chrono::NaiveDateTime,
    pub last_error: Option<String>,
    pub sent_at: Option<chrono::NaiveDateTime>,
    pub created_at: chrono::NaiveDateTime,
}

/// Queues an e-mail unless one with this dedupe key exists; returns whether it queued one.
/// Call it inside the transaction of the change that causes the e-mail.
pub fn enqueue(
    conn: &mut DbConnection,
    dedupe_key: &str,
    template: &str,
    to: &str,
    payload: &serde_json::Value,
) -> QueryResult<bool> {
    let exists: bool =
        diesel::select(diesel::dsl::exists(email_outbox::table.filter(email_outbox::dedupe_key.eq(dedupe_key))))
            .get_result(conn)?;
    if exists {
        return Ok(false);
    }
    let at = now();
    diesel::insert_into(email_outbox::table)
        .values((
            email_outbox::id.eq(new_id()),
            email_outbox::dedupe_key.eq(dedupe_key),
            email_outbox::template.eq(template),
            email_outbox::to_address.eq(to),
            email_outbox::payload.eq(payload.to_string()),
            email_outbox::status.eq("queued"),
            email_outbox::next_attempt_at.eq(at),
            email_outbox::created_at.eq(at),
        ))
        .execute(conn)?;
    Ok(true)
}
