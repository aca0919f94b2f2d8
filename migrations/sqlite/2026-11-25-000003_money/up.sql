-- Money: versioned program rules, the rewards ledger, payout batches and their lines.

-- One row per version of the rules; the highest version is in force. Never updated.
CREATE TABLE program_versions (
    id TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL UNIQUE CHECK (version >= 1),
    currency TEXT NOT NULL CHECK (length(currency) = 3),
    -- JSON: {"type":"flat","amount_minor":…} | {"type":"percent","basis_points":…,"max_minor":…}
    reward TEXT NOT NULL,
    -- JSON list of {"min_completed":…, "amount_minor"|"basis_points":…}
    tiers TEXT NOT NULL,
    holding_days INTEGER NOT NULL CHECK (holding_days >= 0),
    min_payout_minor BIGINT NOT NULL CHECK (min_payout_minor >= 0),
    annual_cap_minor BIGINT CHECK (annual_cap_minor IS NULL OR annual_cap_minor > 0),
    attribution_days INTEGER NOT NULL CHECK (attribution_days >= 1),
    client_offer TEXT,
    tax_threshold_minor BIGINT NOT NULL CHECK (tax_threshold_minor >= 0),
    created_by TEXT NOT NULL,
    effective_from TIMESTAMP NOT NULL
);

-- The defaults every new deployment starts with (DESIGN §2).
INSERT INTO program_versions (id, version, currency, reward, tiers, holding_days, min_payout_minor,
    annual_cap_minor, attribution_days, client_offer, tax_threshold_minor, created_by, effective_from)
VALUES ('00000000-0000-7000-8000-000000000001', 1, 'USD', '{"type":"flat","amount_minor":10000}', '[]', 14, 5000,
    NULL, 365, NULL, 60000, 'system', '2026-01-01 00:00:00');

-- Payout batches. At most one draft at a time, enforced by a partial unique index.
CREATE TABLE payouts (
    id TEXT PRIMARY KEY NOT NULL,
    -- Short human reference (P12), also used in PayPal customer ids.
    number INTEGER NOT NULL UNIQUE,
    status TEXT NOT NULL CHECK (status IN ('draft', 'paid', 'cancelled')),
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
    CHECK ((status = 'paid') = (paid_at IS NOT NULL AND reference IS NOT NULL))
);
CREATE UNIQUE INDEX payouts_one_draft ON payouts (status) WHERE status = 'draft';

CREATE TABLE payout_lines (
    id TEXT PRIMARY KEY NOT NULL,
    payout_id TEXT NOT NULL REFERENCES payouts (id),
    number INTEGER NOT NULL,
    ambassador_id TEXT NOT NULL REFERENCES ambassadors (id),
    amount_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    -- Payout details as approved when the batch was made.
    payout_method TEXT NOT NULL CHECK (payout_method IN ('paypal', 'bank', 'store_credit')),
    payout_address TEXT,
    -- Position among the batch's lines of the same method, fixed at creation: PayPal files are
    -- cut by it, so a line leaving the draft never shifts another line into a different part.
    method_seq INTEGER NOT NULL,
    -- pending (draft batch) → paid | failed; released when refunds emptied it; cancelled with the batch.
    status TEXT NOT NULL CHECK (status IN ('pending', 'paid', 'failed', 'released', 'cancelled')),
    failure_reason TEXT,
    reward_count INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    UNIQUE (payout_id, ambassador_id),
    UNIQUE (payout_id, number),
    UNIQUE (payout_id, payout_method, method_seq),
    CHECK (amount_minor > 0 OR status IN ('released', 'cancelled'))
);
CREATE INDEX payout_lines_ambassador_idx ON payout_lines (ambassador_id, id);

-- The ledger. Entries are never edited in amount: only voided, or offset by a clawback.
CREATE TABLE rewards (
    id TEXT PRIMARY KEY NOT NULL,
    ambassador_id TEXT NOT NULL REFERENCES ambassadors (id),
    referral_id TEXT REFERENCES referrals (id),
    kind TEXT NOT NULL CHECK (kind IN ('earned', 'clawback', 'adjustment')),
    amount_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    -- open (held until holds_until, then payable) → in_payout → paid; or voided.
    state TEXT NOT NULL CHECK (state IN ('open', 'in_payout', 'paid', 'voided')),
    holds_until TIMESTAMP NOT NULL,
    -- The calendar year (of earned_on) the annual cap and tiers count it in.
    earned_on DATE NOT NULL,
    program_version_id TEXT REFERENCES program_versions (id),
    -- JSON: how the amount was computed (version rules, tier, basis).
    basis TEXT,
    uncapped_minor BIGINT,
    capped_reason TEXT,
    reason TEXT,
    payout_line_id TEXT REFERENCES payout_lines (id),
    paid_at TIMESTAMP,
    voided_at TIMESTAMP,
    void_reason TEXT,
    created_by TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    CHECK (kind = 'adjustment' OR referral_id IS NOT NULL),
    CHECK (kind <> 'earned' OR (amount_minor >= 0 AND program_version_id IS NOT NULL)),
    CHECK (kind <> 'clawback' OR amount_minor < 0),
    CHECK (kind <> 'adjustment' OR (amount_minor <> 0 AND reason IS NOT NULL)),
    -- A reward is in at most one line, and only while in a payout or paid.
    CHECK ((state IN ('in_payout', 'paid')) = (payout_line_id IS NOT NULL)),
    CHECK ((state = 'paid') = (paid_at IS NOT NULL))
);
-- Exactly one earned reward and at most one clawback per referral: retries and races cannot
-- make a second.
CREATE UNIQUE INDEX rewards_one_earned ON rewards (referral_id) WHERE kind = 'earned';
CREATE UNIQUE INDEX rewards_one_clawback ON rewards (referral_id) WHERE kind = 'clawback';
CREATE INDEX rewards_ambassador_idx ON rewards (ambassador_id, state);
CREATE INDEX rewards_line_idx ON rewards (payout_line_id);
