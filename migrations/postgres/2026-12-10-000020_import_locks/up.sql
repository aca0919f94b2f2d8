-- One row per import kind ('ambassadors', 'referrals'), written on first use. On PostgreSQL
-- every chunk transaction of an import locks its kind's row first (an upsert that always
-- takes the row lock), so two imports of the same kind — two requests, or the CLI and
-- another instance — write their chunks one after the other, and each chunk looks for the
-- rows it would write only after the other chunk has committed. SQLite needs no lock: its
-- writers already take turns (`BEGIN IMMEDIATE`); the table is here so both backends keep
-- one schema.
CREATE TABLE import_locks (
    kind TEXT PRIMARY KEY NOT NULL
);
