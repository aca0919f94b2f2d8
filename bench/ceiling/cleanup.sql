-- Removes what the ceiling runs wrote (both databases).
DELETE FROM email_outbox WHERE dedupe_key LIKE 'ceiling:%';
DELETE FROM audit_events WHERE action = 'bench.ceiling';
DELETE FROM referrals WHERE id LIKE 'ceil-%';
DROP TABLE IF EXISTS bench_codes;
