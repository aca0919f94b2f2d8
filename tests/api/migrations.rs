//! The two migration folders stay in step: the same migrations by name, each reversible, and
//! the same schema at the end on SQLite and PostgreSQL (tables, columns with their shared
//! types and nullability, primary keys, indexes with their columns, uniqueness and partiality).
//! One diesel `schema.rs` serves both backends, so a column or index that exists on one
//! backend only is a bug that would show on the other in production.
//!
//! The cross-backend comparison needs PostgreSQL, so it runs in the PostgreSQL pass of the
//! suite (`VOUCH_TEST_DATABASE_URL`, always run by `.ci/run`); the SQLite pass checks the
//! folders and that SQLite's migrations go up, down and up again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Text};
use diesel::{PgConnection, SqliteConnection};
use diesel_migrations::{FileBasedMigrations, MigrationHarness};

/// One backend's schema in shared terms.
#[derive(Debug, Default, PartialEq, Eq)]
struct Schema {
    /// table → column → (type, nullable)
    columns: BTreeMap<String, BTreeMap<String, (String, bool)>>,
    /// table → primary-key columns
    primary_keys: BTreeMap<String, Vec<String>>,
    /// (table, columns, unique, partial) of every index that is not a primary key
    indexes: BTreeSet<(String, Vec<String>, bool, bool)>,
}

fn folder(backend: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(backend)
}

fn migration_names(backend: &str) -> BTreeSet<String> {
    std::fs::read_dir(folder(backend))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| {
            let dir = e.path();
            for file in ["up.sql", "down.sql"] {
                assert!(dir.join(file).is_file(), "{} has no {file}", dir.display());
            }
            e.file_name().to_string_lossy().into_owned()
        })
        .collect()
}

#[test]
fn both_backends_have_the_same_migrations() {
    let sqlite = migration_names("sqlite");
    let postgres = migration_names("postgres");
    assert!(!sqlite.is_empty());
    assert_eq!(sqlite, postgres, "add every migration to both folders under the same name");
}

/// The shared name of a column type, whichever backend declared it.
fn shared_type(declared: &str) -> String {
    match declared.to_ascii_lowercase().as_str() {
        "text" => "text",
        "integer" | "int" | "int4" => "integer",
        "bigint" | "int8" => "bigint",
        "boolean" | "bool" => "boolean",
        "date" => "date",
        "timestamp" | "timestamp without time zone" => "timestamp",
        other => return format!("unshared type {other}"),
    }
    .to_owned()
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct SqliteColumn {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    r#type: String,
    #[diesel(sql_type = Bool)]
    notnull: bool,
    #[diesel(sql_type = Integer)]
    pk: i32,
}

#[derive(QueryableByName)]
struct SqliteIndex {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Bool)]
    unique: bool,
    #[diesel(sql_type = Text)]
    origin: String,
    #[diesel(sql_type = Bool)]
    partial: bool,
}

#[derive(QueryableByName)]
struct IndexColumn {
    #[diesel(sql_type = Nullable<Text>)]
    name: Option<String>,
}

fn sqlite_schema(conn: &mut SqliteConnection) -> Schema {
    let mut schema = Schema::default();
    let tables: Vec<Name> = diesel::sql_query(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         AND name <> '__diesel_schema_migrations' ORDER BY name",
    )
    .load(conn)
    .unwrap();
    for Name { name: table } in tables {
        let columns: Vec<SqliteColumn> =
            diesel::sql_query(format!("SELECT name, type, \"notnull\", pk FROM pragma_table_info('{table}')"))
                .load(conn)
                .unwrap();
        let mut pk: Vec<(i32, String)> = Vec::new();
        let cols = schema.columns.entry(table.clone()).or_default();
        for c in columns {
            if c.pk > 0 {
                pk.push((c.pk, c.name.clone()));
            }
            // A primary key is NOT NULL on PostgreSQL whatever it says; on SQLite only if declared.
            cols.insert(c.name, (shared_type(&c.r#type), !(c.notnull || c.pk > 0)));
        }
        pk.sort();
        schema.primary_keys.insert(table.clone(), pk.into_iter().map(|(_, n)| n).collect());
        let indexes: Vec<SqliteIndex> =
            diesel::sql_query(format!("SELECT name, \"unique\", origin, partial FROM pragma_index_list('{table}')"))
                .load(conn)
                .unwrap();
        for ix in indexes.into_iter().filter(|ix| ix.origin != "pk") {
            let columns: Vec<IndexColumn> =
                diesel::sql_query(format!("SELECT name FROM pragma_index_info('{}') ORDER BY seqno", ix.name))
                    .load(conn)
                    .unwrap();
            let columns = columns.into_iter().map(|c| c.name.unwrap_or_else(|| "<expression>".into())).collect();
            schema.indexes.insert((table.clone(), columns, ix.unique, ix.partial));
        }
    }
    schema
}

#[derive(QueryableByName)]
struct PgColumn {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    data_type: String,
    #[diesel(sql_type = Bool)]
    nullable: bool,
}

#[derive(QueryableByName)]
struct PgIndex {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    columns: String,
    #[diesel(sql_type = Bool)]
    is_unique: bool,
    #[diesel(sql_type = Bool)]
    is_primary: bool,
    #[diesel(sql_type = Bool)]
    is_partial: bool,
    #[diesel(sql_type = BigInt)]
    expressions: i64,
}

fn postgres_schema(conn: &mut PgConnection) -> Schema {
    let mut schema = Schema::default();
    let columns: Vec<PgColumn> = diesel::sql_query(
        "SELECT table_name::text, column_name::text, data_type::text, is_nullable = 'YES' AS nullable \
         FROM information_schema.columns WHERE table_schema = 'public' \
         AND table_name <> '__diesel_schema_migrations'",
    )
    .load(conn)
    .unwrap();
    for c in columns {
        schema.columns.entry(c.table_name).or_default().insert(c.column_name, (shared_type(&c.data_type), c.nullable));
    }
    // Columns by position in the index (0 marks an expression), named through pg_attribute.
    let indexes: Vec<PgIndex> = diesel::sql_query(
        "SELECT t.relname::text AS table_name, \
                COALESCE(string_agg(a.attname::text, ',' ORDER BY k.ord), '') AS columns, \
                ix.indisunique AS is_unique, ix.indisprimary AS is_primary, \
                ix.indpred IS NOT NULL AS is_partial, \
                count(*) FILTER (WHERE k.attnum = 0) AS expressions \
         FROM pg_index ix \
         JOIN pg_class t ON t.oid = ix.indrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace AND n.nspname = 'public' \
         CROSS JOIN LATERAL unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
         LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum \
         WHERE t.relname <> '__diesel_schema_migrations' \
         GROUP BY t.relname, ix.indexrelid, ix.indisunique, ix.indisprimary, ix.indpred",
    )
    .load(conn)
    .unwrap();
    for ix in indexes {
        let mut columns: Vec<String> =
            if ix.columns.is_empty() { Vec::new() } else { ix.columns.split(',').map(str::to_owned).collect() };
        columns.extend((0..ix.expressions).map(|_| "<expression>".to_owned()));
        if ix.is_primary {
            schema.primary_keys.insert(ix.table_name, columns);
        } else {
            schema.indexes.insert((ix.table_name, columns, ix.is_unique, ix.is_partial));
        }
    }
    for table in schema.columns.keys() {
        schema.primary_keys.entry(table.clone()).or_default();
    }
    schema
}

/// Runs every migration up, down and up again; returns the schema after the second run.
fn migrate_sqlite() -> Schema {
    let dir = std::env::temp_dir().join(format!("vouch-migrations-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut conn = SqliteConnection::establish(&dir.join("schema.db").to_string_lossy()).unwrap();
    conn.batch_execute("PRAGMA foreign_keys = ON").unwrap();
    let migrations = FileBasedMigrations::from_path(folder("sqlite")).unwrap();
    conn.run_pending_migrations(migrations.clone()).unwrap();
    let first = sqlite_schema(&mut conn);
    conn.revert_all_migrations(migrations.clone()).unwrap();
    assert_eq!(sqlite_schema(&mut conn), Schema::default(), "every SQLite down.sql undoes its up.sql");
    conn.run_pending_migrations(migrations).unwrap();
    let second = sqlite_schema(&mut conn);
    drop(conn);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(first, second);
    second
}

fn migrate_postgres(admin_url: &str) -> Schema {
    let name = format!("vouch_schema_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::establish(admin_url).expect("PostgreSQL reachable");
    diesel::sql_query(format!("CREATE DATABASE \"{name}\"")).execute(&mut admin).unwrap();
    let url = crate::helpers::with_database(admin_url, &name);
    let result = std::panic::catch_unwind(|| {
        let mut conn = PgConnection::establish(&url).unwrap();
        let migrations = FileBasedMigrations::from_path(folder("postgres")).unwrap();
        conn.run_pending_migrations(migrations.clone()).unwrap();
        let first = postgres_schema(&mut conn);
        conn.revert_all_migrations(migrations.clone()).unwrap();
        assert_eq!(postgres_schema(&mut conn), Schema::default(), "every PostgreSQL down.sql undoes its up.sql");
        conn.run_pending_migrations(migrations).unwrap();
        let second = postgres_schema(&mut conn);
        assert_eq!(first, second);
        second
    });
    let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).execute(&mut admin);
    result.unwrap_or_else(|e| std::panic::resume_unwind(e))
}

#[test]
fn both_backends_end_with_the_same_schema() {
    let sqlite = migrate_sqlite();
    assert!(sqlite.columns.contains_key("referrals") && sqlite.columns.contains_key("payouts"));
    assert!(sqlite.columns.values().flatten().all(|(_, (t, _))| !t.starts_with("unshared")), "{sqlite:#?}");
    let Some(admin_url) = crate::helpers::test_postgres_url() else {
        return; // compared in the PostgreSQL pass
    };
    let postgres = migrate_postgres(&admin_url);
    for table in sqlite.columns.keys().chain(postgres.columns.keys()) {
        assert_eq!(sqlite.columns.get(table), postgres.columns.get(table), "columns of {table} (SQLite vs PostgreSQL)");
        assert_eq!(sqlite.primary_keys.get(table), postgres.primary_keys.get(table), "primary key of {table}");
    }
    let only_sqlite: Vec<_> = sqlite.indexes.difference(&postgres.indexes).collect();
    let only_postgres: Vec<_> = postgres.indexes.difference(&sqlite.indexes).collect();
    assert!(
        only_sqlite.is_empty() && only_postgres.is_empty(),
        "indexes on one backend only — SQLite: {only_sqlite:#?}, PostgreSQL: {only_postgres:#?}"
    );
}
