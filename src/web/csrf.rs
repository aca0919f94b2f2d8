//! CSRF protection for every form post. The token in a form is an HMAC of what binds it to
//! the browser: the portal session for a signed-in ambassador, the console session for a
//! signed-in team member, otherwise a random nonce kept
//! in an HttpOnly cookie (a signed double-submit cookie). Another site can neither read the
//! token nor compute it, since the key lives only in the database (shared by all instances).
//! Verification is constant-time; a failure is a 403 page and nothing is stored.

use actix_web::cookie::Cookie;
use actix_web::HttpRequest;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use super::{Form, WebError};
use crate::config::Settings;

/// The cookie holding an anonymous visitor's nonce.
pub const COOKIE: &str = "vouch_csrf";
/// The hidden form field holding the token.
pub const FIELD: &str = "csrf";

type HmacSha256 = Hmac<Sha256>;

/// What a form token is bound to.
pub enum Binding {
    /// An anonymous visitor's nonce cookie.
    Visitor(String),
    /// A signed-in ambassador's session token.
    Session(String),
    /// A signed-in team member's console session token.
    Member(String),
}

impl Binding {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Self::Visitor(nonce) => [b"visitor:".as_slice(), nonce.as_bytes()].concat(),
            Self::Session(secret) => [b"session:".as_slice(), secret.as_bytes()].concat(),
            Self::Member(secret) => [b"console:".as_slice(), secret.as_bytes()].concat(),
        }
    }
}

/// The key that signs form tokens.
#[derive(Clone)]
pub struct CsrfKey(Vec<u8>);

impl CsrfKey {
    pub fn new(key: &[u8]) -> Self {
        Self(key.to_vec())
    }

    fn mac(&self, binding: &Binding) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"vouch-csrf-v1\0");
        mac.update(&binding.bytes());
        mac
    }

    pub fn token(&self, binding: &Binding) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(binding).finalize().into_bytes())
    }

    /// Constant-time check of a posted token.
    pub fn verify(&self, binding: &Binding, token: &str) -> bool {
        match URL_SAFE_NO_PAD.decode(token.trim()) {
            Ok(raw) => self.mac(binding).verify_slice(&raw).is_ok(),
            Err(_) => false,
        }
    }

    /// `value` with a signature, for a cookie only this service may have written (the
    /// console's flash messages); [`CsrfKey::open`] gives the value back.
    pub fn seal(&self, value: &str) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"vouch-sealed-v1\0");
        mac.update(value.as_bytes());
        format!("{}.{}", URL_SAFE_NO_PAD.encode(value), URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    /// The value of a [`CsrfKey::seal`]ed string, if its signature holds.
    pub fn open(&self, sealed: &str) -> Option<String> {
        let (value, tag) = sealed.split_once('.')?;
        let value = String::from_utf8(URL_SAFE_NO_PAD.decode(value).ok()?).ok()?;
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"vouch-sealed-v1\0");
        mac.update(value.as_bytes());
        mac.verify_slice(&URL_SAFE_NO_PAD.decode(tag).ok()?).ok()?;
        Some(value)
    }

    /// Rejects a post whose token does not match its binding (`None`: no binding at all, as
    /// when the nonce cookie is missing).
    pub(crate) fn check(&self, binding: Option<&Binding>, form: &Form) -> Result<(), WebError> {
        match binding {
            Some(b) if self.verify(b, &form.text(FIELD)) => Ok(()),
            _ => Err(WebError::Csrf),
        }
    }
}

/// The visitor's nonce from their cookie, if they have one.
pub fn visitor(req: &HttpRequest) -> Option<Binding> {
    req.cookie(COOKIE).map(|c| c.value().to_owned()).filter(|v| v.len() >= 16 && v.len() <= 100).map(Binding::Visitor)
}

/// The visitor's nonce, or a new one with the cookie that carries it (to set with the page).
pub fn visitor_or_new(req: &HttpRequest, settings: &Settings) -> (Binding, Option<Cookie<'static>>) {
    if let Some(b) = visitor(req) {
        return (b, None);
    }
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let nonce = URL_SAFE_NO_PAD.encode(raw);
    let cookie = super::cookie(settings, COOKIE, nonce.clone(), "/");
    (Binding::Visitor(nonce), Some(cookie))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_for_their_binding_and_key() {
        let key = CsrfKey::new(b"k1");
        let a = Binding::Visitor("nonce-aaaaaaaaaaaaaaaa".into());
        let token = key.token(&a);
        assert!(key.verify(&a, &token));
        assert!(!key.verify(&Binding::Visitor("nonce-bbbbbbbbbbbbbbbb".into()), &token));
        assert!(!key.verify(&Binding::Session("nonce-aaaaaaaaaaaaaaaa".into()), &token), "kinds are separate");
        assert!(!CsrfKey::new(b"k2").verify(&a, &token));
        assert!(!key.verify(&a, ""));
        assert!(!key.verify(&a, "not base64 !"));
        assert!(!key.verify(&a, &token[..token.len() - 2]));
        let member = Binding::Member("nonce-aaaaaaaaaaaaaaaa".into());
        assert!(!key.verify(&member, &key.token(&Binding::Session("nonce-aaaaaaaaaaaaaaaa".into()))));
    }

    #[test]
    fn sealed_values_open_only_unchanged_and_with_their_key() {
        let key = CsrfKey::new(b"k1");
        let sealed = key.seal("Invitation sent to Jo <jo@example.com>.");
        assert_eq!(key.open(&sealed).as_deref(), Some("Invitation sent to Jo <jo@example.com>."));
        assert_eq!(CsrfKey::new(b"k2").open(&sealed), None);
        let (_, tag) = sealed.split_once('.').unwrap();
        assert_eq!(key.open(&format!("{}.{tag}", URL_SAFE_NO_PAD.encode("Something else"))), None);
        assert_eq!(key.open("no-dot"), None);
    }
}
