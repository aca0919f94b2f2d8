//! The console's search box: the keys a client or an ambassador is found by, and what a typed
//! query looks for. Every key is matched by prefix, as a range of an index (`key >= 'ann' AND
//! key < 'ano'`), compared byte by byte on both databases; so the keys are written here, in one
//! form, and the query is put in the same form.

use super::code;

/// Shortest and longest query the search box takes (characters).
pub const QUERY_MIN: usize = 2;
pub const QUERY_MAX: usize = 100;
/// Fewest digits a query needs to be looked up among phone numbers (fewer match too much).
const PHONE_DIGITS_MIN: usize = 4;
/// A typed number this long is a whole number: its trunk or international prefix zeros go.
const WHOLE_NUMBER_DIGITS: usize = 8;

/// Text as it is searched: lower-cased, trimmed, inner runs of white space made one space.
pub fn text_key(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// A client's name keys: "first last", found by the first name, and "last first", found by
/// the last name (none without a last name).
pub fn name_keys(first: &str, last: Option<&str>) -> (String, Option<String>) {
    match last.map(str::trim).filter(|l| !l.is_empty()) {
        Some(last) => (text_key(&format!("{first} {last}")), Some(text_key(&format!("{last} {first}")))),
        None => (text_key(first), None),
    }
}

/// A phone number's digits from last to first: its last digits are then a prefix, so the
/// number is found by the end of it however it was typed (with or without country code).
pub fn phone_key(phone: &str) -> String {
    phone.chars().rev().filter(char::is_ascii_digit).collect()
}

/// What one typed query looks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// Prefix of names, e-mail addresses and the clinic's ids ([`text_key`]).
    pub text: String,
    /// Prefix of [`phone_key`]s, when the query is a phone number's digits (at least four).
    pub phone: Option<String>,
    /// Prefix of normalised referral codes, when the query could be one.
    pub code: Option<String>,
}

/// A key prefix and the first key past every key that starts with it (`abc` → `abd`): the
/// range `[start, end)` holds exactly the keys with that prefix, in byte (code point) order.
pub fn prefix_range(prefix: &str) -> (String, String) {
    let mut end: Vec<char> = prefix.chars().collect();
    while let Some(last) = end.pop() {
        // The next code point (past the surrogates, which no string holds).
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            end.push(next);
            return (prefix.to_owned(), end.into_iter().collect());
        }
    }
    // Only U+10FFFF: nothing sorts after it but longer strings of it.
    (prefix.to_owned(), format!("{prefix}{}", char::MAX))
}

impl SearchQuery {
    pub fn parse(q: &str) -> Result<Self, String> {
        let text = text_key(q);
        let n = text.chars().count();
        if n < QUERY_MIN {
            return Err(format!("must be at least {QUERY_MIN} characters"));
        }
        if n > QUERY_MAX {
            return Err(format!("must be at most {QUERY_MAX} characters"));
        }
        let looks_like_phone = text.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c));
        let digits: String = text.chars().filter(char::is_ascii_digit).collect();
        let phone = (looks_like_phone && digits.len() >= PHONE_DIGITS_MIN).then(|| {
            // A whole number typed with its trunk `0` (or `00` before the country code): the
            // stored number has neither, so its end is the rest of the digits.
            let digits =
                if digits.len() >= WHOLE_NUMBER_DIGITS { digits.trim_start_matches('0') } else { digits.as_str() };
            phone_key(digits)
        });
        let normalized = code::normalize(q);
        let could_be_code = !normalized.is_empty() && normalized.chars().all(|c| c.is_ascii_alphanumeric());
        Ok(Self { text, phone, code: could_be_code.then_some(normalized) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_lower_case_with_single_spaces() {
        assert_eq!(text_key("  Ann   LEE "), "ann lee");
        assert_eq!(text_key("Élodie"), "élodie");
        assert_eq!(name_keys("Ann", Some(" Lee ")), ("ann lee".into(), Some("lee ann".into())));
        assert_eq!(name_keys("Ann", Some("")), ("ann".into(), None));
        assert_eq!(phone_key("+14155550100"), "00105555141");
    }

    #[test]
    fn prefix_ranges_hold_exactly_the_keys_with_the_prefix() {
        let (start, end) = prefix_range("ann");
        assert_eq!((start.as_str(), end.as_str()), ("ann", "ano"));
        for key in ["ann", "ann lee", "anna", "ann\u{10FFFF}"] {
            assert!(key >= start.as_str() && key < end.as_str(), "{key}");
        }
        for key in ["an", "ano", "anm", "b", "Ann"] {
            assert!(!(key >= start.as_str() && key < end.as_str()), "{key}");
        }
        assert_eq!(prefix_range("a\u{10FFFF}").1, "b");
        assert_eq!(prefix_range("\u{D7FF}").1, "\u{E000}");
    }

    #[test]
    fn queries_look_for_names_phones_and_codes() {
        let q = SearchQuery::parse(" Ann  Lee ").unwrap();
        assert_eq!((q.text.as_str(), q.phone, q.code.as_deref()), ("ann lee", None, Some("ANNLEE")));
        let q = SearchQuery::parse("0100").unwrap();
        assert_eq!(q.phone.as_deref(), Some("0010"), "last digits keep their zeros");
        let q = SearchQuery::parse("0415 555 0100").unwrap();
        assert_eq!(q.phone.as_deref(), Some("0010555514"), "a whole number loses its trunk zero");
        assert_eq!(SearchQuery::parse("+1 (415) 555-0100").unwrap().phone.as_deref(), Some("00105555141"));
        assert_eq!(SearchQuery::parse("123").unwrap().phone, None, "too few digits");
        assert_eq!(SearchQuery::parse("7q4k-9m").unwrap().code.as_deref(), Some("7Q4K9M"));
        assert_eq!(SearchQuery::parse("ann@example.com").unwrap().code, None);
        assert!(SearchQuery::parse(" a ").is_err());
        assert!(SearchQuery::parse(&"a".repeat(101)).is_err());
    }
}
