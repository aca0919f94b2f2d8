-- Data at rest (#11): stored idempotent replies know which request claimed them and which
-- referral they concern (so erasure can scrub them); lookups by request id and by the
-- login links of one ambassador stay cheap.
ALTER TABLE idempotency_keys ADD COLUMN request_id TEXT;
ALTER TABLE idempotency_keys ADD COLUMN subject_id TEXT;
CREATE INDEX idempotency_keys_subject_idx ON idempotency_keys (subject_id);
CREATE INDEX audit_events_request_idx ON audit_events (request_id);
CREATE INDEX portal_login_tokens_ambassador_idx ON portal_login_tokens (ambassador_id, created_at);
