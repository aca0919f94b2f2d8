//! Vouch: referral and ambassador tracking for clinics.

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod email;
pub mod error;
pub mod extract;
pub mod http;
pub mod openapi;
pub mod routes;
pub mod startup;
pub mod store;
pub mod web;
pub mod webhooks;
