-- The console's search box (#13): one query finds clients (name, e-mail, phone digits, the
-- clinic's id) and ambassadors (name, e-mail, code) by prefix, always through an index. The
-- keys are written by the service (`domain::search`: lower-cased, spaces collapsed, a phone's
-- digits reversed so that its last digits are a prefix) and searched with ranges
-- (`key >= 'ann' AND key < 'ano'`). A client's keys live in their own table (one row per
-- client, gone with the personal data on erasure).
-- COLLATE "C": a range compares bytes, as on SQLite, whatever the database's locale (under a
-- language collation such as en_US the range of a prefix may miss keys with that prefix or
-- hold others). The searched ambassador e-mail and code columns get it too: equality, hence
-- uniqueness, is the same under every deterministic collation.
CREATE TABLE referral_search_keys (
    referral_id TEXT PRIMARY KEY NOT NULL REFERENCES referrals (id),
    -- "first last" and "last first"
    name_key TEXT COLLATE "C" NOT NULL,
    reversed_name_key TEXT COLLATE "C",
    email TEXT COLLATE "C",
    -- the digits of '+14155550100' from last to first: '00105555141'
    phone_digits_reversed TEXT COLLATE "C",
    external_ref_key TEXT COLLATE "C"
);
CREATE INDEX referral_search_keys_name_idx ON referral_search_keys (name_key);
CREATE INDEX referral_search_keys_reversed_name_idx ON referral_search_keys (reversed_name_key);
CREATE INDEX referral_search_keys_email_idx ON referral_search_keys (email);
CREATE INDEX referral_search_keys_phone_idx ON referral_search_keys (phone_digits_reversed);
CREATE INDEX referral_search_keys_external_ref_idx ON referral_search_keys (external_ref_key);

INSERT INTO referral_search_keys
    (referral_id, name_key, reversed_name_key, email, phone_digits_reversed, external_ref_key)
SELECT id,
       lower(trim(client_first_name || ' ' || coalesce(client_last_name, ''))),
       CASE WHEN client_last_name IS NULL THEN NULL ELSE lower(client_last_name || ' ' || client_first_name) END,
       client_email,
       reverse(substr(client_phone, 2)),
       lower(external_ref)
FROM referrals WHERE erased_at IS NULL AND client_first_name IS NOT NULL;

ALTER TABLE ambassadors ADD COLUMN name_key TEXT COLLATE "C";
UPDATE ambassadors SET name_key = lower(name);
CREATE INDEX ambassadors_name_key_idx ON ambassadors (name_key);
ALTER TABLE ambassadors ALTER COLUMN email TYPE TEXT COLLATE "C";
ALTER TABLE referral_codes ALTER COLUMN normalized TYPE TEXT COLLATE "C";
