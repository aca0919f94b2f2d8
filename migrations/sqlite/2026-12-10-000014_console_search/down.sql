DROP INDEX ambassadors_name_key_idx;
ALTER TABLE ambassadors DROP COLUMN name_key;
DROP TABLE referral_search_keys;
