-- The console's home: share-link referrals waiting for staff are counted and listed from one
-- index range (status, then source, newest id first) instead of every referral in the status.
CREATE INDEX referrals_status_source_idx ON referrals (status, source, id);
