//! HTTP routes, one module per resource. Handlers stay thin: parse → domain → store → respond.

pub mod ambassadors;
pub mod api_keys;
pub mod audit;
pub mod codes;
pub mod emails;
pub mod health;
pub mod imports;
pub mod me;
pub mod payouts;
pub mod portal;
pub mod program;
pub mod public;
pub mod referrals;
pub mod reports;
pub mod rewards;
pub mod team;
pub mod webhooks;

use actix_web::{middleware::from_fn, web};

use crate::http::{idempotency, rate_limit::limit_public};

/// Middleware runs outside in: the last `wrap` first. Public scopes count the request against
/// the client address's rate limit before anything else (so a flood never reaches the
/// database or the idempotency table), then resolve any bearer token, then idempotency.
pub fn configure(cfg: &mut web::ServiceConfig) {
    health::configure(cfg);
    for (path, routes) in
        [("/v1/public", public::configure as fn(&mut web::ServiceConfig)), ("/v1/portal", portal::configure)]
    {
        cfg.service(
            web::scope(path)
                .wrap(from_fn(idempotency::public))
                .wrap(from_fn(crate::auth::authenticate))
                .wrap(from_fn(limit_public))
                .configure(routes),
        );
    }
    cfg.service(
        web::scope("/v1")
            .wrap(from_fn(idempotency::authenticated))
            .wrap(from_fn(crate::auth::authenticate))
            .configure(me::configure)
            .configure(api_keys::configure)
            .configure(team::configure)
            .configure(ambassadors::configure)
            .configure(codes::configure)
            .configure(referrals::configure)
            .configure(program::configure)
            .configure(rewards::configure)
            .configure(payouts::configure)
            .configure(reports::configure)
            .configure(emails::configure)
            .configure(audit::configure)
            .configure(webhooks::configure)
            .configure(imports::configure),
    );
}
