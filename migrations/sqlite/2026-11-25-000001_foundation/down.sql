DROP TABLE idempotency_keys;
DROP TABLE audit_events;
DROP TABLE referral_codes;
DROP TABLE ambassadors;
DROP TABLE api_keys;
