PRAGMA defer_foreign_keys = ON;

CREATE TABLE payouts_after_lock AS SELECT * FROM payouts;
DROP TABLE payouts;

CREATE TABLE payouts (
    id TEXT PRIMARY KEY NOT NULL,
    number INTEGER NOT NULL UNIQUE,
    status TEXT NOT NULL CHECK (status IN ('draft', 'paid', 'cancelled')),
    currency TEXT NOT NULL,
    cutoff TIMESTAMP NOT NULL,
    total_minor BIGINT NOT NULL,
    skipped TEXT NOT NULL,
    reference TEXT,
    created_by TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    paid_at TIMESTAMP,
    cancelled_at TIMESTAMP,
    updated_at TIMESTAMP NOT NULL,
    CHECK ((status = 'paid') = (paid_at IS NOT NULL AND reference IS NOT NULL))
);

-- A locked batch goes back to being a draft (fails if that makes two drafts: settle one first).
INSERT INTO payouts (id, number, status, currency, cutoff, total_minor, skipped, reference, created_by,
    created_at, paid_at, cancelled_at, updated_at)
SELECT id, number, CASE WHEN status = 'processing' THEN 'draft' ELSE status END, currency, cutoff,
    total_minor, skipped, reference, created_by, created_at, paid_at, cancelled_at, updated_at
FROM payouts_after_lock;

DROP TABLE payouts_after_lock;
CREATE UNIQUE INDEX payouts_one_draft ON payouts (status) WHERE status = 'draft';
