//! Sends one signed delivery. Standard Webhooks headers: `webhook-id` (the event's id, the
//! same on every retry), `webhook-timestamp` (this attempt, Unix seconds) and
//! `webhook-signature` (`v1,<base64>`, one per signing secret, space-separated).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::domain::webhook::{self, SigningSecret, WebhookUrl};

/// What one attempt got back.
#[derive(Debug, Default)]
pub struct Response {
    pub status_code: Option<u16>,
    /// The first 1 KiB of the body.
    pub body: Option<String>,
    /// Why there is no usable response (or why a response does not count).
    pub error: Option<String>,
    pub duration_ms: i64,
}

pub struct Client {
    http: reqwest::Client,
    allow_private: bool,
    timeout_secs: u64,
}

/// Resolves like the system does, then refuses a name with any address that is not public:
/// asked at every connection, so a name that changes its address after the endpoint was
/// saved still cannot reach the clinic's own network.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|a| !webhook::is_public(a.ip())) {
                let message = format!("{host} resolves to {}, which is not a public address", bad.ip());
                return Err(message.into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

impl Client {
    pub fn new(timeout: Duration, allow_private: bool) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .no_proxy()
            .user_agent(concat!("Vouch-Webhooks/", env!("CARGO_PKG_VERSION")));
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        let http = builder.build().map_err(|e| format!("webhook HTTP client: {e}"))?;
        Ok(Self { http, allow_private, timeout_secs: timeout.as_secs() })
    }

    /// Signs `body` with every secret and POSTs it to `url`.
    pub async fn send(&self, url: &str, event_id: &str, body: &str, secrets: &[SigningSecret]) -> Response {
        let started = Instant::now();
        let mut response = self.try_send(url, event_id, body, secrets).await;
        response.duration_ms = started.elapsed().as_millis() as i64;
        response
    }

    async fn try_send(&self, url: &str, event_id: &str, body: &str, secrets: &[SigningSecret]) -> Response {
        let refused = |error: String| Response { error: Some(error), ..Response::default() };
        let parsed = match WebhookUrl::parse(url) {
            Ok(parsed) => parsed,
            Err(e) => return refused(format!("the endpoint URL {e}")),
        };
        // A literal address never reaches the resolver: check it here.
        if let Some(ip) = parsed.ip_literal().filter(|ip| !self.allow_private && !webhook::is_public(*ip)) {
            return refused(format!("{ip} is not a public address"));
        }
        let timestamp = chrono::Utc::now().timestamp();
        let signature = webhook::signature_header(secrets, event_id, timestamp, body.as_bytes());
        let sent = self
            .http
            .post(parsed.as_str())
            .header("content-type", "application/json")
            .header("webhook-id", event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body.to_owned())
            .send()
            .await;
        let mut res = match sent {
            Ok(res) => res,
            Err(e) if e.is_timeout() => {
                return refused(format!("no answer within {} s (timed out)", self.timeout_secs))
            }
            Err(e) => return refused(describe(&e)),
        };
        let status = res.status();
        let mut kept = Vec::new();
        let mut error = None;
        while kept.len() < webhook::MAX_RESPONSE_BYTES {
            match res.chunk().await {
                Ok(Some(chunk)) => kept.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) if e.is_timeout() => {
                    error = Some(format!("the response did not finish within {} s (timed out)", self.timeout_secs));
                    break;
                }
                Err(e) => {
                    error = Some(describe(&e));
                    break;
                }
            }
        }
        if status.is_redirection() {
            let to = res.headers().get("location").and_then(|l| l.to_str().ok()).unwrap_or("?");
            error =
                Some(format!("the endpoint redirected (HTTP {}) to {to}; redirects are not followed", status.as_u16()));
        }
        Response { status_code: Some(status.as_u16()), body: Some(webhook::clip_body(&kept)), error, duration_ms: 0 }
    }
}

/// An error with its causes ("error sending request: … : 10.0.0.1 is not a public address").
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.chars().take(1000).collect()
}
