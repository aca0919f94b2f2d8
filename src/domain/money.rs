//! Money: ISO 4217 currencies with their minor-unit digits, and amounts in integer minor units
//! rendered as plain decimals (`150.00`, JPY `150`, `-30.00`). No floating point anywhere.

use std::fmt;

/// Active ISO 4217 codes with 0 minor digits; `THREE_DIGITS` have 3; every other code has 2.
const ZERO_DIGITS: &[&str] = &[
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF",
    "XPF",
];
const THREE_DIGITS: &[&str] = &["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];
const TWO_DIGITS: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN", "BMD", "BND",
    "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHF", "CNY", "COP", "CRC", "CUP", "CVE", "CZK",
    "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GTQ", "GYD",
    "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IRR", "JMD", "KES", "KGS", "KHR", "KPW", "KYD", "KZT", "LAK",
    "LBP", "LKR", "LRD", "LSL", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN",
    "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "QAR", "RON",
    "RSD", "RUB", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP",
    "SZL", "THB", "TJS", "TMT", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "USD", "UYU", "UZS", "VES", "WST", "XCD",
    "YER", "ZAR", "ZMW", "ZWL",
];

/// An ISO 4217 currency code known to this build.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Currency(String);

impl Currency {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let code = raw.trim().to_ascii_uppercase();
        if [ZERO_DIGITS, THREE_DIGITS, TWO_DIGITS].iter().any(|list| list.contains(&code.as_str())) {
            Ok(Self(code))
        } else {
            Err("must be an ISO 4217 currency code such as EUR, GBP or USD".into())
        }
    }

    /// Trusted value read back from the database (written by `parse`).
    pub fn from_stored(code: &str) -> Self {
        Self(code.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn minor_digits(&self) -> u32 {
        if ZERO_DIGITS.contains(&self.0.as_str()) {
            0
        } else if THREE_DIGITS.contains(&self.0.as_str()) {
            3
        } else {
            2
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An amount in minor units of a currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Money {
    pub minor: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(minor: i64, currency: Currency) -> Self {
        Self { minor, currency }
    }

    /// `150.00`, `-30.00`, `150` (JPY), `1.500` (KWD): a plain decimal with `.`, no symbol,
    /// no grouping — what payment tools and spreadsheets read back exactly.
    pub fn decimal(&self) -> String {
        let digits = self.currency.minor_digits();
        let sign = if self.minor < 0 { "-" } else { "" };
        let abs = self.minor.unsigned_abs();
        if digits == 0 {
            return format!("{sign}{abs}");
        }
        let scale = 10u64.pow(digits);
        format!("{sign}{}.{:0width$}", abs / scale, abs % scale, width = digits as usize)
    }

    /// An amount as people type it (`12.50`, `12`, `-3.20`, `+5`; JPY `1250`) into minor units:
    /// `.` as the decimal point, at most the currency's minor digits after it, no thousands
    /// separators, no symbol. The message says what was wrong.
    pub fn parse(raw: &str, currency: Currency) -> Result<Self, String> {
        let digits = currency.minor_digits();
        let example = Self::new(1250, currency.clone()).decimal();
        let shape = || format!("must be an amount like {example} or -{example}, with no thousands separators");
        let text = raw.trim();
        if text.is_empty() {
            return Err("must not be empty".into());
        }
        let (negative, unsigned) = match text.as_bytes()[0] {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty()
            || !all_digits(whole)
            || !all_digits(fraction)
            || (unsigned.contains('.') && fraction.is_empty())
        {
            return Err(shape());
        }
        if fraction.len() > digits as usize {
            return Err(match digits {
                0 => format!("must be a whole amount: {currency} has no decimal places"),
                1 => format!("must have at most 1 decimal place for {currency}"),
                n => format!("must have at most {n} decimal places for {currency}"),
            });
        }
        let too_large = || "is too large".to_owned();
        let scale = 10i64.pow(digits);
        let whole: i64 = whole.parse().map_err(|_| too_large())?;
        let fraction: i64 = if fraction.is_empty() {
            0
        } else {
            format!("{fraction:0<width$}", width = digits as usize).parse().map_err(|_| too_large())?
        };
        let minor = whole.checked_mul(scale).and_then(|w| w.checked_add(fraction)).ok_or_else(too_large)?;
        Ok(Self::new(if negative { -minor } else { minor }, currency))
    }
}

impl fmt::Display for Money {
    /// `150.00 EUR`, for people (e-mails, details).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.decimal(), self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(minor: i64, code: &str) -> Money {
        Money::new(minor, Currency::parse(code).unwrap())
    }

    #[test]
    fn decimals_follow_the_currency_minor_digits() {
        assert_eq!(money(15000, "EUR").decimal(), "150.00");
        assert_eq!(money(5, "USD").decimal(), "0.05");
        assert_eq!(money(-3050, "GBP").decimal(), "-30.50");
        assert_eq!(money(150, "JPY").decimal(), "150");
        assert_eq!(money(1500, "KWD").decimal(), "1.500");
        assert_eq!(money(0, "EUR").decimal(), "0.00");
        assert_eq!(money(i64::MIN, "EUR").decimal(), "-92233720368547758.08");
        assert_eq!(money(10000, "eur").to_string(), "100.00 EUR");
    }

    fn parsed(raw: &str, code: &str) -> Result<i64, String> {
        Money::parse(raw, Currency::parse(code).unwrap()).map(|m| m.minor)
    }

    #[test]
    fn amounts_typed_by_people_become_minor_units() {
        assert_eq!(parsed("12.50", "EUR"), Ok(1250));
        assert_eq!(parsed("12", "EUR"), Ok(1200));
        assert_eq!(parsed("12.5", "EUR"), Ok(1250));
        assert_eq!(parsed(" -3.20 ", "GBP"), Ok(-320));
        assert_eq!(parsed("+5", "USD"), Ok(500));
        assert_eq!(parsed("0.05", "USD"), Ok(5));
        assert_eq!(parsed("007.10", "USD"), Ok(710));
        assert_eq!(parsed("1250", "JPY"), Ok(1250));
        assert_eq!(parsed("1.5", "KWD"), Ok(1500));
        assert_eq!(parsed("-92233720368547758.08", "EUR"), Err("is too large".into()), "i64::MIN is not typed");
        assert_eq!(parsed("92233720368547758.07", "EUR"), Ok(i64::MAX));
        assert_eq!(parsed("92233720368547758.08", "EUR"), Err("is too large".into()));
    }

    #[test]
    fn amounts_in_other_shapes_are_refused_with_why() {
        let shape = Err("must be an amount like 12.50 or -12.50, with no thousands separators".to_owned());
        for raw in
            ["1,000.00", "1 000", "1'000", "1_000", "12,50", "€12", "12.50 EUR", "1e3", "--3", "-", ".50", "12.", "abc"]
        {
            assert_eq!(parsed(raw, "EUR"), shape, "{raw}");
        }
        assert_eq!(parsed("", "EUR"), Err("must not be empty".into()));
        assert_eq!(parsed("   ", "EUR"), Err("must not be empty".into()));
        assert_eq!(parsed("12.505", "EUR"), Err("must have at most 2 decimal places for EUR".into()));
        assert_eq!(parsed("12.5", "JPY"), Err("must be a whole amount: JPY has no decimal places".into()));
        assert_eq!(parsed("1.2345", "KWD"), Err("must have at most 3 decimal places for KWD".into()));
        assert_eq!(
            parsed("1,250", "JPY"),
            Err("must be an amount like 1250 or -1250, with no thousands separators".into())
        );
    }

    #[test]
    fn currencies_must_be_known_iso_codes() {
        assert_eq!(Currency::parse(" usd ").unwrap().as_str(), "USD");
        assert!(Currency::parse("ABC").is_err());
        assert!(Currency::parse("EURO").is_err());
        assert!(Currency::parse("").is_err());
    }
}
