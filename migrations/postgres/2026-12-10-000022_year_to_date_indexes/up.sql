-- A completion's year to date (store::rewards::year_to_date: the ambassador's earning
-- completions of the year, and their rewards of the year) read from these two indexes alone
-- (index-only scans where the visibility map allows). Before, each matching row cost a heap
-- fetch for the columns the index lacked, so a completion cost more the more the ambassador
-- had completed that year. Same key columns: every other query that used them still does.
DROP INDEX referrals_ambassador_status_idx;
CREATE INDEX referrals_ambassador_status_idx ON referrals (ambassador_id, status, completed_on) INCLUDE (earns, id);
DROP INDEX rewards_ambassador_earned_idx;
CREATE INDEX rewards_ambassador_earned_idx ON rewards (ambassador_id, earned_on) INCLUDE (kind, state, amount_minor);
