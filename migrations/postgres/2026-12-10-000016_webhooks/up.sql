-- Webhooks (#15): endpoints admins register, and the transactional outbox of deliveries to
-- them (one row per event and endpoint, written in the transaction of the change), with every
-- attempt recorded. Signing secrets are sealed (AES-256-GCM under the instance key kept in
-- app_secrets), never stored in the clear: unlike API keys they cannot be only hashed, since
-- every delivery is signed with them.

CREATE TABLE webhook_endpoints (
    id TEXT PRIMARY KEY NOT NULL,
    url TEXT NOT NULL,
    description TEXT NOT NULL,
    -- space-separated event types, e.g. 'referral.completed reward.earned'
    events TEXT NOT NULL,
    enabled BOOLEAN NOT NULL,
    -- an admin marked it as the clinic's own staff system: payloads follow staff's view
    staff_system BOOLEAN NOT NULL,
    secret_sealed TEXT NOT NULL,
    -- the secret before the last rotation, still signing until previous_secret_expires_at
    previous_secret_sealed TEXT,
    previous_secret_expires_at TIMESTAMP,
    -- consecutive failed attempts, and since when (reset by a success)
    failure_streak INTEGER NOT NULL DEFAULT 0,
    failing_since TIMESTAMP,
    disabled_reason TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY NOT NULL,
    endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    -- the `webhook-id` header: the same on every retry and replay of this event
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    -- deliveries about one entity ('referral:<id>') go out in order, per endpoint
    entity_key TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'sending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP NOT NULL,
    last_status_code INTEGER,
    last_error TEXT,
    delivered_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL,
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_entity_idx ON webhook_deliveries (endpoint_id, entity_key, status);

CREATE TABLE webhook_attempts (
    id TEXT PRIMARY KEY NOT NULL,
    delivery_id TEXT NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    attempted_at TIMESTAMP NOT NULL,
    -- null when no response came (refused address, connection error, timeout)
    status_code INTEGER,
    -- the first 1 KiB of the response body
    response_body TEXT,
    error TEXT,
    duration_ms BIGINT NOT NULL
);
CREATE INDEX webhook_attempts_delivery_idx ON webhook_attempts (delivery_id, attempt);
