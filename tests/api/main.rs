//! One integration-test binary: the real server on port 0 over HTTP, against a fresh SQLite
//! file per test, or a fresh PostgreSQL database per test when `VOUCH_TEST_DATABASE_URL` is set.

mod helpers;
mod mail;
mod smtp;

mod ambassadors;
mod api_keys;
mod audit;
mod auth_cache;
mod browser;
mod calendar;
mod cli;
mod codes;
mod console;
mod console_admin;
mod console_ambassadors;
mod console_ambassadors_browser;
mod console_browser;
mod console_payouts;
mod console_referrals;
mod console_referrals_browser;
mod console_reports;
mod console_staff;
mod console_staff_browser;
mod console_webhooks;
mod console_webhooks_browser;
mod crash;
mod edge;
mod emails;
mod errors;
mod idempotency;
mod layout;
mod migrations;
mod money_support;
mod openapi;
mod ops;
mod payout_lock;
mod payouts;
mod portal;
mod public;
mod recovery;
mod referrals;
mod rewards;
mod team;
mod web;
mod webhooks;
