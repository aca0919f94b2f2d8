-- pgbench: the record-a-referral transaction straight to PostgreSQL — code lookup, duplicate
-- check, insert referral, audit row, outbox row. `bench_codes` (n → normalized code) lets a
-- client pick a random existing code in the same single indexed read. The duplicate check is
-- written so both partial unique indexes serve it (the service's `email_key = ? OR phone_key = ?
-- ... ORDER BY id LIMIT 1` scans the table: see bench/results/PROFILE.md). Rows are tagged and
-- deleted after the run.
\set a random(1, :ncodes)
\set r random(1, 4000000000000000)
BEGIN;
SELECT rc.id AS code_id, rc.ambassador_id AS amb FROM bench_codes b JOIN referral_codes rc ON rc.normalized = b.normalized WHERE b.n = :a \gset
SELECT min(id) FROM (SELECT id FROM referrals WHERE email_key = 'ceil-' || :client_id || '-' || :r AND status NOT IN ('cancelled', 'rejected') UNION ALL SELECT id FROM referrals WHERE phone_key = 'none' AND status NOT IN ('cancelled', 'rejected')) AS live WHERE id <> '';
INSERT INTO referrals (id, ambassador_id, code_id, submitted_code, status, source, client_first_name, client_last_name, client_email, notes, email_key, share_name_with_ambassador, registered_at, updated_at) VALUES ('ceil-' || :client_id || '-' || :r, :amb, :code_id, 'CODE', 'registered', 'staff', 'Load', 'Test', 'ceil@load.example', 'bench-ceiling', 'ceil-' || :client_id || '-' || :r, TRUE, LOCALTIMESTAMP, LOCALTIMESTAMP);
INSERT INTO audit_events (id, occurred_at, actor_type, actor_id, actor_role, action, entity_type, entity_id, after_status, details) VALUES (gen_random_uuid()::text, LOCALTIMESTAMP, 'api_key', 'bench', 'staff', 'bench.ceiling', 'referral', 'ceil-' || :client_id || '-' || :r, 'registered', '{"source":"staff"}');
INSERT INTO email_outbox (id, dedupe_key, template, to_address, payload, status, next_attempt_at, created_at) VALUES (gen_random_uuid()::text, 'ceiling:' || :client_id || '-' || :r, 'referral_registered', 'amb@bench.example', '{}', 'queued', LOCALTIMESTAMP + interval '1 day', LOCALTIMESTAMP) ON CONFLICT (dedupe_key) DO NOTHING;
COMMIT;
