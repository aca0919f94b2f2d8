-- Hot paths at scale (#14): an ambassador's referral counts by status and their year of
-- completions (tiers) are read from one index, not from every referral row; the balance is
-- summed from the rewards index alone (state, hold and amount are in it); the annual cap's
-- year of rewards is a range of the ambassador's index, not all their rewards. Plans before
-- and after: bench/results/PROFILE.md.
CREATE INDEX referrals_ambassador_status_idx ON referrals (ambassador_id, status, completed_on);
DROP INDEX rewards_ambassador_idx;
CREATE INDEX rewards_ambassador_idx ON rewards (ambassador_id, state, holds_until, amount_minor);
CREATE INDEX rewards_ambassador_earned_idx ON rewards (ambassador_id, earned_on);
