-- A payout batch locked for payment: draft → processing → paid (or cancelled, with a reason).
-- Once a batch is processing, its file is out with the payment provider: its lines never
-- change again except a line marked failed, and mark-paid settles exactly those lines.
--
-- SQLite cannot change a CHECK constraint in place, so the table is rebuilt. payout_lines
-- refers to payouts by name: with foreign keys deferred to the commit, dropping the old table
-- and inserting the same ids into the new one leaves no violation behind (SQLite counts the
-- orphans on the drop and uncounts them as their parents come back). Renaming tables instead
-- would make payout_lines follow the old table.
PRAGMA defer_foreign_keys = ON;

CREATE TABLE payouts_before_lock AS SELECT * FROM payouts;
DROP TABLE payouts;

CREATE TABLE payouts (
    id TEXT PRIMARY KEY NOT NULL,
    -- Short human reference (P12), also used in PayPal customer ids.
    number INTEGER NOT NULL UNIQUE,
    status TEXT NOT NULL CHECK (status IN ('draft', 'processing', 'paid', 'cancelled')),
    currency TEXT NOT NULL,
    cutoff TIMESTAMP NOT NULL,
    -- Sum of the lines still to be paid or paid (failed and released lines excluded).
    total_minor BIGINT NOT NULL,
    -- JSON list of ambassadors left out at creation: {ambassador_id, reason, balance_minor}.
    skipped TEXT NOT NULL,
    reference TEXT,
    created_by TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    paid_at TIMESTAMP,
    cancelled_at TIMESTAMP,
    updated_at TIMESTAMP NOT NULL,
    -- The program version the batch was built with: a refund that shrinks a draft line checks
    -- that version's minimum payout, not the rules in force later.
    program_version_id TEXT NOT NULL REFERENCES program_versions (id),
    -- When finance locked it for payment (explicitly, by downloading the PayPal file, or by
    -- marking a draft paid).
    locked_at TIMESTAMP,
    -- Why it was cancelled; required once it had been locked ("the file was never uploaded").
    cancel_reason TEXT,
    CHECK ((status = 'paid') = (paid_at IS NOT NULL AND reference IS NOT NULL)),
    CHECK (status NOT IN ('processing', 'paid') OR locked_at IS NOT NULL),
    CHECK (status <> 'cancelled' OR locked_at IS NULL OR cancel_reason IS NOT NULL)
);

INSERT INTO payouts (id, number, status, currency, cutoff, total_minor, skipped, reference, created_by,
    created_at, paid_at, cancelled_at, updated_at, program_version_id, locked_at, cancel_reason)
SELECT id, number, status, currency, cutoff, total_minor, skipped, reference, created_by,
    created_at, paid_at, cancelled_at, updated_at,
    COALESCE(
        (SELECT pv.id FROM program_versions pv WHERE pv.effective_from <= b.created_at
         ORDER BY pv.version DESC LIMIT 1),
        (SELECT pv.id FROM program_versions pv ORDER BY pv.version ASC LIMIT 1)),
    -- Batches paid before this migration count as locked when they were paid.
    CASE WHEN status = 'paid' THEN paid_at END,
    NULL
FROM payouts_before_lock b;

DROP TABLE payouts_before_lock;
CREATE UNIQUE INDEX payouts_one_draft ON payouts (status) WHERE status = 'draft';
