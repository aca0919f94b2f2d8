-- Imports find a referral they wrote before by the clinic's own client id (`external_ref`),
-- and otherwise by ambassador, registration time and client key in any status (the partial
-- unique indexes on the keys cover live referrals only).
CREATE INDEX referrals_external_ref_idx ON referrals (external_ref);
CREATE INDEX referrals_ambassador_registered_idx ON referrals (ambassador_id, registered_at);
