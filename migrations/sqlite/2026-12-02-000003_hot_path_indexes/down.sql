DROP INDEX rewards_ambassador_earned_idx;
DROP INDEX rewards_ambassador_idx;
CREATE INDEX rewards_ambassador_idx ON rewards (ambassador_id, state);
DROP INDEX referrals_ambassador_status_idx;
