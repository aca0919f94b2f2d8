DROP INDEX referrals_ambassador_status_idx;
CREATE INDEX referrals_ambassador_status_idx ON referrals (ambassador_id, status, completed_on);
DROP INDEX rewards_ambassador_earned_idx;
CREATE INDEX rewards_ambassador_earned_idx ON rewards (ambassador_id, earned_on);
