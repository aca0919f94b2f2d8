ALTER TABLE referral_codes ALTER COLUMN normalized TYPE TEXT COLLATE "default";
ALTER TABLE ambassadors ALTER COLUMN email TYPE TEXT COLLATE "default";
DROP INDEX ambassadors_name_key_idx;
ALTER TABLE ambassadors DROP COLUMN name_key;
DROP TABLE referral_search_keys;
