DROP TABLE referral_sessions;
DROP TABLE referrals;
DROP TABLE app_secrets;
