//! Streamed CSV responses: rows are fetched from the database a page at a time and written
//! out as they come, so memory stays flat however many rows an export has.

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::HttpResponse;
use futures_util::stream::{self, StreamExt};

use crate::app::reports;
use crate::db::blocking;
use crate::db::{DbConnection, DbPool};
use crate::domain::calendar::Calendar;
use crate::error::ApiError;

pub use crate::domain::csv::text_cell;

/// Rows fetched per database round trip.
pub const PAGE_ROWS: i64 = 500;

fn encode(rows: &[Vec<String>]) -> Result<Bytes, ApiError> {
    let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::with_capacity(rows.len() * 96));
    for row in rows {
        w.write_record(row).map_err(ApiError::internal)?;
    }
    Ok(Bytes::from(w.into_inner().map_err(ApiError::internal)?))
}

/// One page of rows and where the next page starts (`None`: that was the last).
pub type CsvPage<C> = (Vec<Vec<String>>, Option<C>);

/// A `text/csv` attachment streamed page by page: `fetch(conn, cursor)` returns one page.
/// A database failure half way ends the stream with an error (the client sees a broken
/// transfer, never a silently short file).
pub fn response<C, F>(
    mut builder: actix_web::HttpResponseBuilder,
    pool: &DbPool,
    filename: &str,
    header_row: Option<&[&str]>,
    start: C,
    fetch: F,
) -> Result<HttpResponse, ApiError>
where
    C: Send + 'static,
    F: Fn(&mut DbConnection, C) -> Result<CsvPage<C>, ApiError> + Send + Sync + Clone + 'static,
{
    let head = match header_row {
        Some(h) => encode(&[h.iter().map(|s| (*s).to_owned()).collect()])?,
        None => Bytes::new(),
    };
    let pool = pool.clone();
    let body = stream::unfold(Some(start), move |cursor| {
        let (pool, fetch) = (pool.clone(), fetch.clone());
        async move {
            let cursor = cursor?;
            match blocking(&pool, move |c| fetch(c, cursor)).await.and_then(|(rows, next)| Ok((encode(&rows)?, next))) {
                Ok((bytes, next)) => Some((Ok::<_, actix_web::Error>(bytes), next)),
                Err(e) => {
                    tracing::error!(error = %e, "CSV export failed part way");
                    Some((Err(actix_web::error::ErrorInternalServerError("export failed")), None))
                }
            }
        }
    });
    let body = stream::once(async move { Ok::<_, actix_web::Error>(head) }).chain(body);
    Ok(builder
        .content_type("text/csv; charset=utf-8")
        .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\"")))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .streaming(body))
}

/// A batch's file (see `app::payout_files`) streamed page by page; a PayPal part says which
/// part of how many in `Vouch-Export-Part` and `Vouch-Export-Parts`.
pub fn payout_file(pool: &DbPool, file: crate::app::payout_files::CsvFile) -> Result<HttpResponse, ApiError> {
    let mut builder = HttpResponse::Ok();
    if let Some(p) = &file.part {
        builder.insert_header(("Vouch-Export-Parts", p.parts.to_string()));
        builder.insert_header(("Vouch-Export-Part", p.part.to_string()));
    }
    let (filename, header_row, start) = (file.filename.clone(), file.header, file.start);
    let file = std::sync::Arc::new(file);
    let fetch = move |c: &mut DbConnection, after: i32| Ok(file.page(c, after)?);
    response(builder, pool, &filename, header_row, start, fetch)
}

/// The annual report of `year` (see `app::reports::annual_csv_page`) streamed page by page,
/// for the API and the console alike; the year is checked before anything is sent.
pub fn annual_report(pool: &DbPool, calendar: Calendar, year: i32) -> Result<HttpResponse, ApiError> {
    reports::check_year(&calendar, year)?;
    let fetch = move |c: &mut DbConnection, after: Option<String>| {
        Ok(reports::annual_csv_page(c, &calendar, year, (after, PAGE_ROWS))?)
    };
    let name = format!("annual-{year}.csv");
    response(HttpResponse::Ok(), pool, &name, Some(reports::ANNUAL_HEADER), None, fetch)
}
