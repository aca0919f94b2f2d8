//! Delivery with lettre: `file` (each message an `.eml` file, for development and for
//! machines without a mail server) or `smtp` (plain, STARTTLS or implicit TLS, optional
//! login, a timeout, pooled connections).

use std::path::PathBuf;
use std::time::Duration;

use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{MailTransport, Settings, SmtpTls};

pub enum Transport {
    File { transport: AsyncFileTransport<Tokio1Executor>, dir: PathBuf },
    Smtp { transport: AsyncSmtpTransport<Tokio1Executor>, server: String },
}

/// Why a send did not happen. Permanent failures (the server refused the recipient or the
/// message for good) are not retried.
#[derive(Debug, Clone)]
pub struct SendError {
    pub permanent: bool,
    pub message: String,
}

impl Transport {
    pub fn from_settings(settings: &Settings) -> Result<Self, String> {
        let email = &settings.email;
        match email.transport {
            MailTransport::File => {
                let dir = email.file_dir(&settings.data_dir);
                std::fs::create_dir_all(&dir).map_err(|e| format!("creating mail folder {}: {e}", dir.display()))?;
                Ok(Self::File { transport: AsyncFileTransport::new(&dir), dir })
            }
            MailTransport::Smtp => {
                let smtp = &email.smtp;
                let host = smtp.host.trim();
                let builder = match smtp.tls {
                    SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
                    SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                        .map_err(|e| format!("email.smtp: {e}"))?,
                    SmtpTls::Tls => {
                        AsyncSmtpTransport::<Tokio1Executor>::relay(host).map_err(|e| format!("email.smtp: {e}"))?
                    }
                };
                let mut builder = builder.port(smtp.port).timeout(Some(Duration::from_secs(smtp.timeout_secs.max(1))));
                if !smtp.username.is_empty() {
                    builder = builder.credentials(Credentials::new(smtp.username.clone(), smtp.password.clone()));
                }
                Ok(Self::Smtp { transport: builder.build(), server: format!("{host}:{}", smtp.port) })
            }
        }
    }

    /// Where mail goes, for the start-up log line.
    pub fn describe(&self) -> String {
        match self {
            Self::File { dir, .. } => format!("file:{}", dir.display()),
            Self::Smtp { server, .. } => format!("smtp:{server}"),
        }
    }

    pub async fn send(&self, message: Message) -> Result<(), SendError> {
        match self {
            Self::File { transport, .. } => transport
                .send(message)
                .await
                .map(drop)
                .map_err(|e| SendError { permanent: false, message: format!("writing the e-mail file: {e}") }),
            Self::Smtp { transport, .. } => transport
                .send(message)
                .await
                .map(drop)
                .map_err(|e| SendError { permanent: e.is_permanent(), message: format!("SMTP: {e}") }),
        }
    }
}
