DROP INDEX portal_login_tokens_ambassador_idx;
DROP INDEX audit_events_request_idx;
DROP INDEX idempotency_keys_subject_idx;
ALTER TABLE idempotency_keys DROP COLUMN subject_id;
ALTER TABLE idempotency_keys DROP COLUMN request_id;
