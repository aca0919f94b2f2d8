//! Settings, layered: built-in defaults (`config/default.toml`, embedded), then
//! `config/default.toml` and `config/<VOUCH_ENV>.toml` from the working directory if present,
//! then environment variables `VOUCH__SECTION__KEY`.

use std::path::PathBuf;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

const EMBEDDED_DEFAULTS: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub log: LogSettings,
    pub rate_limit: RateLimitSettings,
    pub contact: ContactSettings,
    pub privacy: PrivacySettings,
    pub export: ExportSettings,
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
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: String,
    pub pool_size: u32,
    pub connect_timeout_secs: u64,
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
        if self.database.pool_size == 0 {
            return Err("database.pool_size must be at least 1".into());
        }
        if !self.public_url().starts_with("http://") && !self.public_url().starts_with("https://") {
            return Err("server.public_url must start with http:// or https://".into());
        }
        Ok(self)
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
