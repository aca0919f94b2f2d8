DROP TABLE rewards;
DROP TABLE payout_lines;
DROP TABLE payouts;
DROP TABLE program_versions;
