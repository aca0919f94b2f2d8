//! The mail worker: a background task started with the server that claims due outbox rows,
//! renders and sends them, and records each outcome — sent; queued again after an
//! exponential backoff; or `failed` with the last error once the tries are used up (or the
//! error is permanent: an unknown template, a refused recipient). It stops with the server:
//! no new claims, the e-mail in flight finishes, claimed rows not yet tried are given back.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use tokio::sync::watch;

use crate::config::{EmailSettings, Settings};
use crate::db::{now, DbConnection, DbPool, TaskError};
use crate::email::templates::{Brand, Renderer};
use crate::email::transport::Transport;
use crate::email::{compose, scrubbed};
use crate::http::metrics::Metrics;
use crate::store::outbox::{self, OutboxRow};

pub struct Worker {
    pool: DbPool,
    transport: Transport,
    renderer: Renderer,
    settings: EmailSettings,
    metrics: Arc<Metrics>,
}

/// The delay before try `attempts + 1`: `base * 2^(attempts - 1)`, capped.
pub fn backoff(settings: &EmailSettings, attempts: i32) -> Duration {
    let exponent = attempts.saturating_sub(1).clamp(0, 30) as u32;
    let ms = settings.retry_base_ms.saturating_mul(1u64 << exponent);
    Duration::from_millis(ms.min(settings.retry_max_secs.saturating_mul(1000)))
}

impl Worker {
    pub fn new(pool: DbPool, settings: &Settings, metrics: Arc<Metrics>) -> Result<Self, String> {
        let renderer = Renderer::new(Brand {
            name: settings.email.brand_name.clone(),
            public_url: settings.public_url(),
            terms_url: settings.email.terms_url.trim().to_owned(),
        });
        Ok(Self {
            pool,
            transport: Transport::from_settings(settings)?,
            renderer,
            settings: settings.email.clone(),
            metrics,
        })
    }

    /// Runs until `stop` turns true (or its sender is dropped).
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        tracing::info!(transport = %self.transport.describe(), "mail worker started");
        let poll = Duration::from_millis(self.settings.poll_interval_ms);
        'outer: while !*stop.borrow() {
            let claimed = match self.claim().await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, "mail worker could not claim e-mails");
                    Vec::new()
                }
            };
            let full = claimed.len() as i64 >= self.settings.batch_size;
            let mut rows = claimed.into_iter();
            while let Some(row) = rows.next() {
                self.deliver(row).await;
                if *stop.borrow() {
                    let rest: Vec<(String, i32)> = rows.map(|r| (r.id, r.attempts)).collect();
                    if let Err(e) = self.db(move |c| outbox::release(c, &rest)).await {
                        tracing::warn!(error = %e, "claimed e-mails not given back; they are retried when the claim lapses");
                    }
                    break 'outer;
                }
            }
            if full {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                changed = stop.changed() => if changed.is_err() { break },
            }
        }
        tracing::info!("mail worker stopped");
    }

    async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut DbConnection) -> diesel::QueryResult<T> + Send + 'static,
    ) -> Result<T, String> {
        crate::db::blocking(&self.pool, move |c| Ok::<_, TaskError>(f(c)?)).await.map_err(|e| e.to_string())
    }

    async fn claim(&self) -> Result<Vec<OutboxRow>, String> {
        let limit = self.settings.batch_size;
        let lease = TimeDelta::seconds(self.settings.lease_secs as i64);
        self.db(move |c| outbox::claim(c, limit, lease)).await
    }

    /// Renders and sends one claimed row and records the outcome.
    async fn deliver(&self, row: OutboxRow) {
        let id = row.id.clone();
        let template = row.template.clone();
        let attempts = row.attempts;
        // Rows of a batch are sent one after another: extend the claim on this one first, and
        // skip it if the claim lapsed meanwhile and another instance took it over.
        let until = now() + TimeDelta::seconds(self.settings.lease_secs as i64);
        let renew_id = id.clone();
        match self.db(move |c| outbox::renew(c, &renew_id, attempts, until)).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(email_id = %id, "claim lapsed and was taken over; not sending");
                return;
            }
            Err(e) => {
                tracing::warn!(email_id = %id, error = %e, "could not extend the claim; leaving the e-mail for later");
                return;
            }
        }
        let outcome = self.send(row).await;
        let recorded = match outcome {
            Ok(kept_payload) => {
                self.metrics.email_sent();
                tracing::info!(email_id = %id, %template, attempts, "e-mail sent");
                let id = id.clone();
                self.db(move |c| outbox::mark_sent(c, &id, attempts, &kept_payload)).await
            }
            Err(e) if e.permanent || attempts >= self.settings.max_attempts => {
                self.metrics.email_failed();
                tracing::warn!(email_id = %id, %template, attempts, error = %e.message, "e-mail failed for good");
                let id = id.clone();
                self.db(move |c| outbox::mark_failed(c, &id, attempts, &e.message)).await
            }
            Err(e) => {
                let delay = backoff(&self.settings, attempts);
                let next_at = now() + TimeDelta::from_std(delay).unwrap_or(TimeDelta::hours(1));
                tracing::warn!(email_id = %id, %template, attempts, retry_in_ms = delay.as_millis() as u64,
                    error = %e.message, "e-mail not sent; will retry");
                let id = id.clone();
                self.db(move |c| outbox::schedule_retry(c, &id, attempts, &e.message, next_at)).await
            }
        };
        if let Err(e) = recorded {
            // The row stays `sending` until its lease lapses, then is tried again.
            tracing::error!(email_id = %id, error = %e, "could not record the e-mail's outcome");
        }
    }

    /// Sends a row; on success returns the payload to keep (secrets removed).
    async fn send(&self, row: OutboxRow) -> Result<serde_json::Value, super::transport::SendError> {
        let permanent = |message: String| super::transport::SendError { permanent: true, message };
        let payload: serde_json::Value =
            serde_json::from_str(&row.payload).map_err(|e| permanent(format!("payload is not JSON: {e}")))?;
        let rendered = self.renderer.render(&row.template, &payload).map_err(|e| permanent(e.to_string()))?;
        let message = compose(&self.settings, &row.id, &row.to_address, rendered).map_err(permanent)?;
        self.transport.send(message).await?;
        Ok(scrubbed(&payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut s = Settings::defaults().email;
        s.retry_base_ms = 1000;
        s.retry_max_secs = 10;
        let secs: Vec<u64> = (1..=6).map(|a| backoff(&s, a).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 10, 10]);
        assert_eq!(backoff(&s, 1000).as_secs(), 10);
    }
}
