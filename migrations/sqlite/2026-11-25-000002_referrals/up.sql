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
    ambassador_id TEXT NOT NULL REFERENCES ambassadors (id),
    code_id TEXT NOT NULL REFERENCES referral_codes (id),
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
    CHECK (email_key IS NOT NULL OR phone_key IS NOT NULL)
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
