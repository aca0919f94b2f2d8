//! Prometheus metrics kept in process: requests by method, route pattern and status, a
//! latency histogram by route, and e-mails sent and failed by this instance's mail worker.
//! Rendered as text at `/metrics` (with the outbox depth, read from the database).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::domain::notice::EmailStatus;

const BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
    emails_sent: AtomicU64,
    emails_failed: AtomicU64,
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(String, String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
}

#[derive(Default)]
struct Histogram {
    /// Count per bucket (not cumulative; summed when rendered).
    buckets: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Metrics {
    pub fn observe_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *inner.requests.entry((method.to_owned(), route.to_owned(), status)).or_default() += 1;
        let h = inner.latency.entry(route.to_owned()).or_default();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            h.buckets[i] += 1;
        }
        h.sum += secs;
        h.count += 1;
    }

    pub fn email_sent(&self) {
        self.emails_sent.fetch_add(1, Ordering::Relaxed);
    }

    pub fn email_failed(&self) {
        self.emails_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// E-mail counters, and the outbox depth by status when the database answered.
    pub fn render_email(&self, outbox: Option<&[(String, i64)]>) -> String {
        let mut out = String::new();
        out.push_str("# HELP vouch_emails_sent_total E-mails sent by this instance.\n");
        out.push_str("# TYPE vouch_emails_sent_total counter\n");
        let _ = writeln!(out, "vouch_emails_sent_total {}", self.emails_sent.load(Ordering::Relaxed));
        out.push_str("# HELP vouch_emails_failed_total E-mails this instance gave up on (status failed).\n");
        out.push_str("# TYPE vouch_emails_failed_total counter\n");
        let _ = writeln!(out, "vouch_emails_failed_total {}", self.emails_failed.load(Ordering::Relaxed));
        if let Some(counts) = outbox {
            let count = |status: &str| counts.iter().filter(|(s, _)| s == status).map(|(_, n)| n).sum::<i64>();
            out.push_str("# HELP vouch_emails_queued E-mails waiting in the outbox (queued or being sent).\n");
            out.push_str("# TYPE vouch_emails_queued gauge\n");
            let _ = writeln!(
                out,
                "vouch_emails_queued {}",
                count(EmailStatus::Queued.as_str()) + count(EmailStatus::Sending.as_str())
            );
            out.push_str("# HELP vouch_email_outbox E-mails in the outbox by status (all instances).\n");
            out.push_str("# TYPE vouch_email_outbox gauge\n");
            for status in EmailStatus::ALL.map(EmailStatus::as_str) {
                let _ = writeln!(out, "vouch_email_outbox{{status=\"{status}\"}} {}", count(status));
            }
        }
        out
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        out.push_str("# HELP vouch_http_requests_total HTTP requests by method, route and status.\n");
        out.push_str("# TYPE vouch_http_requests_total counter\n");
        for ((method, route, status), n) in &inner.requests {
            let _ = writeln!(
                out,
                "vouch_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
                escape(method),
                escape(route)
            );
        }
        out.push_str("# HELP vouch_http_request_duration_seconds HTTP request latency by route.\n");
        out.push_str("# TYPE vouch_http_request_duration_seconds histogram\n");
        for (route, h) in &inner.latency {
            let route = escape(route);
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(h.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "vouch_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "vouch_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "vouch_http_request_duration_seconds_sum{{route=\"{route}\"}} {}", h.sum);
            let _ = writeln!(out, "vouch_http_request_duration_seconds_count{{route=\"{route}\"}} {}", h.count);
        }
        out
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.observe_request("GET", "/v1/x", 200, Duration::from_millis(3));
        m.observe_request("GET", "/v1/x", 200, Duration::from_millis(30));
        let text = m.render();
        assert!(text.contains("vouch_http_requests_total{method=\"GET\",route=\"/v1/x\",status=\"200\"} 2"));
        assert!(text.contains("le=\"0.005\"} 1"));
        assert!(text.contains("le=\"0.05\"} 2"));
        assert!(text.contains("vouch_http_request_duration_seconds_count{route=\"/v1/x\"} 2"));
    }

    #[test]
    fn renders_email_counters_and_outbox_depth() {
        let m = Metrics::default();
        m.email_sent();
        m.email_sent();
        m.email_failed();
        let text = m.render_email(Some(&[("queued".into(), 3), ("sending".into(), 1), ("sent".into(), 2)]));
        assert!(text.contains("vouch_emails_sent_total 2\n"));
        assert!(text.contains("vouch_emails_failed_total 1\n"));
        assert!(text.contains("vouch_emails_queued 4\n"));
        assert!(text.contains("vouch_email_outbox{status=\"failed\"} 0\n"));
        assert!(!m.render_email(None).contains("vouch_emails_queued"));
    }
}
