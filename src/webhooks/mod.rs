//! Webhook delivery: the HTTP client that signs and sends one delivery (no redirects, a
//! timeout, the response read up to 1 KiB, private addresses refused by its resolver) and the
//! background worker that claims due deliveries and records each attempt.

pub mod client;
pub mod worker;
