//! The mail worker: a background task started with the server that claims due outbox rows,
//! renders and sends them, and records each outcome — sent; queued again after an
//! exponential backoff; or `failed` with the last error once the tries are used up (or the
//! error is permanent: an unknown template, a refused recipient). It stops with the server:
//! no new claims, the e-mail in flight finishes, claimed rows not yet tried are given back.

use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDateTime, TimeDelta};
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

/// Whether a claim lapsing at `lease_ends` may run out during a send starting at `at`: less
/// than half of `lease` is left, or less than `send_budget` (the longest a send may take). The
/// worker then extends it before sending.
fn claim_runs_short(
    at: NaiveDateTime,
    (lease, send_budget): (TimeDelta, TimeDelta),
    lease_ends: NaiveDateTime,
) -> bool {
    at + (lease / 2).max(send_budget) >= lease_ends
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
            // The claim lapses `lease` after this, or a little earlier than the rows say.
            let lease_ends = now() + self.lease();
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
                self.deliver(row, lease_ends).await;
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

    fn lease(&self) -> TimeDelta {
        TimeDelta::seconds(self.settings.lease_secs as i64)
    }

    async fn claim(&self) -> Result<Vec<OutboxRow>, String> {
        let (limit, lease) = (self.settings.batch_size, self.lease());
        self.db(move |c| outbox::claim(c, limit, lease)).await
    }

    /// Renders and sends one claimed row and records the outcome. `lease_ends`: when the
    /// claim on the row (made with its batch) lapses.
    async fn deliver(&self, row: OutboxRow, lease_ends: NaiveDateTime) {
        let id = row.id.clone();
        let template = row.template.clone();
        let attempts = row.attempts;
        // Rows of a batch are sent one after another. While more of the claim is left than a
        // send may take (some ten SMTP commands, each within its timeout, twice over), nobody
        // else can have taken the row over and the send ends within it: no statement needed.
        // Later on, extend the claim on this row first, and skip it if the claim lapsed
        // meanwhile and another instance took it over.
        let budget = TimeDelta::seconds(20 * self.settings.smtp.timeout_secs as i64);
        if claim_runs_short(now(), (self.lease(), budget), lease_ends) && !self.renew(&id, attempts).await {
            return;
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

    /// Extends the claim on a row about to be sent; `false`: do not send it (taken over, or
    /// the claim could not be extended).
    async fn renew(&self, id: &str, attempts: i32) -> bool {
        let (renew_id, until) = (id.to_owned(), now() + self.lease());
        match self.db(move |c| outbox::renew(c, &renew_id, attempts, until)).await {
            Ok(true) => true,
            Ok(false) => {
                tracing::info!(email_id = %id, "claim lapsed and was taken over; not sending");
                false
            }
            Err(e) => {
                tracing::warn!(email_id = %id, error = %e, "could not extend the claim; leaving the e-mail for later");
                false
            }
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
    fn a_claim_is_extended_only_once_a_send_might_outlast_it() {
        let secs = TimeDelta::seconds;
        let claimed = now();
        // The defaults: a 300 s claim, 200 s for a send (20 × the 10 s SMTP timeout).
        let ends = claimed + secs(300);
        assert!(!claim_runs_short(claimed, (secs(300), secs(200)), ends));
        assert!(!claim_runs_short(claimed + secs(99), (secs(300), secs(200)), ends));
        assert!(claim_runs_short(claimed + secs(100), (secs(300), secs(200)), ends));
        assert!(claim_runs_short(ends + secs(1), (secs(300), secs(200)), ends), "lapsed");
        // A long claim: extended once half of it has passed.
        let ends = claimed + secs(3600);
        assert!(!claim_runs_short(claimed + secs(1799), (secs(3600), secs(200)), ends));
        assert!(claim_runs_short(claimed + secs(1800), (secs(3600), secs(200)), ends));
        // A claim shorter than a send: always extended.
        assert!(claim_runs_short(claimed, (secs(1), secs(200)), claimed + secs(1)));
    }

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
