-- The console's search box (#13): one query finds clients (name, e-mail, phone digits, the
-- clinic's id) and ambassadors (name, e-mail, code) by prefix, always through an index. The
-- keys are written by the service (`domain::search`: lower-cased, spaces collapsed, a phone's
-- digits reversed so that its last digits are a prefix) and searched with ranges
-- (`key >= 'ann' AND key < 'ano'`), compared byte by byte (BINARY here, COLLATE "C" on
-- PostgreSQL) so that a range holds exactly the keys with the prefix. A client's keys live in
-- their own table (one row per client, gone with the personal data on erasure).
-- Existing rows get keys lower-cased by SQLite's lower() (ASCII letters only); new and edited
-- rows get the service's Unicode lower-casing.
CREATE TABLE referral_search_keys (
    referral_id TEXT PRIMARY KEY NOT NULL REFERENCES referrals (id),
    -- "first last" and "last first"
    name_key TEXT NOT NULL,
    reversed_name_key TEXT,
    email TEXT,
    -- the digits of '+14155550100' from last to first: '00105555141'
    phone_digits_reversed TEXT,
    external_ref_key TEXT
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
       (WITH RECURSIVE r(i, out) AS (
            SELECT length(client_phone), ''
            UNION ALL
            SELECT i - 1, out || substr(client_phone, i, 1) FROM r WHERE i > 1
        )
        SELECT out FROM r WHERE i = 1 AND client_phone IS NOT NULL),
       lower(external_ref)
FROM referrals WHERE erased_at IS NULL AND client_first_name IS NOT NULL;

ALTER TABLE ambassadors ADD COLUMN name_key TEXT;
UPDATE ambassadors SET name_key = lower(name);
CREATE INDEX ambassadors_name_key_idx ON ambassadors (name_key);
