DROP TRIGGER rewards_tally_delete;
DROP TRIGGER rewards_tally_update;
DROP TRIGGER rewards_tally_insert;
DROP TRIGGER referrals_tally_delete;
DROP TRIGGER referrals_tally_update;
DROP TRIGGER referrals_tally_insert;
DROP TABLE ambassador_tallies;
