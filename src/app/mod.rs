//! The use cases: one function per thing a person does, shared by the JSON routes and the
//! pages (neither imports the other). Each opens its transaction, loads through the store,
//! applies the domain rule, writes, audits and queues its notices.

pub mod ambassadors;
pub mod api_keys;
pub mod audit;
pub mod codes;
pub mod error;
pub mod imports;
pub mod input;
pub mod ledger;
pub mod notices;
pub mod outbox;
pub mod payout_files;
pub mod payouts;
pub mod portal;
pub mod program;
pub mod public;
pub mod referrals;
pub mod reports;
pub mod rewards;
pub mod search;
pub mod team;
pub mod webhooks;

pub use error::{Error, Result};
