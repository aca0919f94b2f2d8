//! The use cases: one function per thing a person does, shared by the JSON routes and the
//! pages (neither imports the other). Each opens its transaction, loads through the store,
//! applies the domain rule, writes, audits and queues its notices.

pub mod input;
pub mod portal;
pub mod public;
pub mod team;
