//! Contact details: e-mail addresses and phone numbers, normalised once at the edge so that
//! uniqueness and duplicate detection compare like with like.

use std::fmt;

/// A syntactically plausible e-mail address, trimmed and lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(input: &str) -> Result<Self, String> {
        let v = input.trim().to_lowercase();
        if v.is_empty() {
            return Err("must not be empty".into());
        }
        if v.len() > 254 {
            return Err("must be at most 254 characters".into());
        }
        let Some((local, domain)) = v.rsplit_once('@') else {
            return Err("must be an e-mail address like name@example.com".into());
        };
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain.chars().all(|c| c.is_alphanumeric() || c == '-' || c == '.');
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.contains('@')
            && local.chars().all(|c| !c.is_whitespace() && !c.is_control() && c != '<' && c != '>' && c != ',');
        if !(domain_ok && local_ok) {
            return Err("must be an e-mail address like name@example.com".into());
        }
        Ok(Self(v))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }

    /// An optional address: absent or blank is `None`.
    pub fn parse_optional(input: Option<&str>) -> Result<Option<Self>, String> {
        input.map(str::trim).filter(|v| !v.is_empty()).map(Self::parse).transpose()
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A phone number normalised to `+` and digits with the country code (E.164 shape).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Phone(String);

impl Phone {
    /// `default_country_code` (digits, e.g. `"44"`) is applied to numbers written without an
    /// international prefix; a leading trunk `0` is dropped first. Without it such numbers
    /// are refused, because a number without its country code cannot be compared reliably.
    pub fn parse(input: &str, default_country_code: Option<&str>) -> Result<Self, String> {
        let raw = input.trim();
        if raw.is_empty() {
            return Err("must not be empty".into());
        }
        if raw.chars().any(|c| !(c.is_ascii_digit() || " +-().".contains(c))) {
            return Err("may contain only digits, spaces, '+', '-', '.' and parentheses".into());
        }
        let international = raw.starts_with('+') || raw.starts_with("00");
        if raw.matches('+').count() > 1 || (raw.contains('+') && !raw.starts_with('+')) {
            return Err("'+' may only start the number".into());
        }
        let mut digits: String = raw.chars().filter(char::is_ascii_digit).collect();
        if international {
            if raw.starts_with("00") {
                digits.drain(..2);
            }
        } else {
            match default_country_code {
                Some(cc) if !cc.is_empty() => {
                    let national = digits.trim_start_matches('0');
                    digits = format!("{cc}{national}");
                }
                _ => return Err("must include the country code, like +1 415 555 0100".into()),
            }
        }
        if !(8..=15).contains(&digits.len()) || digits.starts_with('0') {
            return Err("must be a phone number with country code, 8 to 15 digits".into());
        }
        Ok(Self(format!("+{digits}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }

    /// An optional number: absent or blank is `None`.
    pub fn parse_optional(input: Option<&str>, default_country_code: Option<&str>) -> Result<Option<Self>, String> {
        input.map(str::trim).filter(|v| !v.is_empty()).map(|p| Self::parse(p, default_country_code)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lowercased() {
        assert_eq!(Email::parse("  Ann.Lee@Example.COM ").unwrap().as_str(), "ann.lee@example.com");
    }

    #[test]
    fn bad_emails_are_refused() {
        for bad in ["", "ann", "ann@", "@x.com", "ann@x", "a b@x.com", "ann@x..com", "ann@.x.com", "<a>@x.com"] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn phones_normalise_to_country_code_and_digits() {
        assert_eq!(Phone::parse("+1 (415) 555-0100", None).unwrap().as_str(), "+14155550100");
        assert_eq!(Phone::parse("0044 20 7946 0018", None).unwrap().as_str(), "+442079460018");
        assert_eq!(Phone::parse("020 7946 0018", Some("44")).unwrap().as_str(), "+442079460018");
    }

    #[test]
    fn phones_without_country_code_need_a_default() {
        assert!(Phone::parse("020 7946 0018", None).is_err());
        assert!(Phone::parse("+1 555", None).is_err());
        assert!(Phone::parse("+1 555 abc 0100", None).is_err());
        assert!(Phone::parse("1+555", None).is_err());
    }
}

/// Keyed hashes (HMAC-SHA256) of normalised contact details. They let duplicate detection
/// work after a client's personal data is erased, without keeping anything a dictionary
/// attack on a leaked database could reverse without the key.
#[derive(Clone)]
pub struct ContactHasher {
    key: Vec<u8>,
}

impl ContactHasher {
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.to_vec() }
    }

    pub fn email_key(&self, email: &Email) -> String {
        self.mac("email", email.as_str())
    }

    pub fn phone_key(&self, phone: &Phone) -> String {
        self.mac("phone", phone.as_str())
    }

    fn mac(&self, kind: &str, value: &str) -> String {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(kind.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        super::api_key::hex(&mac.finalize().into_bytes())
    }
}

impl fmt::Debug for ContactHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ContactHasher(…)")
    }
}

#[cfg(test)]
mod hasher_tests {
    use super::*;

    #[test]
    fn keys_depend_on_value_kind_and_secret() {
        let h = ContactHasher::new(b"secret");
        let e = Email::parse("a@example.com").unwrap();
        assert_eq!(h.email_key(&e), h.email_key(&Email::parse(" A@Example.com").unwrap()));
        assert_ne!(h.email_key(&e), ContactHasher::new(b"other").email_key(&e));
        assert_eq!(h.email_key(&e).len(), 64);
    }
}
