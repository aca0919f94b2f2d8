//! API keys: `vk_live_<40 base62>` secrets of which only a SHA-256 hash and a display prefix
//! are stored, and the roles they carry.

use rand::distributions::Alphanumeric;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const KEY_PREFIX: &str = "vk_live_";
const SECRET_LEN: usize = 40;

super::text_enum! {
    #[derive(Serialize, Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum Role {
        Admin = "admin",
        Staff = "staff",
        Finance = "finance",
    }
}

/// The longest name a key may have.
pub const NAME_MAX: usize = 100;

/// A key to create, parsed: what it is for, and the role it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    pub name: String,
    pub role: Role,
}

impl NewKey {
    /// Every bad field at once (`role`: as the caller read it, e.g. from a form).
    pub fn parse(name: &str, role: Result<Role, String>) -> Result<Self, super::DomainError> {
        let mut v = super::Validation::new();
        let name = v.check("name", super::required_text(name, NAME_MAX));
        let role = v.check("role", role);
        v.finish()?;
        Ok(Self { name: name.expect("validated"), role: role.expect("validated") })
    }
}

/// A freshly generated key: the secret is shown once and never stored.
pub struct NewSecret {
    pub secret: String,
    pub hash: String,
    pub prefix: String,
}

pub fn generate() -> NewSecret {
    let random: String = rand::rngs::OsRng.sample_iter(&Alphanumeric).take(SECRET_LEN).map(char::from).collect();
    let secret = format!("{KEY_PREFIX}{random}");
    NewSecret { hash: hash(&secret), prefix: secret[..KEY_PREFIX.len() + 6].to_owned(), secret }
}

/// 32 random bytes, base64url: the secret of a login link or a session.
pub fn random_token() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// SHA-256 hex of a presented secret. Keys are high-entropy random strings, so a fast hash
/// is enough (no password-stretching needed) and lookups stay cheap on every request.
pub fn hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_prefix_and_hash_matches() {
        let k = generate();
        assert!(k.secret.starts_with(KEY_PREFIX));
        assert_eq!(k.secret.len(), KEY_PREFIX.len() + SECRET_LEN);
        assert!(k.secret[KEY_PREFIX.len()..].chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(hash(&k.secret), k.hash);
        assert!(k.secret.starts_with(&k.prefix));
        assert_ne!(generate().secret, k.secret);
    }
}
