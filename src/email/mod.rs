//! E-mail: the templates of the notices that state changes queue in the outbox (which ones,
//! to whom, is `crate::app::notices`) ([`templates`]), the lettre transports ([`transport`])
//! and the background worker that delivers due outbox rows with retries ([`worker`]).

pub mod templates;
pub mod transport;
pub mod worker;

use lettre::message::{Mailbox, MultiPart};
use lettre::Message;

use crate::config::{EmailSettings, Settings};
use templates::Rendered;

/// What state changes need to address the e-mails they queue: the base URL for links, and
/// where staff alerts go (none when unset).
#[derive(Debug, Clone)]
pub struct MailContext {
    pub public_url: String,
    pub staff_alert_to: Option<String>,
}

impl MailContext {
    pub fn new(settings: &Settings) -> Self {
        Self { public_url: settings.public_url(), staff_alert_to: settings.email.staff_alert_to().map(str::to_owned) }
    }
}

/// Payload fields not kept once the e-mail is sent: secrets (a login link signs its holder
/// in) and how a referred client was named (personal data, and erasable).
const SENT_SCRUBBED_FIELDS: &[&str] = &["link", "client_label"];

/// The payload as kept after sending: secrets and client names replaced by a marker.
pub fn scrubbed(payload: &serde_json::Value) -> serde_json::Value {
    let mut out = payload.clone();
    if let Some(map) = out.as_object_mut() {
        for field in SENT_SCRUBBED_FIELDS {
            if let Some(v) = map.get_mut(*field) {
                *v = serde_json::Value::String("[removed after sending]".into());
            }
        }
    }
    out
}

/// Builds the MIME message: From, Reply-To, To, Subject, a Message-ID derived from the
/// outbox row (the same e-mail always carries the same id, so a receiving system can drop a
/// duplicate), and multipart/alternative plain text + HTML.
pub fn compose(settings: &EmailSettings, outbox_id: &str, to: &str, rendered: Rendered) -> Result<Message, String> {
    let from: Mailbox = settings.from.parse().map_err(|e| format!("email.from: {e}"))?;
    let to: Mailbox = to.parse().map_err(|e| format!("recipient {to:?}: {e}"))?;
    let domain = from.email.domain().to_owned();
    let mut builder = Message::builder()
        .from(from)
        .to(to)
        .subject(rendered.subject)
        .message_id(Some(format!("<{outbox_id}@{domain}>")));
    if !settings.reply_to.trim().is_empty() {
        builder = builder.reply_to(settings.reply_to.trim().parse().map_err(|e| format!("email.reply_to: {e}"))?);
    }
    builder
        .multipart(MultiPart::alternative_plain_html(rendered.text, rendered.html))
        .map_err(|e| format!("building the message: {e}"))
}
