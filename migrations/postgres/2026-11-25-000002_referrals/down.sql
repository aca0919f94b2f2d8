DROP TABLE email_outbox;
DROP TABLE portal_sessions;
DROP TABLE portal_login_tokens;
DROP TABLE referral_sessions;
DROP TABLE referrals;
DROP TABLE app_secrets;
