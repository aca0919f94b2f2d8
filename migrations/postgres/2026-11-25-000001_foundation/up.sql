-- Foundation: API keys, ambassadors, referral codes, audit trail, idempotency records.
-- Ids are UUID v7 text; times are UTC timestamps; money (later) is BIGINT minor units.

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'staff', 'finance')),
    prefix TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP,
    revoked_at TIMESTAMP
);

CREATE TABLE ambassadors (
    id TEXT PRIMARY KEY NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('applied', 'active', 'suspended', 'closed', 'declined')),
    source TEXT NOT NULL CHECK (source IN ('staff', 'application')),
    name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    phone TEXT,
    display_name TEXT,
    show_name_to_referrals BOOLEAN NOT NULL DEFAULT FALSE,
    payout_method TEXT CHECK (payout_method IN ('paypal', 'bank', 'store_credit')),
    payout_paypal_email TEXT,
    payout_bank_reference TEXT,
    notify_referral_updates BOOLEAN NOT NULL DEFAULT TRUE,
    notify_reward_updates BOOLEAN NOT NULL DEFAULT TRUE,
    notes TEXT,
    application_message TEXT,
    status_reason TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    status_changed_at TIMESTAMP NOT NULL,
    CHECK (payout_method IS NULL OR payout_method <> 'paypal' OR payout_paypal_email IS NOT NULL),
    CHECK (payout_method IS NULL OR payout_method <> 'bank' OR payout_bank_reference IS NOT NULL)
);
CREATE INDEX ambassadors_status_idx ON ambassadors (status, id);

CREATE TABLE referral_codes (
    id TEXT PRIMARY KEY NOT NULL,
    ambassador_id TEXT NOT NULL REFERENCES ambassadors (id),
    code TEXT NOT NULL,
    -- upper-case, hyphens removed: what matching compares; unique forever (deactivated codes stay reserved)
    normalized TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('generated', 'vanity')),
    active BOOLEAN NOT NULL,
    created_at TIMESTAMP NOT NULL,
    deactivated_at TIMESTAMP
);
CREATE INDEX referral_codes_ambassador_idx ON referral_codes (ambassador_id, id);

CREATE TABLE audit_events (
    id TEXT PRIMARY KEY NOT NULL,
    occurred_at TIMESTAMP NOT NULL,
    actor_type TEXT NOT NULL,
    actor_id TEXT,
    actor_role TEXT,
    action TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    before_status TEXT,
    after_status TEXT,
    request_id TEXT,
    details TEXT
);
CREATE INDEX audit_events_entity_idx ON audit_events (entity_id, id);

CREATE TABLE idempotency_keys (
    scope TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    -- NULL while the first request is still running
    status_code INTEGER,
    response_body TEXT,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (scope, idem_key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
