-- Referred clients followed through treatment.

-- Server-side secrets shared by every instance (e.g. the key for contact hashes when none is
-- configured). Created on first use.
CREATE TABLE app_secrets (
    name TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE referrals (
    id TEXT PRIMARY KEY NOT NULL,
    -- NULL only for a public submission rejected because its code matched nothing.
    ambassador_id TEXT REFERENCES ambassadors (id),
    code_id TEXT REFERENCES referral_codes (id),
    -- What the client typed (public form), kept for staff.
    submitted_code TEXT,
    status TEXT NOT NULL CHECK (status IN ('registered', 'in_treatment', 'completed', 'refunded', 'cancelled', 'rejected')),
    source TEXT NOT NULL CHECK (source IN ('staff', 'public_form')),
    -- Personal data: NULL after erasure.
    client_first_name TEXT,
    client_last_name TEXT,
    client_email TEXT,
    client_phone TEXT,
    notes TEXT,
    -- Keyed hashes of the normalised contact: kept after erasure so duplicates are still caught.
    email_key TEXT,
    phone_key TEXT,
    external_ref TEXT,
    share_name_with_ambassador BOOLEAN NOT NULL DEFAULT FALSE,
    planned_sessions INTEGER CHECK (planned_sessions IS NULL OR planned_sessions BETWEEN 1 AND 100),
    session_count INTEGER NOT NULL DEFAULT 0,
    -- Date of the earliest session recorded (sessions may be entered late or out of order).
    first_session_on DATE,
    completed_on DATE,
    treatment_value_minor BIGINT CHECK (treatment_value_minor IS NULL OR treatment_value_minor >= 0),
    -- Whether completion earns a reward, and why not.
    earns BOOLEAN,
    not_earning_reason TEXT,
    reason_code TEXT,
    reason_note TEXT,
    registered_at TIMESTAMP NOT NULL,
    treatment_started_at TIMESTAMP,
    completed_at TIMESTAMP,
    refunded_at TIMESTAMP,
    cancelled_at TIMESTAMP,
    rejected_at TIMESTAMP,
    erased_at TIMESTAMP,
    updated_at TIMESTAMP NOT NULL,
    CHECK (email_key IS NOT NULL OR phone_key IS NOT NULL),
    CHECK (status = 'rejected' OR (ambassador_id IS NOT NULL AND code_id IS NOT NULL))
);
CREATE INDEX referrals_ambassador_idx ON referrals (ambassador_id, id);
CREATE INDEX referrals_status_idx ON referrals (status, id);
-- First valid referral wins: one live referral per client contact, enforced by the database.
CREATE UNIQUE INDEX referrals_live_email_key ON referrals (email_key)
    WHERE email_key IS NOT NULL AND status NOT IN ('cancelled', 'rejected');
CREATE UNIQUE INDEX referrals_live_phone_key ON referrals (phone_key)
    WHERE phone_key IS NOT NULL AND status NOT IN ('cancelled', 'rejected');

CREATE TABLE referral_sessions (
    id TEXT PRIMARY KEY NOT NULL,
    referral_id TEXT NOT NULL REFERENCES referrals (id),
    session_on DATE NOT NULL,
    note TEXT,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX referral_sessions_referral_idx ON referral_sessions (referral_id, id);

-- Ambassador portal: one-time login links (15 min) and the sessions they open (30 days).
-- Only SHA-256 hashes of the secrets are stored.
CREATE TABLE portal_login_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    ambassador_id TEXT NOT NULL REFERENCES ambassadors (id),
    token_hash TEXT NOT NULL UNIQUE,
    expires_at TIMESTAMP NOT NULL,
    used_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE portal_sessions (
    id TEXT PRIMARY KEY NOT NULL,
    ambassador_id TEXT NOT NULL REFERENCES ambassadors (id),
    token_hash TEXT NOT NULL UNIQUE,
    expires_at TIMESTAMP NOT NULL,
    revoked_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX portal_sessions_ambassador_idx ON portal_sessions (ambassador_id);

-- Transactional outbox: written in the same transaction as the change that causes the mail;
-- the dedupe key makes a retried request or a restarted worker unable to send twice.
CREATE TABLE email_outbox (
    id TEXT PRIMARY KEY NOT NULL,
    dedupe_key TEXT NOT NULL UNIQUE,
    template TEXT NOT NULL,
    to_address TEXT NOT NULL,
    -- JSON with the values the template needs.
    payload TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'sending', 'sent', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP NOT NULL,
    last_error TEXT,
    sent_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX email_outbox_due_idx ON email_outbox (status, next_attempt_at);
