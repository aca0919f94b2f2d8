//! Settings, layered: built-in defaults (`config/default.toml`, embedded), then
//! `config/default.toml` and `config/<VOUCH_ENV>.toml` from the working directory if present,
//! then environment variables `VOUCH__SECTION__KEY`.

use std::path::PathBuf;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::domain::calendar::Calendar;

const EMBEDDED_DEFAULTS: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub server: ServerSettings,
    pub clinic: ClinicSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub log: LogSettings,
    pub rate_limit: RateLimitSettings,
    pub contact: ContactSettings,
    pub privacy: PrivacySettings,
    pub export: ExportSettings,
    pub email: EmailSettings,
    pub console: ConsoleSettings,
    pub webhooks: WebhookSettings,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub public_url: String,
    pub workers: usize,
    pub shutdown_timeout_secs: u64,
    pub trust_forwarded_for: bool,
    pub housekeeping_interval_secs: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClinicSettings {
    /// IANA zone name (`Europe/London`); the program's days and years follow it.
    pub time_zone: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: String,
    /// Connections for requests.
    pub pool_size: u32,
    /// Request connections kept open while idle (made at start-up); more are opened as
    /// requests need them, up to `pool_size`, and closed again after ten idle minutes.
    pub pool_min_idle: u32,
    /// Connections for background work (mail worker, housekeeping), apart from `pool_size`.
    pub background_pool_size: u32,
    pub connect_timeout_secs: u64,
    /// Where the short, hot reads run (see [`InlineReads`]).
    pub inline_reads: InlineReads,
}

/// Whether the short reads on the hot paths (a code lookup, an ambassador's detail, the
/// ambassador's own referrals) run on the HTTP worker thread that took the request, when a
/// connection is free at that moment, instead of being handed to a blocking thread and back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InlineReads {
    /// On for SQLite and for a PostgreSQL on this machine (`localhost`, a loopback address or a
    /// Unix socket); off for a PostgreSQL across the network.
    Auto,
    On,
    Off,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Seconds a verified API key or portal session is trusted without asking the database
    /// again (0: ask on every request). A revocation elsewhere takes at most this long here.
    pub cache_ttl_secs: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    pub public_per_minute: u32,
    pub login_emails_per_hour: u32,
}

/// The clinic's console (team members' sessions).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSettings {
    /// A session ends after this many minutes without a request.
    pub session_idle_minutes: u32,
    /// A session ends this many hours after sign-in, however busy.
    pub session_max_hours: u32,
    /// The staff home lists clients in treatment with no session for this many days.
    #[serde(default = "default_stale_after_days")]
    pub stale_after_days: u32,
}

fn default_stale_after_days() -> u32 {
    21
}

impl ConsoleSettings {
    pub fn session_policy(&self) -> crate::domain::team::SessionPolicy {
        crate::domain::team::SessionPolicy {
            idle: chrono::TimeDelta::minutes(i64::from(self.session_idle_minutes)),
            max: chrono::TimeDelta::hours(i64::from(self.session_max_hours)),
        }
    }

    fn validate(&self) -> Result<(), String> {
        if !(1..=24 * 60).contains(&self.session_idle_minutes) {
            return Err("console.session_idle_minutes must be between 1 and 1440".into());
        }
        if !(1..=24 * 31).contains(&self.session_max_hours) {
            return Err("console.session_max_hours must be between 1 and 744".into());
        }
        if !(1..=365).contains(&self.stale_after_days) {
            return Err("console.stale_after_days must be between 1 and 365".into());
        }
        Ok(())
    }
}

/// Webhook delivery (`[webhooks]`).
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Let endpoints reach loopback, private and link-local addresses (tests, on-premises
    /// receivers). Off: such URLs are refused when saved and when sent to.
    pub allow_private_addresses: bool,
    /// Seals signing secrets at rest; empty: a key generated once and kept in the database.
    #[serde(skip_serializing)]
    pub sealing_key: String,
    /// How long the previous secret keeps signing after a rotation.
    pub rotation_grace_hours: u32,
    /// Per attempt: connect, send and read the response.
    pub timeout_secs: u64,
    pub poll_interval_ms: u64,
    pub batch_size: i64,
    /// Tries before a delivery is marked failed (an admin can replay it).
    pub max_attempts: i32,
    /// First retry delay, doubled per failed try up to `retry_max_secs`, jittered.
    pub retry_base_ms: u64,
    pub retry_max_secs: u64,
    /// An endpoint is disabled (and the admins e-mailed) after this many failed attempts in a
    /// row, or after failing for `disable_after_hours` without a success.
    pub disable_after_failures: i32,
    pub disable_after_hours: u32,
    /// A delivery claimed by an instance that died mid-send is claimed again after this long.
    pub lease_secs: u64,
}

/// Leaves the sealing key out, so settings can be logged.
impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("allow_private_addresses", &self.allow_private_addresses)
            .field("sealing_key", &if self.sealing_key.is_empty() { "" } else { "***" })
            .field("rotation_grace_hours", &self.rotation_grace_hours)
            .field("timeout_secs", &self.timeout_secs)
            .field("max_attempts", &self.max_attempts)
            .field("disable_after_failures", &self.disable_after_failures)
            .field("disable_after_hours", &self.disable_after_hours)
            .finish_non_exhaustive()
    }
}

impl WebhookSettings {
    fn validate(&self) -> Result<(), String> {
        if self.max_attempts < 1
            || self.batch_size < 1
            || self.poll_interval_ms == 0
            || self.lease_secs == 0
            || self.timeout_secs == 0
            || self.disable_after_failures < 1
            || self.disable_after_hours == 0
        {
            return Err("webhooks: max_attempts, batch_size, poll_interval_ms, lease_secs, timeout_secs, \
                        disable_after_failures and disable_after_hours must be at least 1"
                .into());
        }
        if self.lease_secs <= self.timeout_secs {
            return Err("webhooks.lease_secs must be longer than webhooks.timeout_secs".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ContactSettings {
    pub default_country_code: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacySettings {
    pub contact_hash_key: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSettings {
    /// Rows per PayPal payouts file; PayPal's web upload takes at most 5000.
    pub paypal_rows_per_file: i64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSettings {
    pub transport: MailTransport,
    /// `Name <address>` or a bare address.
    pub from: String,
    /// Where replies go; empty: to `from`.
    pub reply_to: String,
    /// The clinic's name as e-mails show it.
    pub brand_name: String,
    /// Staff alerts (public referrals, applications) go here; empty: none are sent.
    pub staff_alert_to: String,
    /// Link to the programme terms in the welcome e-mail; empty: left out.
    pub terms_url: String,
    /// Folder for the `file` transport; empty: `<data_dir>/outbox`.
    pub file_dir: String,
    /// How often the worker looks for due e-mails.
    pub poll_interval_ms: u64,
    /// E-mails claimed per poll.
    pub batch_size: i64,
    /// Tries before an e-mail is marked `failed`.
    pub max_attempts: i32,
    /// First retry delay; doubled per failed try, up to `retry_max_secs`.
    pub retry_base_ms: u64,
    pub retry_max_secs: u64,
    /// An e-mail claimed by an instance that then died is claimed again after this long.
    pub lease_secs: u64,
    pub smtp: SmtpSettings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MailTransport {
    File,
    Smtp,
}

#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// Empty: no authentication.
    pub username: String,
    #[serde(skip_serializing)]
    pub password: String,
    pub timeout_secs: u64,
    /// PEM file of extra root certificates to trust for `starttls`/`tls` (a private relay's
    /// CA), on top of the public web roots; empty: the public roots only.
    pub ca_file: String,
}

/// Leaves the password out, so settings can be logged.
impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &if self.password.is_empty() { "" } else { "***" })
            .field("timeout_secs", &self.timeout_secs)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// `none`: plain text (local relays, tests); `starttls`: upgrade on port 587; `tls`: implicit
/// TLS on port 465.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    None,
    Starttls,
    Tls,
}

impl EmailSettings {
    /// Where the `file` transport writes `.eml` files.
    pub fn file_dir(&self, data_dir: &std::path::Path) -> PathBuf {
        if self.file_dir.trim().is_empty() {
            data_dir.join("outbox")
        } else {
            PathBuf::from(self.file_dir.trim())
        }
    }

    pub fn staff_alert_to(&self) -> Option<&str> {
        Some(self.staff_alert_to.trim()).filter(|a| !a.is_empty())
    }

    fn validate(&self) -> Result<(), String> {
        use lettre::message::Mailbox;
        self.from.parse::<Mailbox>().map_err(|e| format!("email.from {:?}: {e}", self.from))?;
        for (name, value) in [("reply_to", &self.reply_to), ("staff_alert_to", &self.staff_alert_to)] {
            if !value.trim().is_empty() {
                value.trim().parse::<Mailbox>().map_err(|e| format!("email.{name} {value:?}: {e}"))?;
            }
        }
        if self.max_attempts < 1 || self.batch_size < 1 || self.poll_interval_ms == 0 || self.lease_secs == 0 {
            return Err("email.max_attempts, batch_size, poll_interval_ms and lease_secs must be at least 1".into());
        }
        if self.transport == MailTransport::Smtp && self.smtp.host.trim().is_empty() {
            return Err("email.smtp.host is required with transport = \"smtp\"".into());
        }
        Ok(())
    }
}

impl Settings {
    /// Loads the layered configuration for `VOUCH_ENV` (default `local`).
    pub fn load() -> Result<Self, String> {
        let env = std::env::var("VOUCH_ENV").unwrap_or_else(|_| "local".into());
        Figment::from(Toml::string(EMBEDDED_DEFAULTS))
            .merge(Toml::file("config/default.toml"))
            .merge(Toml::file(format!("config/{env}.toml")))
            .merge(Env::prefixed("VOUCH__").split("__"))
            .extract::<Settings>()
            .map_err(|e| format!("configuration: {e}"))
            .and_then(Settings::validated)
    }

    /// The built-in defaults alone (tests start from these and override fields).
    pub fn defaults() -> Self {
        Figment::from(Toml::string(EMBEDDED_DEFAULTS))
            .extract::<Settings>()
            .expect("embedded config/default.toml is valid")
    }

    fn validated(self) -> Result<Self, String> {
        let cc = &self.contact.default_country_code;
        let is_calling_code = cc.len() <= 3 && cc.bytes().all(|b| b.is_ascii_digit()) && !cc.starts_with('0');
        if !cc.is_empty() && !is_calling_code {
            return Err(format!("contact.default_country_code must be 1-3 digits, got {cc:?}"));
        }
        if !(1..=5000).contains(&self.export.paypal_rows_per_file) {
            return Err("export.paypal_rows_per_file must be between 1 and 5000".into());
        }
        if self.database.pool_size == 0 || self.database.background_pool_size == 0 {
            return Err("database.pool_size and database.background_pool_size must be at least 1".into());
        }
        if self.database.pool_min_idle > self.database.pool_size {
            return Err("database.pool_min_idle must not be more than database.pool_size".into());
        }
        if !self.public_url().starts_with("http://") && !self.public_url().starts_with("https://") {
            return Err("server.public_url must start with http:// or https://".into());
        }
        self.calendar()?;
        self.email.validate()?;
        self.console.validate()?;
        self.webhooks.validate()?;
        Ok(self)
    }

    /// The clinic's calendar from `clinic.time_zone` (checked at start-up).
    pub fn calendar(&self) -> Result<Calendar, String> {
        Calendar::parse(&self.clinic.time_zone).map_err(|e| format!("clinic.time_zone: {e}"))
    }

    /// Base URL for links, without a trailing slash.
    pub fn public_url(&self) -> String {
        if self.server.public_url.trim().is_empty() {
            format!("http://{}:{}", self.server.host, self.server.port)
        } else {
            self.server.public_url.trim().trim_end_matches('/').to_owned()
        }
    }

    pub fn default_country_code(&self) -> Option<&str> {
        Some(self.contact.default_country_code.as_str()).filter(|c| !c.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::Settings;

    #[test]
    fn the_defaults_are_valid_and_a_pool_cannot_keep_more_idle_than_it_holds() {
        let defaults = Settings::defaults().validated().expect("the defaults are valid");
        assert!(defaults.database.pool_min_idle <= defaults.database.pool_size);
        let mut s = defaults;
        s.database.pool_min_idle = s.database.pool_size + 1;
        let refused = s.validated().expect_err("more idle connections than the pool holds");
        assert!(refused.contains("database.pool_min_idle"), "{refused}");
    }
}
