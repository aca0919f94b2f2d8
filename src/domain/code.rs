//! Referral codes: generated Crockford base32 codes (`7Q4K-9MZD`, no name inside) and vanity
//! codes (`JAMES10`). Matching ignores case and hyphens.

use rand::Rng;

/// Crockford base32: no I, L, O or U, so codes read aloud or hand-copied survive.
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A code as shown (`display`) and as compared (`normalized`: upper-case, no hyphens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferralCode {
    display: String,
    normalized: String,
}

super::text_enum! {
    pub enum CodeKind {
        Generated = "generated",
        Vanity = "vanity",
    }
}

impl ReferralCode {
    /// A fresh random 8-character code shown as `XXXX-XXXX`.
    pub fn generate() -> Self {
        let mut rng = rand::thread_rng();
        let raw: String = (0..8).map(|_| CROCKFORD[rng.gen_range(0..32)] as char).collect();
        Self { display: format!("{}-{}", &raw[..4], &raw[4..]), normalized: raw }
    }

    /// A vanity code chosen by staff: 3–32 characters of `A-Z`, `0-9` and `-` (case is ignored).
    pub fn parse_vanity(input: &str) -> Result<Self, String> {
        let display = input.trim().to_ascii_uppercase();
        if !(3..=32).contains(&display.len()) {
            return Err("must be 3 to 32 characters".into());
        }
        if !display.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-') {
            return Err("may contain only letters A-Z, digits and '-'".into());
        }
        let normalized = normalize(&display);
        if normalized.len() < 3 {
            return Err("must have at least 3 letters or digits".into());
        }
        Ok(Self { display, normalized })
    }

    pub fn display(&self) -> &str {
        &self.display
    }

    pub fn normalized(&self) -> &str {
        &self.normalized
    }
}

/// What a typed code is compared as: upper-case with hyphens and spaces removed.
pub fn normalize(input: &str) -> String {
    input.chars().filter(|c| *c != '-' && !c.is_whitespace()).collect::<String>().to_ascii_uppercase()
}

/// Forms of a typed code to look up, best first: the code as typed (normalised), then — for
/// something shaped like a generated code — with Crockford's look-alikes mapped
/// (`O`→`0`, `I`/`L`→`1`), so a code copied by hand from a card still matches.
pub fn lookup_candidates(input: &str) -> Vec<String> {
    let exact = normalize(input);
    let mut out = vec![exact.clone()];
    if exact.len() == 8 {
        let mapped: String = exact
            .chars()
            .map(|c| match c {
                'O' => '0',
                'I' | 'L' => '1',
                other => other,
            })
            .collect();
        if mapped != exact {
            out.push(mapped);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_are_crockford_and_hyphenated() {
        for _ in 0..200 {
            let c = ReferralCode::generate();
            assert_eq!(c.display().len(), 9);
            assert_eq!(&c.display()[4..5], "-");
            assert_eq!(c.normalized().len(), 8);
            assert!(c.normalized().bytes().all(|b| CROCKFORD.contains(&b)));
        }
    }

    #[test]
    fn vanity_codes_are_uppercased_and_bounded() {
        let c = ReferralCode::parse_vanity(" james-10 ").unwrap();
        assert_eq!(c.display(), "JAMES-10");
        assert_eq!(c.normalized(), "JAMES10");
        assert!(ReferralCode::parse_vanity("ab").is_err());
        assert!(ReferralCode::parse_vanity("a--").is_err());
        assert!(ReferralCode::parse_vanity("JAMES_10").is_err());
        assert!(ReferralCode::parse_vanity(&"A".repeat(33)).is_err());
        assert!(ReferralCode::parse_vanity("JAMÉS").is_err());
    }

    #[test]
    fn matching_ignores_case_hyphens_and_lookalikes() {
        assert_eq!(lookup_candidates("7q4k-9mzd"), vec!["7Q4K9MZD".to_string()]);
        assert_eq!(lookup_candidates("7Q4K-9MZO"), vec!["7Q4K9MZO".to_string(), "7Q4K9MZ0".to_string()]);
        assert_eq!(lookup_candidates("james-10"), vec!["JAMES10".to_string()]);
    }

    #[test]
    fn each_lookalike_letter_maps_to_its_digit() {
        let mapped = |typed: &str| lookup_candidates(typed).last().cloned().unwrap();
        assert_eq!(mapped("7Q4K-9MZO"), "7Q4K9MZ0", "O → 0");
        assert_eq!(mapped("7Q4K-9MZI"), "7Q4K9MZ1", "I → 1");
        assert_eq!(mapped("7Q4K-9MZL"), "7Q4K9MZ1", "L → 1");
        assert_eq!(mapped("oilk-9mzd"), "011K9MZD", "lower case too");
        assert_eq!(mapped("IOLU-9MZD"), "101U9MZD", "U has no look-alike digit");
        // Only code-shaped input (8 characters) is mapped: a vanity code is taken as typed.
        assert_eq!(lookup_candidates("LOIS"), vec!["LOIS".to_string()]);
    }
}
