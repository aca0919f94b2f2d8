-- PostgreSQL only, after cleanup.sql ran without triggers (session_replication_role =
-- replica): the ambassadors' running totals counted again, as their migration does, so the
-- ceiling's deleted referrals are no longer counted.
BEGIN;
DELETE FROM ambassador_tallies;
INSERT INTO ambassador_tallies (ambassador_id, tally, n)
SELECT ambassador_id, status, count(*) FROM referrals
WHERE ambassador_id IS NOT NULL GROUP BY ambassador_id, status
UNION ALL
SELECT ambassador_id, 'visible:' || status, count(*) FROM referrals
WHERE ambassador_id IS NOT NULL AND (source <> 'public_form' OR treatment_started_at IS NOT NULL)
GROUP BY ambassador_id, status
UNION ALL
SELECT ambassador_id, 'reward:' || state, sum(amount_minor) FROM rewards
WHERE state <> 'voided' GROUP BY ambassador_id, state;
COMMIT;
