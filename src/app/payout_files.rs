//! A batch's CSV files, page by page, for the JSON API and the console alike (each streams
//! them with `http::csv_export`): the generic report (any batch, locks nothing) and PayPal's
//! Payouts upload file (getting it locks the batch: see [`payouts::for_paypal`]).

use super::payouts;
use super::Result;
use crate::db::DbConnection;
use crate::domain::csv::text_cell;
use crate::domain::money::{Currency, Money};
use crate::domain::payout::PaypalPart;
use crate::store::audit::Actor;
use crate::store::payouts::ExportLine;

/// Line numbers (or PayPal sequence numbers) read from the database per page of a file: a
/// page holds at most this many lines, fewer where lines were released or failed.
pub const PAGE_ROWS: i32 = 1_000;

/// The generic report's header row.
pub const GENERIC_HEADER: &[&str] = &[
    "payout",
    "line",
    "ambassador_id",
    "ambassador_name",
    "ambassador_email",
    "payout_method",
    "payout_details",
    "amount",
    "currency",
    "status",
    "reward_count",
    "reference",
];

/// One file of a batch: its name, header row and where its pages start; [`CsvFile::page`]
/// reads it.
#[derive(Debug, Clone)]
pub struct CsvFile {
    pub filename: String,
    pub header: Option<&'static [&'static str]>,
    /// The cursor before the first page (a line number, or a PayPal sequence number).
    pub start: i32,
    /// The last line number (or PayPal sequence number) of the file.
    until: i32,
    /// PayPal files: which part of how many.
    pub part: Option<PaypalPart>,
    id: String,
    code: String,
    currency: Currency,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Generic { reference: String },
    Paypal,
}

/// The generic report of any batch (it locks nothing).
pub fn generic(conn: &mut DbConnection, id: &str) -> Result<CsvFile> {
    let batch = payouts::for_report(conn, id)?;
    let until = payouts::last_line_number(conn, id)?;
    Ok(CsvFile {
        filename: format!("payout-{}.csv", batch.code()),
        header: Some(GENERIC_HEADER),
        start: 0,
        until,
        part: None,
        id: id.to_owned(),
        code: batch.code(),
        currency: Currency::from_stored(&batch.currency),
        kind: Kind::Generic { reference: batch.reference.unwrap_or_default() },
    })
}

/// Part `part` of the batch's PayPal upload file (`rows_per_file` rows each), after locking
/// the batch for payment.
pub fn paypal(conn: &mut DbConnection, id: &str, (part, rows_per_file): (i64, i64), actor: &Actor) -> Result<CsvFile> {
    let (batch, which) = payouts::for_paypal(conn, id, (part, rows_per_file), actor)?;
    let filename = if which.parts > 1 {
        format!("payout-{}-paypal-part{}of{}.csv", batch.code(), which.part, which.parts)
    } else {
        format!("payout-{}-paypal.csv", batch.code())
    };
    Ok(CsvFile {
        filename,
        header: None,
        start: which.after_seq,
        until: which.until_seq,
        part: Some(which),
        id: id.to_owned(),
        code: batch.code(),
        currency: Currency::from_stored(&batch.currency),
        kind: Kind::Paypal,
    })
}

impl CsvFile {
    /// The rows after cursor `after` (up to [`PAGE_ROWS`] numbers further), and the cursor of
    /// the next page (`None`: that was the last).
    pub fn page(&self, conn: &mut DbConnection, after: i32) -> Result<(Vec<Vec<String>>, Option<i32>)> {
        let last = self.until.min(after.saturating_add(PAGE_ROWS));
        let next = (last < self.until).then_some(last);
        let rows = match &self.kind {
            Kind::Generic { reference } => payouts::report_lines(conn, &self.id, (after, last))?
                .into_iter()
                .map(|l| self.generic_row(reference, l))
                .collect(),
            Kind::Paypal => {
                payouts::paypal_lines(conn, &self.id, (after, last))?.into_iter().map(|l| self.paypal_row(l)).collect()
            }
        };
        Ok((rows, next))
    }

    fn amount(&self, minor: i64) -> String {
        Money::new(minor, self.currency.clone()).decimal()
    }

    fn generic_row(&self, reference: &str, (line, name, email): ExportLine) -> Vec<String> {
        vec![
            self.code.clone(),
            line.number.to_string(),
            line.ambassador_id,
            text_cell(&name),
            text_cell(&email),
            line.payout_method,
            text_cell(line.payout_address.as_deref().unwrap_or("")),
            self.amount(line.amount_minor),
            self.currency.to_string(),
            line.status.to_string(),
            line.reward_count.to_string(),
            text_cell(reference),
        ]
    }

    fn paypal_row(&self, (line, _name, _email): ExportLine) -> Vec<String> {
        vec![
            text_cell(line.payout_address.as_deref().unwrap_or("")),
            self.amount(line.amount_minor),
            self.currency.to_string(),
            paypal_customer_id(&self.code, line.number),
            "Thank you for your referrals".to_owned(),
        ]
    }
}

/// PayPal's "customer ID" column: at most 30 characters, no spaces.
fn paypal_customer_id(batch: &str, line: i32) -> String {
    format!("VOUCH-{batch}-L{line}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn paypal_customer_ids_fit_paypal_limits() {
        let id = super::paypal_customer_id("P2147483647", 2_147_483_647);
        assert!(id.len() <= 30 && !id.contains(' '), "{id}");
    }
}
