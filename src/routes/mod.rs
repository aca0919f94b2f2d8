//! HTTP routes, one module per resource. Handlers stay thin: parse → domain → store → respond.

pub mod ambassadors;
pub mod api_keys;
pub mod audit;
pub mod codes;
pub mod emails;
pub mod health;
pub mod me;
pub mod payouts;
pub mod portal;
pub mod program;
pub mod public;
pub mod referrals;
pub mod reports;
pub mod rewards;

use actix_web::{middleware::from_fn, web};

use crate::http::{idempotency::idempotency, rate_limit::limit_public};

pub fn configure(cfg: &mut web::ServiceConfig) {
    health::configure(cfg);
    cfg.service(
        web::scope("/v1")
            .wrap(from_fn(idempotency))
            .wrap(from_fn(crate::auth::authenticate))
            .service(web::scope("/public").wrap(from_fn(limit_public)).configure(public::configure))
            .service(web::scope("/portal").wrap(from_fn(limit_public)).configure(portal::configure))
            .configure(me::configure)
            .configure(api_keys::configure)
            .configure(ambassadors::configure)
            .configure(codes::configure)
            .configure(referrals::configure)
            .configure(program::configure)
            .configure(rewards::configure)
            .configure(payouts::configure)
            .configure(reports::configure)
            .configure(emails::configure)
            .configure(audit::configure),
    );
}
