//! Database access: one diesel `MultiConnection` over SQLite and PostgreSQL, the r2d2 pool,
//! embedded per-backend migrations, and the write-transaction helper every state change uses.

pub mod claim;
pub mod schema;
mod text;
pub mod time;
mod writer;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::prelude::*;
use diesel::r2d2::{self, ManageConnection, Pool, PooledConnection, R2D2Connection};
use diesel::{PgConnection, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use writer::SqliteWriter;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

/// How long a SQLite writer waits for the file (other processes) or for this process's
/// earlier writers before giving up with 503 `service-unavailable`.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long after a connection was found broken the pool checks every connection it hands
/// out (a database restart or failover kills all of them at once, not one).
const SUSPECT_FOR: Duration = Duration::from_secs(30);

/// The connection pool. Connections are not tested on every checkout (that would cost a
/// round trip per request); instead a connection that comes back broken — a failed
/// connection, an open transaction after a panic — is thrown away, and for a while after
/// that every idle connection is pinged before use, so the first request after a database
/// restart may get a 503 but the next ones get fresh connections.
#[derive(Clone)]
pub struct DbPool {
    inner: Pool<ConnectionManager>,
    /// One permit per connection: [`blocking`] work queues here, first come first served,
    /// before it takes a thread and a connection (see [`blocking`]).
    turns: Arc<tokio::sync::Semaphore>,
    health: Arc<Health>,
    url: DatabaseUrl,
    writer: SqliteWriter,
    /// Whether [`read`] may run on the calling thread (`database.inline_reads`).
    inline_reads: bool,
}

/// When a pooled connection was last thrown away as broken (ms since the epoch; 0: never).
#[derive(Debug, Default)]
struct Health {
    last_broken_ms: AtomicU64,
}

fn epoch_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Health {
    fn saw_broken(&self) {
        self.last_broken_ms.store(epoch_ms(), Ordering::Relaxed);
    }

    fn suspect(&self) -> bool {
        let last = self.last_broken_ms.load(Ordering::Relaxed);
        last != 0 && epoch_ms().saturating_sub(last) < SUSPECT_FOR.as_millis() as u64
    }
}

impl DbPool {
    /// A connection; while connections are suspect, one that answers a ping. A dead one is
    /// dropped (it reports itself broken, so the pool discards it) and the next is tried.
    pub fn get(&self) -> Result<PooledConnection<ConnectionManager>, r2d2::PoolError> {
        let mut conn = self.inner.get()?;
        let mut tries = self.inner.max_size();
        while self.health.suspect() && tries > 0 && conn.ping().is_err() {
            tries -= 1;
            drop(conn);
            conn = self.inner.get()?;
        }
        Ok(conn)
    }

    /// Lets [`read`] run short reads on the calling thread when a connection is free at once.
    pub fn with_inline_reads(self, inline_reads: bool) -> Self {
        Self { inline_reads, ..self }
    }

    pub fn state(&self) -> r2d2::State {
        self.inner.state()
    }

    /// A second pool of at most `max_size` connections to the same database, for background
    /// work (the mail worker, housekeeping) that must never wait for — or take — a connection
    /// the requests need. It shares this pool's broken-connection watch and, on SQLite, its
    /// writer queue (one writer at a time across both). Its connections are made when first
    /// needed, not at start-up.
    pub fn sibling(&self, max_size: u32) -> Result<DbPool, String> {
        let manager =
            ConnectionManager { url: self.url.clone(), health: self.health.clone(), writer: self.writer.clone() };
        let inner = Pool::builder()
            .max_size(max_size)
            .min_idle(Some(0))
            .connection_timeout(self.inner.connection_timeout())
            .test_on_check_out(false)
            .build(manager)
            .map_err(|e| format!("connecting to {}: {e}", self.url.redacted()))?;
        Ok(DbPool { turns: turns_for(&inner), inner, ..self.clone() })
    }
}

/// The queue in front of a pool: a permit for each of its connections.
fn turns_for(pool: &Pool<ConnectionManager>) -> Arc<tokio::sync::Semaphore> {
    Arc::new(tokio::sync::Semaphore::new(pool.max_size() as usize))
}

/// Where the data lives, parsed from `database.url` once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Postgres(String),
    /// A file path (created with its parent folder on first start).
    Sqlite(PathBuf),
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<Self, String> {
        let url = url.trim();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres(url.to_owned()))
        } else if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() || path == ":memory:" {
                return Err("sqlite URL needs a file path (an in-memory database is not shared by a pool)".into());
            }
            Ok(Self::Sqlite(PathBuf::from(path)))
        } else {
            Err(format!("unsupported database URL {url:?}: use sqlite://PATH or postgres://…"))
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::Sqlite(_) => "sqlite",
        }
    }

    /// Whether the database is on this machine: SQLite always; PostgreSQL at `localhost`, a
    /// loopback address or a Unix socket (no host, or a host that is a path).
    pub fn is_on_this_machine(&self) -> bool {
        let Self::Postgres(url) = self else { return true };
        let rest = url.split_once("://").map_or("", |(_, rest)| rest);
        let (authority, query) = match rest.split_once('?') {
            Some((before, query)) => (before.split('/').next().unwrap_or(""), query),
            None => (rest.split('/').next().unwrap_or(""), ""),
        };
        let from_query = query.split('&').find_map(|p| p.strip_prefix("host="));
        let host = from_query.unwrap_or_else(|| {
            let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            match host_port.strip_prefix('[') {
                Some(v6) => v6.split(']').next().unwrap_or(""),
                None => host_port.split(':').next().unwrap_or(""),
            }
        });
        host.is_empty()
            || host.starts_with('/')
            || host.starts_with("%2F")
            || host.starts_with("%2f")
            || host.eq_ignore_ascii_case("localhost")
            || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// The URL with any password replaced, for logs.
    pub fn redacted(&self) -> String {
        match self {
            Self::Sqlite(p) => format!("sqlite://{}", p.display()),
            Self::Postgres(u) => match (u.find("://"), u.rfind('@')) {
                (Some(s), Some(at)) if at > s => {
                    let creds = &u[s + 3..at];
                    match creds.split_once(':') {
                        Some((user, _)) => format!("{}{}:***{}", &u[..s + 3], user, &u[at..]),
                        None => u.clone(),
                    }
                }
                _ => u.clone(),
            },
        }
    }
}

/// r2d2 manager that picks the backend from the URL (so connection errors are the real ones)
/// and applies SQLite's per-connection settings.
pub struct ConnectionManager {
    url: DatabaseUrl,
    health: Arc<Health>,
    /// The writer queue every SQLite connection of this pool carries (see `writer`).
    writer: SqliteWriter,
}

impl ManageConnection for ConnectionManager {
    type Connection = DbConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConnection, r2d2::Error> {
        match &self.url {
            DatabaseUrl::Postgres(url) => {
                PgConnection::establish(url).map(DbConnection::Postgres).map_err(r2d2::Error::ConnectionError)
            }
            DatabaseUrl::Sqlite(path) => {
                configure_sqlite();
                let mut conn =
                    SqliteConnection::establish(&path.to_string_lossy()).map_err(r2d2::Error::ConnectionError)?;
                conn.batch_execute(&format!(
                    "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                    SQLITE_BUSY_TIMEOUT.as_millis()
                ))
                .map_err(r2d2::Error::QueryError)?;
                conn.set_instrumentation(self.writer.clone());
                Ok(DbConnection::Sqlite(conn))
            }
        }
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), r2d2::Error> {
        conn.batch_execute("SELECT 1").map_err(r2d2::Error::QueryError)
    }

    /// Broken: the connection failed (PostgreSQL: the server closed it, so libpq's
    /// transaction status is unknown and diesel's transaction manager is in error), or it
    /// comes back inside a transaction (a panic unwound through `write_tx`; the thread is
    /// panicking). Such a connection is closed, which rolls back whatever it held, and
    /// replaced — never handed to the next request.
    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        let broken = std::thread::panicking() || conn.is_broken();
        if broken {
            self.health.saw_broken();
        }
        broken
    }
}

/// SQLite's process-wide settings, applied once before this process opens its first SQLite
/// connection: multi-thread mode, because a diesel connection is only ever used by one thread
/// at a time (it is `Send`, not `Sync`) and SQLite's per-connection mutexes then only cost a
/// lock and unlock around every call; and no memory statistics, which take a process-wide
/// mutex on every allocation SQLite makes (PROFILE.md part 10: ~8 % of the server's CPU
/// reading `/v1/me/referrals`). If SQLite was already initialised, it keeps its defaults.
fn configure_sqlite() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use libsqlite3_sys::{sqlite3_config, SQLITE_CONFIG_MEMSTATUS, SQLITE_CONFIG_MULTITHREAD, SQLITE_OK};
        // SAFETY: sqlite3_config may be called before SQLite is initialised, which the Once
        // makes this the first thing to do (SQLite answers SQLITE_MISUSE, changing nothing,
        // if some other code got there first); both options take the arguments given.
        let (threads, memstatus) = unsafe {
            (sqlite3_config(SQLITE_CONFIG_MULTITHREAD), sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0 as std::ffi::c_int))
        };
        if threads != SQLITE_OK || memstatus != SQLITE_OK {
            tracing::debug!(threads, memstatus, "SQLite was initialised before its settings could be applied");
        }
        // SAFETY: `stable_plans` has the signature SQLite calls an automatic extension with.
        if unsafe { libsqlite3_sys::sqlite3_auto_extension(Some(stable_plans)) } != SQLITE_OK {
            tracing::warn!("SQLite refused the per-connection plan setting; statements may be planned again per call");
        }
    });
}

/// Run by SQLite on every connection it opens (registered as an automatic extension): turns on
/// the query planner stability guarantee, so a prepared statement's plan never depends on the
/// values bound to it. Without it, SQLite marks a statement whose `LIMIT` is a bound parameter
/// (every diesel `.limit(n)` and `.first()`) as tied to that value, and binding it again —
/// every call — makes SQLite parse and plan the statement anew before running it: 13 % of the
/// server's CPU reading `/v1/me/referrals` (PROFILE.md part 13). The plans themselves do not
/// change: this database has no `sqlite_stat4` samples for bound values to steer, and no
/// `LIKE` it runs could use an index.
unsafe extern "C" fn stable_plans(
    db: *mut libsqlite3_sys::sqlite3,
    _error: *mut *mut std::ffi::c_char,
    _api: *const libsqlite3_sys::sqlite3_api_routines,
) -> std::ffi::c_int {
    use libsqlite3_sys::{sqlite3_db_config, SQLITE_DBCONFIG_ENABLE_QPSG, SQLITE_OK};
    // SAFETY: SQLite hands over the connection it is opening; ENABLE_QPSG takes an int (1: on)
    // and a pointer for the new setting, which may be null.
    unsafe {
        sqlite3_db_config(
            db,
            SQLITE_DBCONFIG_ENABLE_QPSG,
            1 as std::ffi::c_int,
            std::ptr::null_mut::<std::ffi::c_int>(),
        )
    };
    SQLITE_OK
}

/// Builds the pool of at most `max_size` connections, `min_idle` of them made before this
/// returns and kept while idle (the rest are made as requests need them: a start-up does not
/// wait for eight connections, nor an idle server keep them); creates the SQLite file's folder
/// first.
pub fn build_pool(url: &DatabaseUrl, max_size: u32, min_idle: u32, timeout: Duration) -> Result<DbPool, String> {
    if let DatabaseUrl::Sqlite(path) = url {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating database folder {}: {e}", dir.display()))?;
        }
    }
    let health = Arc::new(Health::default());
    let writer = SqliteWriter::default();
    let inner = Pool::builder()
        .max_size(max_size)
        .min_idle(Some(min_idle.min(max_size)))
        .connection_timeout(timeout)
        .test_on_check_out(false)
        .build(ConnectionManager { url: url.clone(), health: health.clone(), writer: writer.clone() })
        .map_err(|e| format!("connecting to {}: {e}", url.redacted()))?;
    Ok(DbPool { turns: turns_for(&inner), inner, health, url: url.clone(), writer, inline_reads: false })
}

/// Applies pending migrations for the connection's backend; returns how many ran.
pub fn run_migrations(conn: &mut DbConnection) -> Result<usize, String> {
    let ran = match conn {
        DbConnection::Postgres(c) => c.run_pending_migrations(POSTGRES_MIGRATIONS).map(|v| v.len()),
        DbConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
    };
    ran.map_err(|e| format!("running migrations: {e}"))
}

/// SQLite's page cache while a [`bulk_write_tx`] runs: up to 128 MiB (SQLite's default is
/// 2 MiB), taken only as pages are touched.
const SQLITE_BULK_CACHE_KIB: i64 = 128 * 1024;

/// PostgreSQL's memory for each sort and hash of a [`bulk_write_tx`] (`SET LOCAL work_mem`,
/// its transaction only; the server's default is 4 MB).
const PG_BULK_WORK_MEM: &str = "64MB";

/// [`write_tx`] for one transaction that writes hundreds of thousands of rows (a payout batch
/// over 100,000 rewards: its lines, the rewards' moves, an audit event each, ~150 MB of pages).
/// On SQLite the connection's page cache is raised for it and shrunk back after: with the
/// default 2 MiB cache, SQLite spilled dirty index pages to the WAL mid-transaction and read
/// them back again and again (a third of the batch's time went to `pwrite`/`pread`).
/// On PostgreSQL the transaction's sorts get more memory: a batch over 100,000 rewards sorts
/// its payable rewards (~10 MB) and the ambassadors it locks in id order (~20 MB), which the
/// default `work_mem` of 4 MB spilled to temporary files.
pub fn bulk_write_tx<T, E>(conn: &mut DbConnection, f: impl FnOnce(&mut DbConnection) -> Result<T, E>) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    if let DbConnection::Sqlite(inner) = conn {
        inner.batch_execute(&format!("PRAGMA cache_size = -{SQLITE_BULK_CACHE_KIB}"))?;
    }
    let result = write_tx(conn, |conn| {
        if let DbConnection::Postgres(pg) = conn {
            pg.batch_execute(&format!("SET LOCAL work_mem = '{PG_BULK_WORK_MEM}'"))?;
        }
        f(conn)
    });
    if let DbConnection::Sqlite(inner) = conn {
        // Back to the default, and the pages given back to the allocator (a failure here
        // leaves a larger cache on this connection, nothing worse: the batch stands).
        if let Err(e) = inner.batch_execute("PRAGMA cache_size = -2000; PRAGMA shrink_memory") {
            tracing::warn!(error = %e, "could not shrink the SQLite page cache after a bulk write");
        }
    }
    result
}

/// Runs `f` in one write transaction. On SQLite the process's writers take turns first (see
/// `writer`: one at a time, in arrival order), and the transaction starts with `BEGIN
/// IMMEDIATE` so a read-then-write never fails with SQLITE_BUSY when another process's
/// writer got there first (it waits on the busy timeout instead); on PostgreSQL it is an
/// ordinary transaction. The first write of a request with an `Idempotency-Key` writes the
/// request's claim as its first statement (`claim`).
pub fn write_tx<T, E>(conn: &mut DbConnection, f: impl FnOnce(&mut DbConnection) -> Result<T, E>) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    let outermost = !in_transaction(conn)?;
    // The request's idempotency claim, when this is its first write: the transaction's first
    // statement (see `claim`), committed or rolled back with the change.
    let mut wrote_claim = None;
    let run = |conn: &mut DbConnection| {
        if outermost {
            wrote_claim = claim::write_first(conn)?;
        }
        f(conn)
    };
    let done = match conn {
        DbConnection::Postgres(_) => conn.transaction(run),
        DbConnection::Sqlite(inner) => {
            let _turn = sqlite_turn(inner)?;
            AnsiTransactionManager::begin_transaction_sql(inner, "BEGIN IMMEDIATE")?;
            match run(conn) {
                Ok(value) => {
                    let DbConnection::Sqlite(inner) = conn else { unreachable!() };
                    match AnsiTransactionManager::commit_transaction(inner) {
                        Ok(()) => Ok(value),
                        Err(e) => {
                            let _ = AnsiTransactionManager::rollback_transaction(inner);
                            Err(e.into())
                        }
                    }
                }
                Err(e) => {
                    let DbConnection::Sqlite(inner) = conn else { unreachable!() };
                    let _ = AnsiTransactionManager::rollback_transaction(inner);
                    Err(e)
                }
            }
        }
    };
    claim::settle(wrote_claim, done.is_ok());
    done
}

/// Whether the connection is inside a transaction already.
fn in_transaction(conn: &mut DbConnection) -> diesel::QueryResult<bool> {
    match conn {
        DbConnection::Postgres(pg) => inside_transaction(pg),
        DbConnection::Sqlite(lite) => inside_transaction(lite),
    }
}

/// [`in_transaction`] for one backend's connection.
fn inside_transaction<C>(conn: &mut C) -> diesel::QueryResult<bool>
where
    C: Connection<TransactionManager = AnsiTransactionManager>,
{
    Ok(AnsiTransactionManager::transaction_manager_status_mut(conn).transaction_depth()?.is_some())
}

/// Waits for this connection's turn to write (SQLite). None without a queue (a connection
/// made outside the pool) or inside a transaction already (`BEGIN` refuses that on its own;
/// waiting for ourselves would never end).
fn sqlite_turn(conn: &mut SqliteConnection) -> diesel::QueryResult<Option<writer::Turn>> {
    let nested = inside_transaction(conn)?;
    let Some(writer) = conn.instrumentation().downcast_ref::<SqliteWriter>().filter(|_| !nested).cloned() else {
        return Ok(None);
    };
    match writer.turn(SQLITE_BUSY_TIMEOUT) {
        Some(turn) => Ok(Some(turn)),
        None => Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::Unknown,
            Box::new("database is locked: this process's earlier writers did not finish in time".to_owned()),
        )),
    }
}

/// Single-statement writes outside a transaction (where a failed statement must not abort
/// one on PostgreSQL), queued with the process's other SQLite writers like [`write_tx`].
pub fn write_now<T, E>(conn: &mut DbConnection, f: impl FnOnce(&mut DbConnection) -> Result<T, E>) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    let _turn = match conn {
        DbConnection::Sqlite(inner) => sqlite_turn(inner)?,
        DbConnection::Postgres(_) => None,
    };
    // A request whose first write is a single statement claims its key in a statement of its
    // own just before (there is no transaction to share).
    if !in_transaction(conn)? {
        claim::settle(claim::write_first(conn)?, true);
    }
    f(conn)
}

/// `now()` truncated to microseconds, so both backends store and compare the same value.
pub fn now() -> chrono::NaiveDateTime {
    use chrono::{DurationRound, TimeDelta};
    let now = chrono::Utc::now().naive_utc();
    now.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(now)
}

/// Which backend a connection talks to (the tests pick backend-specific checks with it).
pub fn is_postgres(conn: &DbConnection) -> bool {
    matches!(conn, DbConnection::Postgres(_))
}

/// Why [`blocking`] work did not run to the end.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// No connection within the pool's timeout.
    #[error("database pool: {0}")]
    Pool(#[from] r2d2::PoolError),
    /// Still queued for a connection when the pool's timeout ran out.
    #[error("database pool: no connection within {0:?}")]
    Queued(Duration),
    /// The blocking task panicked or was cancelled.
    #[error("blocking task failed: {0}")]
    Task(String),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
}

/// Runs blocking database work on the blocking thread pool with a pooled connection: the one
/// way async code (handlers, pages, the auth middleware, the mail worker, housekeeping)
/// reaches the database. Work done for a request that holds an idempotency claim carries it
/// (see `claim`): the request's first write writes it.
///
/// Work first waits its turn for one of the pool's connections, in arrival order, without
/// holding a thread (an async semaphore with a permit per connection); only then does it take
/// a blocking thread and the connection. Without the queue, every concurrent request parked a
/// blocking thread on r2d2's condition variable, and a thread that had just returned a
/// connection could take it again ahead of those waiting: under load some requests waited for
/// hundreds of milliseconds while the median took one (PROFILE.md part 10).
pub async fn blocking<T, E>(
    pool: &DbPool,
    f: impl FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
) -> Result<T, E>
where
    T: Send + 'static,
    E: From<TaskError> + Send + 'static,
{
    let wait = pool.inner.connection_timeout();
    let turn = match tokio::time::timeout(wait, pool.turns.clone().acquire_owned()).await {
        Ok(Ok(turn)) => turn,
        Ok(Err(closed)) => return Err(TaskError::Task(closed.to_string()).into()),
        Err(_) => return Err(TaskError::Queued(wait).into()),
    };
    let pool = pool.clone();
    let claim = claim::of_task();
    tokio::task::spawn_blocking(move || {
        let _claim = claim::enter(claim);
        let mut conn = pool.get().map_err(TaskError::Pool)?;
        let done = f(&mut conn);
        drop((conn, turn));
        done
    })
    .await
    .map_err(|e| E::from(TaskError::Task(e.to_string())))?
}

/// Runs a short read (a few indexed lookups; never a write, never a wait on a lock) on the
/// calling thread when the pool allows it (`database.inline_reads`), a connection is free at
/// this moment and nobody is queued for one; otherwise exactly like [`blocking`].
///
/// Handing work to a blocking thread and back costs two thread wake-ups per request; for a
/// read that takes tens of microseconds that is most of its cost (PROFILE.md part 13). The
/// HTTP worker serves none of its other connections meanwhile, which is why this is for short
/// reads only, and off by default where each round trip to the database crosses a network.
pub async fn read<T, E>(
    pool: &DbPool,
    f: impl FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
) -> Result<T, E>
where
    T: Send + 'static,
    E: From<TaskError> + Send + 'static,
{
    let Some((turn, conn)) = free_now(pool) else { return blocking(pool, f).await };
    // As on a blocking thread: a panic fails this request (500) rather than the worker thread,
    // and the connection it unwinds through is thrown away (`has_broken`).
    let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let (_claim, mut conn) = (claim::enter(claim::of_task()), conn);
        f(&mut conn)
    }));
    drop(turn);
    done.unwrap_or_else(|panic| {
        let why = panic.downcast_ref::<&str>().copied().or_else(|| panic.downcast_ref::<String>().map(String::as_str));
        Err(TaskError::Task(format!("read panicked: {}", why.unwrap_or("?"))).into())
    })
}

/// A turn in the queue and a connection, when inline reads are on, connections are not suspect
/// and both are free at this moment. A turn is free only when no one waits for one (the queue
/// is first come, first served).
fn free_now(pool: &DbPool) -> Option<(tokio::sync::OwnedSemaphorePermit, PooledConnection<ConnectionManager>)> {
    if !pool.inline_reads || pool.health.suspect() {
        return None;
    }
    let turn = pool.turns.clone().try_acquire_owned().ok()?;
    Some((turn, pool.inner.try_get()?))
}

/// Lets diesel keep a hand-written statement type prepared on each connection, under its type,
/// as it does its typed queries (a `sql_query` is parsed and planned by PostgreSQL anew on
/// every call). The type's own `QueryFragment` pushes its SQL and binds; its SQL must not
/// depend on its values.
macro_rules! prepared_statement {
    ($name:ident<'_>) => {
        impl diesel::query_builder::QueryId for $name<'_> {
            type QueryId = $name<'static>;
            const HAS_STATIC_QUERY_ID: bool = true;
        }
        impl<Conn> diesel::RunQueryDsl<Conn> for $name<'_> {}
    };
    ($name:ident) => {
        impl diesel::query_builder::QueryId for $name {
            type QueryId = $name;
            const HAS_STATIC_QUERY_ID: bool = true;
        }
        impl<Conn> diesel::RunQueryDsl<Conn> for $name {}
    };
}
pub(crate) use prepared_statement;

/// A diesel query kept prepared on the connection like a typed SELECT or INSERT, keyed by its
/// SQL text. Diesel never caches an UPDATE or an upsert (a changeset that skips `None` fields
/// can change its SQL from call to call), nor a query with a raw SQL fragment, so PostgreSQL
/// parsed and planned each of them anew: wrap the ones on hot paths whose SQL has a fixed
/// shape (or a few).
///
/// Only for statements that return rows (`load`, `get_result`: a SELECT, or an UPDATE with a
/// `RETURNING`): diesel's `execute` passes the query on by reference, and a reference does not
/// keep this wrapper's say on caching.
pub struct Prepared<Q>(pub Q);

impl<Q> diesel::query_builder::QueryId for Prepared<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q, DB> diesel::query_builder::QueryFragment<DB> for Prepared<Q>
where
    DB: diesel::backend::Backend,
    Q: diesel::query_builder::QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, pass: diesel::query_builder::AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _: &DB) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<Q: diesel::query_builder::Query> diesel::query_builder::Query for Prepared<Q> {
    type SqlType = Q::SqlType;
}

impl<Q, Conn> RunQueryDsl<Conn> for Prepared<Q> {}

/// A write and a read sent as one PostgreSQL statement, `WITH write AS (…) <read>`: one round
/// trip instead of two for a write that is always followed by the same read. The read sees the
/// database as it was before the write (a data-modifying `WITH` is not visible to the rest of
/// its statement), so it must not read what the write changes.
pub struct WriteThenRead<W, R> {
    pub write: W,
    pub read: R,
}

impl<W, R> diesel::query_builder::QueryId for WriteThenRead<W, R> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<W, R> diesel::query_builder::QueryFragment<diesel::pg::Pg> for WriteThenRead<W, R>
where
    W: diesel::query_builder::QueryFragment<diesel::pg::Pg>,
    R: diesel::query_builder::QueryFragment<diesel::pg::Pg>,
{
    fn walk_ast<'b>(&'b self, mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>) -> QueryResult<()> {
        out.push_sql("WITH write AS (");
        self.write.walk_ast(out.reborrow())?;
        out.push_sql(") ");
        self.read.walk_ast(out.reborrow())
    }
}

impl<W, R: diesel::query_builder::Query> diesel::query_builder::Query for WriteThenRead<W, R> {
    type SqlType = R::SqlType;
}

impl<W, R, Conn> RunQueryDsl<Conn> for WriteThenRead<W, R> {}

diesel::define_sql_function! {
    /// SQL `lower(text)`, for case-insensitive search on both backends.
    fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A statement with a bound `LIMIT` (diesel's `.limit(n)`, `.first()`) runs again and again
    /// from its one preparation on every connection this process opens.
    #[test]
    fn sqlite_statements_with_a_bound_limit_are_not_prepared_again_per_call() {
        use libsqlite3_sys as ffi;
        configure_sqlite();
        // SAFETY: plain use of SQLite's C API on a private in-memory database; every pointer
        // passed is either SQLite's own or a valid local, and each handle is closed at the end.
        unsafe {
            let mut db = std::ptr::null_mut();
            assert_eq!(ffi::sqlite3_open(c":memory:".as_ptr(), &mut db), ffi::SQLITE_OK);
            let sql = c"CREATE TABLE t (n INTEGER PRIMARY KEY); INSERT INTO t VALUES (1), (2), (3);";
            assert_eq!(ffi::sqlite3_exec(db, sql.as_ptr(), None, std::ptr::null_mut(), std::ptr::null_mut()), 0);
            let mut stmt = std::ptr::null_mut();
            let sql = c"SELECT n FROM t WHERE n > ?1 ORDER BY n LIMIT ?2";
            assert_eq!(ffi::sqlite3_prepare_v2(db, sql.as_ptr(), -1, &mut stmt, std::ptr::null_mut()), 0);
            for limit in [1, 2, 1, 3] {
                ffi::sqlite3_bind_int(stmt, 1, 0);
                ffi::sqlite3_bind_int(stmt, 2, limit);
                let mut rows = 0;
                while ffi::sqlite3_step(stmt) == ffi::SQLITE_ROW {
                    rows += 1;
                }
                assert_eq!(rows, limit);
                ffi::sqlite3_reset(stmt);
            }
            let reprepared = ffi::sqlite3_stmt_status(stmt, ffi::SQLITE_STMTSTATUS_REPREPARE, 0);
            ffi::sqlite3_finalize(stmt);
            ffi::sqlite3_close(db);
            assert_eq!(reprepared, 0, "SQLite prepared the statement again for new bound values");
        }
    }

    /// Every pooled SQLite connection queues its writes behind the pool's other writers (a
    /// connection without the queue would silently fall back to SQLite's busy handler).
    #[test]
    fn pooled_sqlite_writers_take_turns() {
        let dir = std::env::temp_dir().join(format!("vouch-writer-{}", uuid::Uuid::new_v4().simple()));
        let url = DatabaseUrl::Sqlite(dir.join("t.db"));
        let pool = build_pool(&url, 2, 2, Duration::from_secs(5)).unwrap();
        let mut first = pool.get().unwrap();
        let mut second = pool.get().unwrap();
        for conn in [&mut first, &mut second] {
            let DbConnection::Sqlite(lite) = &mut **conn else { unreachable!() };
            assert!(lite.instrumentation().downcast_ref::<SqliteWriter>().is_some());
        }
        first.batch_execute("CREATE TABLE t (n INTEGER)").unwrap();
        // While one write is open, a writer on another thread waits for it (here: gives up
        // after the timeout) instead of meeting SQLite's lock.
        write_tx(&mut first, |c| {
            c.batch_execute("INSERT INTO t VALUES (1)")?;
            let DbConnection::Sqlite(lite) = &mut *second else { unreachable!() };
            let writer = lite.instrumentation().downcast_ref::<SqliteWriter>().unwrap().clone();
            let waited = std::thread::spawn(move || writer.turn(Duration::from_millis(50)).is_none());
            assert!(waited.join().unwrap());
            Ok::<_, diesel::result::Error>(())
        })
        .unwrap();
        write_tx(&mut second, |c| c.batch_execute("INSERT INTO t VALUES (2)")).unwrap();
        drop((first, second, pool));
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Work beyond the pool's connections waits its turn in arrival order, and past the pool's
    /// timeout gives up as "queued" (a 503) without having taken a thread or a connection.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blocking_work_queues_for_connections_in_arrival_order() {
        use std::sync::Mutex;
        let dir = std::env::temp_dir().join(format!("vouch-turns-{}", uuid::Uuid::new_v4().simple()));
        let url = DatabaseUrl::Sqlite(dir.join("t.db"));
        // The file made first, with time to spare: the pool under test must open its one
        // connection within its short timeout even on a loaded machine (CI runs tests in
        // parallel on two cores).
        drop(build_pool(&url, 1, 1, Duration::from_secs(30)).unwrap());
        let pool = (0..5)
            .find_map(|_| build_pool(&url, 1, 1, Duration::from_millis(300)).ok())
            .expect("a pool with its one connection");
        let order = Arc::new(Mutex::new(Vec::new()));
        let (release, held) = std::sync::mpsc::channel::<()>();
        let holder = tokio::spawn({
            let pool = pool.clone();
            async move { blocking(&pool, move |_| held.recv().map_err(|e| TaskError::Task(e.to_string()))).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The only connection is taken: the next piece of work waits, then gives up.
        let started = std::time::Instant::now();
        let late = blocking(&pool, |_| Ok::<_, TaskError>(())).await;
        assert!(matches!(late, Err(TaskError::Queued(_))), "{late:?}");
        assert!(started.elapsed() >= Duration::from_millis(300));
        // Five more arrive one after another while it is still taken; they run in that order.
        let mut queued = Vec::new();
        for n in 0..5 {
            let (pool, order) = (pool.clone(), order.clone());
            queued.push(tokio::spawn(async move {
                blocking(&pool, move |_| {
                    order.lock().unwrap().push(n);
                    Ok::<_, TaskError>(())
                })
                .await
            }));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        release.send(()).unwrap();
        holder.await.unwrap().unwrap();
        for q in queued {
            q.await.unwrap().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4]);
        drop(pool);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A short read runs on the calling thread while a connection is free; while none is (or
    /// inline reads are off), it queues behind the others and runs on a blocking thread. A
    /// panic in it fails the read, not the thread, and its connection is not handed out again.
    #[tokio::test(flavor = "current_thread")]
    async fn short_reads_run_in_place_only_when_a_connection_is_free() {
        let dir = std::env::temp_dir().join(format!("vouch-read-{}", uuid::Uuid::new_v4().simple()));
        let pool = build_pool(&DatabaseUrl::Sqlite(dir.join("t.db")), 1, 1, Duration::from_secs(5)).unwrap();
        let here = std::thread::current().id();
        let ran_on = |pool: DbPool| async move {
            read(&pool, |_| Ok::<_, TaskError>(std::thread::current().id())).await.unwrap()
        };
        assert_ne!(ran_on(pool.clone()).await, here, "inline reads are off unless the pool says so");
        let pool = pool.with_inline_reads(true);
        assert_eq!(ran_on(pool.clone()).await, here);

        let (release, held) = std::sync::mpsc::channel::<()>();
        let holder = tokio::task::spawn_blocking({
            let (pool, turn) = (pool.clone(), pool.turns.clone().try_acquire_owned().unwrap());
            move || {
                let conn = pool.get().unwrap();
                held.recv().unwrap();
                drop((conn, turn));
            }
        });
        let waiting = tokio::spawn(ran_on(pool.clone()));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "a read waits its turn while the only connection is taken");
        release.send(()).unwrap();
        holder.await.unwrap();
        assert_ne!(waiting.await.unwrap(), here);

        let before = pool.state().connections;
        let panicked = read(&pool, |_| -> Result<(), TaskError> { panic!("boom") }).await;
        assert!(matches!(&panicked, Err(TaskError::Task(why)) if why.contains("boom")), "{panicked:?}");
        assert_eq!(pool.state().connections, before - 1, "the connection it held was thrown away");
        ran_on(pool.clone()).await; // a new connection serves the next read
        drop(pool);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_database_on_this_machine_is_told_from_one_across_the_network() {
        for (url, local) in [
            ("sqlite://data/vouch.db", true),
            ("postgres://postgres@127.0.0.1:5432/postgres", true),
            ("postgres://u:p@localhost/vouch", true),
            ("postgresql://u@[::1]:5432/vouch", true),
            ("postgres:///vouch", true),
            ("postgres://%2Fvar%2Frun%2Fpostgresql/vouch", true),
            ("postgres://u@db.internal/vouch?host=/var/run/postgresql", true),
            ("postgres://u:p@db.internal:5432/vouch", false),
            ("postgres://u:p@10.0.0.7/vouch?sslmode=require", false),
            ("postgres://u@[2001:db8::1]:5432/vouch", false),
            ("postgres://localhost.evil.example/vouch", false),
        ] {
            assert_eq!(DatabaseUrl::parse(url).unwrap().is_on_this_machine(), local, "{url}");
        }
    }

    /// The pool's first SQLite connection applies the process-wide settings: SQLite no longer
    /// counts its memory (the count stays at zero while a connection works), and asking for a
    /// threading mode now is refused because SQLite is already set up.
    #[test]
    fn sqlite_is_configured_before_its_first_connection() {
        use libsqlite3_sys::{sqlite3_config, sqlite3_memory_used, SQLITE_CONFIG_SERIALIZED, SQLITE_MISUSE};
        let dir = std::env::temp_dir().join(format!("vouch-config-{}", uuid::Uuid::new_v4().simple()));
        let pool = build_pool(&DatabaseUrl::Sqlite(dir.join("t.db")), 1, 1, Duration::from_secs(5)).unwrap();
        let mut conn = pool.get().unwrap();
        conn.batch_execute("CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (1), (2);").unwrap();
        // SAFETY: reads a counter; asks for a setting SQLite refuses once initialised.
        let (used, late) = unsafe { (sqlite3_memory_used(), sqlite3_config(SQLITE_CONFIG_SERIALIZED)) };
        assert_eq!(used, 0, "SQLite still keeps memory statistics");
        assert_eq!(late, SQLITE_MISUSE);
        drop((conn, pool));
        let _ = std::fs::remove_dir_all(dir);
    }

    /// On PostgreSQL a bulk write's sorts get more memory, for its transaction only (runs when
    /// `VOUCH_TEST_DATABASE_URL` names a PostgreSQL server, as the API suite does; it reads a
    /// setting and writes nothing).
    #[test]
    fn bulk_writes_get_more_sort_memory_on_postgres_for_their_transaction_only() {
        let Some(url) = std::env::var("VOUCH_TEST_DATABASE_URL").ok().and_then(|u| DatabaseUrl::parse(&u).ok()) else {
            return;
        };
        #[derive(QueryableByName)]
        struct WorkMem {
            #[diesel(sql_type = diesel::sql_types::Text)]
            work_mem: String,
        }
        fn work_mem(c: &mut DbConnection) -> String {
            diesel::sql_query("SHOW work_mem").get_result::<WorkMem>(c).unwrap().work_mem
        }
        let pool = build_pool(&url, 1, 1, Duration::from_secs(5)).unwrap();
        let mut conn = pool.get().unwrap();
        let before = work_mem(&mut conn);
        assert_ne!(before, PG_BULK_WORK_MEM);
        let inside = bulk_write_tx(&mut conn, |c| Ok::<_, diesel::result::Error>(work_mem(c))).unwrap();
        assert_eq!(inside, PG_BULK_WORK_MEM);
        assert_eq!(work_mem(&mut conn), before);
        let refused: Result<(), diesel::result::Error> =
            bulk_write_tx(&mut conn, |_| Err(diesel::result::Error::RollbackTransaction));
        assert!(refused.is_err());
        assert_eq!(work_mem(&mut conn), before);
    }

    /// A bulk write runs with the large page cache and leaves the connection with the default
    /// one, whether it committed or rolled back.
    #[test]
    fn bulk_writes_get_a_large_sqlite_cache_for_their_transaction_only() {
        #[derive(QueryableByName)]
        struct CacheSize {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            cache_size: i64,
        }
        fn cache_size(c: &mut DbConnection) -> i64 {
            let DbConnection::Sqlite(lite) = c else { unreachable!() };
            diesel::sql_query("PRAGMA cache_size").get_result::<CacheSize>(lite).unwrap().cache_size
        }
        let dir = std::env::temp_dir().join(format!("vouch-bulk-{}", uuid::Uuid::new_v4().simple()));
        let pool = build_pool(&DatabaseUrl::Sqlite(dir.join("t.db")), 1, 1, Duration::from_secs(5)).unwrap();
        let mut conn = pool.get().unwrap();
        conn.batch_execute("CREATE TABLE t (n INTEGER)").unwrap();
        let inside = bulk_write_tx(&mut conn, |c| {
            c.batch_execute("INSERT INTO t VALUES (1)")?;
            Ok::<_, diesel::result::Error>(cache_size(c))
        })
        .unwrap();
        assert_eq!(inside, -SQLITE_BULK_CACHE_KIB);
        assert_eq!(cache_size(&mut conn), -2000);
        let refused: Result<(), diesel::result::Error> = bulk_write_tx(&mut conn, |c| {
            c.batch_execute("INSERT INTO t VALUES (2)")?;
            Err(diesel::result::Error::RollbackTransaction)
        });
        assert!(refused.is_err());
        assert_eq!(cache_size(&mut conn), -2000);
        let DbConnection::Sqlite(lite) = &mut *conn else { unreachable!() };
        let rows: i64 =
            diesel::dsl::sql::<diesel::sql_types::BigInt>("SELECT count(*) FROM t").get_result(lite).unwrap();
        assert_eq!(rows, 1);
        drop((conn, pool));
        let _ = std::fs::remove_dir_all(dir);
    }
}
