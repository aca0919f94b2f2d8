//! Delivery with lettre: `file` (each message an `.eml` file, for development and for
//! machines without a mail server) or `smtp` (plain, STARTTLS or implicit TLS, optional
//! login, a timeout, pooled connections).

use std::path::PathBuf;
use std::time::Duration;

use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{MailTransport, Settings, SmtpSettings, SmtpTls};

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

/// TLS for the SMTP host: its certificate is always verified, against the public web roots
/// plus the roots in `email.smtp.ca_file`, if set (read at start-up: a missing or unreadable
/// file stops the start rather than failing every e-mail later).
fn tls_parameters(smtp: &SmtpSettings) -> Result<TlsParameters, String> {
    let mut builder = TlsParameters::builder(smtp.host.trim().to_owned());
    let ca_file = smtp.ca_file.trim();
    if !ca_file.is_empty() {
        let pem = std::fs::read(ca_file).map_err(|e| format!("email.smtp.ca_file {ca_file:?}: {e}"))?;
        if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
            return Err(format!("email.smtp.ca_file {ca_file:?}: no PEM certificate in it"));
        }
        let roots = Certificate::from_pem(&pem).map_err(|e| format!("email.smtp.ca_file {ca_file:?}: {e}"))?;
        builder = builder.add_root_certificate(roots);
    }
    builder.build_rustls().map_err(|e| format!("email.smtp TLS: {e}"))
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
                let builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host);
                let builder = match smtp.tls {
                    SmtpTls::None => builder,
                    SmtpTls::Starttls => builder.tls(Tls::Required(tls_parameters(smtp)?)),
                    SmtpTls::Tls => builder.tls(Tls::Wrapper(tls_parameters(smtp)?)),
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
