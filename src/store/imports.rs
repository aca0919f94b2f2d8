//! What imports share across instances: the lock that makes the chunks of two imports of the
//! same kind take turns (table `import_locks`). The rows themselves are written by the stores
//! of what is imported (`ambassadors`, `referrals`, `codes`, `rewards`).

use diesel::prelude::*;

use crate::db::schema::import_locks;
use crate::db::DbConnection;

/// Takes the import lock of `kind` for the rest of the current transaction (the caller's chunk
/// transaction; call it first thing in it).
///
/// An import finds a row it wrote before by looking it up, then writes it if it is not there;
/// under PostgreSQL's READ COMMITTED two imports of the same file on two connections can both
/// look before either commits, and both write. Unique indexes stop that only where a rule makes
/// a record unique (an ambassador's e-mail, a live referral's contact key), not for a cancelled
/// referral, a second referral found by client and day, or an opening balance (an adjustment).
/// So the chunk waits here until the other import's chunk has committed, and its lookups then
/// see what that chunk wrote. The upsert always locks the row, and writes it on first use (two
/// first uses at once queue on the primary key).
///
/// SQLite takes nothing here: `db::write_tx` starts every write transaction with `BEGIN
/// IMMEDIATE`, so writers (of any process) already take turns for the whole transaction.
pub fn lock(conn: &mut DbConnection, kind: &str) -> QueryResult<()> {
    match conn {
        DbConnection::Postgres(pg) => {
            diesel::insert_into(import_locks::table)
                .values(import_locks::kind.eq(kind))
                .on_conflict(import_locks::kind)
                .do_update()
                .set(import_locks::kind.eq(kind))
                .execute(pg)?;
            Ok(())
        }
        DbConnection::Sqlite(_) => Ok(()),
    }
}
