//! The webhook worker: a background task started with the server, next to the mail worker
//! and under the same lease rules, that claims due deliveries (each the earliest unfinished
//! one about its record to its endpoint), sends them concurrently and records every attempt
//! (`app::webhooks::record`: delivered, retried with backoff, or failed; a long failure
//! streak disables the endpoint). It stops with the server once the batch in flight is done.

use std::time::Duration;

use chrono::TimeDelta;
use tokio::sync::watch;

use super::client::Client;
use crate::app::webhooks::{self, Attempt, Prepared, RetryPolicy, Setup};
use crate::config::Settings;
use crate::db::{now, DbConnection, DbPool};
use crate::email::MailContext;
use crate::store::webhooks as store;

pub struct Worker {
    pool: DbPool,
    client: Client,
    setup: Setup,
    policy: RetryPolicy,
    mail: MailContext,
    poll: Duration,
    batch_size: i64,
    lease: TimeDelta,
}

impl Worker {
    pub fn new(pool: DbPool, settings: &Settings) -> Result<Self, String> {
        let s = &settings.webhooks;
        Ok(Self {
            pool,
            client: Client::new(Duration::from_secs(s.timeout_secs), s.allow_private_addresses)?,
            setup: Setup::new(s),
            policy: RetryPolicy {
                max_attempts: s.max_attempts,
                base: Duration::from_millis(s.retry_base_ms),
                cap: Duration::from_secs(s.retry_max_secs),
                disable_after_failures: s.disable_after_failures,
                disable_after: TimeDelta::hours(i64::from(s.disable_after_hours)),
            },
            mail: MailContext::new(settings),
            poll: Duration::from_millis(s.poll_interval_ms),
            batch_size: s.batch_size,
            lease: TimeDelta::seconds(s.lease_secs as i64),
        })
    }

    /// Runs until `stop` turns true (or its sender is dropped).
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        tracing::info!("webhook worker started");
        while !*stop.borrow() {
            let claimed = match self.claim().await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook worker could not claim deliveries");
                    Vec::new()
                }
            };
            let full = claimed.len() as i64 >= self.batch_size;
            // Claimed deliveries are about different records (or endpoints): no order among them.
            futures_util::future::join_all(claimed.into_iter().map(|p| self.deliver(p))).await;
            if full {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.poll) => {}
                changed = stop.changed() => if changed.is_err() { break },
            }
        }
        tracing::info!("webhook worker stopped");
    }

    async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut DbConnection) -> crate::app::Result<T> + Send + 'static,
    ) -> Result<T, String> {
        crate::db::blocking(&self.pool, f).await.map_err(|e: crate::app::Error| e.to_string())
    }

    async fn claim(&self) -> Result<Vec<Prepared>, String> {
        let (setup, limit, lease) = (self.setup.clone(), self.batch_size, self.lease);
        self.db(move |c| webhooks::claim(c, &setup, limit, lease)).await
    }

    /// Sends one claimed delivery and records the attempt.
    async fn deliver(&self, prepared: Prepared) {
        let Prepared { delivery, url, secrets } = prepared;
        let (id, attempts) = (delivery.id.clone(), delivery.attempts);
        // Extend the claim first, and skip the delivery if it lapsed and was taken over.
        let until = now() + self.lease;
        let renew_id = id.clone();
        let renewed = self.db(move |c| Ok(store::renew(c, &renew_id, attempts, until)?)).await;
        match renewed {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(delivery_id = %id, "claim lapsed and was taken over; not sending");
                return;
            }
            Err(e) => {
                tracing::warn!(delivery_id = %id, error = %e, "could not extend the claim; leaving the delivery for later");
                return;
            }
        }
        let response = self.client.send(&url, &delivery.event_id, &delivery.payload, &secrets).await;
        tracing::info!(delivery_id = %id, event = %delivery.event_type, attempts, status = ?response.status_code,
            error = ?response.error, "webhook attempt");
        let (policy, mail) = (self.policy.clone(), self.mail.clone());
        let recorded = self
            .db(move |c| {
                let attempt = Attempt {
                    status_code: response.status_code,
                    response_body: response.body.as_deref(),
                    error: response.error.as_deref(),
                    duration_ms: response.duration_ms,
                };
                webhooks::record(c, &delivery, &attempt, &policy, &mail)
            })
            .await;
        if let Err(e) = recorded {
            // The delivery stays `sending` until its lease lapses, then is tried again.
            tracing::error!(delivery_id = %id, error = %e, "could not record the webhook attempt");
        }
    }
}
