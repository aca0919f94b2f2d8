//! Finance → Reports: for a period (this month, last month, this year, or days of your
//! choosing) the referral funnel (registered → started treatment → completed → paid, with the
//! conversion between steps), what was earned and who referred most; for a year the rewards
//! earned per month, and what each ambassador was paid against the tax threshold (paginated,
//! and the API's CSV). Both charts are inline SVG drawn here, each with its figures in a table
//! beside it: no script, no library.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use chrono::{Datelike, Months, NaiveDate};
use minijinja::context;
use serde::{Deserialize, Serialize};

use super::{ConsolePage, Refused, PAGE_ROWS};
use crate::app::reports::{self, MonthTotal};
use crate::app::Error;
use crate::auth::Finance;
use crate::db::{blocking, now};
use crate::domain::calendar::Calendar;
use crate::domain::money::{Currency, Money};
use crate::domain::Validation;
use crate::http::csv_export;
use crate::store::reports::{Funnel, Period};
use crate::store::PageRequest;
use crate::web::{resource, WebError};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/console/reports").route(web::get().to(show)))
        .service(resource("/console/reports/annual.csv").route(web::get().to(annual_csv)));
}

type FinancePage = ConsolePage<Finance>;

/// The page's choices, as the form sends them (empty: the default).
#[derive(Debug, Default, Deserialize, Serialize)]
struct ReportsQuery {
    /// `this_month` (default), `last_month`, `this_year` or `custom` (`from`/`to`).
    #[serde(default)]
    period: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    /// The year of the monthly chart and the annual totals (default: this year).
    #[serde(default)]
    year: String,
    /// Position in the annual totals.
    cursor: Option<String>,
}

const PERIODS: &[(&str, &str)] = &[
    ("this_month", "This month"),
    ("last_month", "Last month"),
    ("this_year", "This year"),
    ("custom", "Days I choose"),
];

/// What the query asks for, parsed: the period, the year, the annual page.
struct Asked {
    period: Period,
    year: i32,
    page: PageRequest,
}

impl ReportsQuery {
    /// The period and year asked for, `today` being the clinic's day; every bad field at once.
    fn parse(&self, today: NaiveDate) -> Result<Asked, Error> {
        let mut v = Validation::new();
        let day = |v: &mut Validation, field: &str, raw: &str| match raw.trim() {
            "" => None,
            s => v.check(
                field,
                NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| "must be a date like 2026-01-31".into()),
            ),
        };
        let month_start = today.with_day(1).expect("day 1 exists");
        let year_start = NaiveDate::from_ymd_opt(today.year(), 1, 1).expect("1 January exists");
        let (from, to) = match self.period.trim() {
            "" | "this_month" => (Some(month_start), Some(today)),
            "last_month" => {
                let start = month_start.checked_sub_months(Months::new(1)).expect("a month before");
                (Some(start), month_start.pred_opt())
            }
            "this_year" => (Some(year_start), Some(today)),
            "custom" => (day(&mut v, "from", &self.from), day(&mut v, "to", &self.to)),
            _ => {
                v.push("period", "must be one of this_month, last_month, this_year, custom");
                (None, None)
            }
        };
        if let (Some(f), Some(t)) = (from, to) {
            if f > t {
                v.push("to", "must not be before from");
            }
        }
        let year = match self.year.trim() {
            "" => Some(today.year()),
            y => v.check("year", y.parse::<i32>().map_err(|_| "must be a year like 2026".into())),
        };
        let page = PageRequest::parse(Some(PAGE_ROWS), self.cursor.as_deref());
        v.finish()?;
        Ok(Asked { period: Period { from, to }, year: year.unwrap_or_default(), page: page? })
    }

    /// The query string of another page of the annual totals (the same choices).
    fn with_cursor(&self, cursor: Option<&str>) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [("period", &self.period), ("from", &self.from), ("to", &self.to), ("year", &self.year)] {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        if let Some(c) = cursor {
            q.append_pair("cursor", c);
        }
        q.finish()
    }
}

/// `part` of `whole` as a percentage with one decimal (`66.7 %`); none of nothing.
fn percent(part: i64, whole: i64) -> Option<String> {
    (whole > 0).then(|| {
        let tenths = (part.max(0) * 1000 + whole / 2) / whole;
        format!("{}.{} %", tenths / 10, tenths % 10)
    })
}

/// The charts' drawing width (SVG user units): about a phone's width, so the text stays
/// readable when the chart is scaled down to 375 px, and larger on a desk.
const CHART_WIDTH: i64 = 360;

/// A step of the funnel: its count, the conversion from the step before, and its bar.
#[derive(Debug, Serialize, PartialEq)]
struct Step {
    label: &'static str,
    count: i64,
    /// Of the step before (none for the first step, or after an empty one).
    rate: Option<String>,
    /// The bar's length and top, in the chart's units.
    width: i64,
    y: i64,
}

const STEP_HEIGHT: i64 = 50;

fn funnel_steps(f: &Funnel) -> Vec<Step> {
    let counts = [
        ("Registered", f.registered),
        ("Started treatment", f.started_treatment),
        ("Completed", f.completed),
        ("Paid", f.paid),
    ];
    let widest = f.registered.max(1);
    let mut before: Option<i64> = None;
    counts
        .iter()
        .enumerate()
        .map(|(i, &(label, count))| {
            let rate = before.and_then(|b| percent(count, b));
            before = Some(count);
            let width = if count > 0 { (count * CHART_WIDTH / widest).clamp(2, CHART_WIDTH) } else { 0 };
            Step { label, count, rate, width, y: i as i64 * STEP_HEIGHT }
        })
        .collect()
}

/// A month's bar in the rewards chart.
#[derive(Debug, Serialize)]
struct MonthBar {
    name: &'static str,
    count: i64,
    amount: String,
    x: i64,
    y: i64,
    height: i64,
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
/// The monthly chart's plot area: from `PLOT_TOP` down to the baseline.
const PLOT_TOP: i64 = 28;
const BASELINE: i64 = 176;

fn month_bars(months: &[MonthTotal], currency: &Currency) -> Vec<MonthBar> {
    let highest = months.iter().map(|m| m.amount_minor).max().unwrap_or(0).max(1);
    let slot = CHART_WIDTH / 12;
    months
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let amount = m.amount_minor.max(0);
            let height = if amount > 0 { (amount * (BASELINE - PLOT_TOP) / highest).max(2) } else { 0 };
            MonthBar {
                name: MONTHS[i],
                count: m.count,
                amount: Money::new(m.amount_minor, currency.clone()).to_string(),
                x: i as i64 * slot + 5,
                y: BASELINE - height,
                height,
            }
        })
        .collect()
}

async fn show(
    page: FinancePage,
    q: web::Query<ReportsQuery>,
    calendar: web::Data<Calendar>,
) -> Result<HttpResponse, WebError> {
    let q = q.into_inner();
    let cal = **calendar;
    let today = cal.date_of(now());
    let figures = match q.parse(today) {
        Ok(asked) => {
            blocking(&page.pool, move |c| {
                let summary = reports::summary(c, &cal, asked.period)?;
                let months = reports::rewards_by_month(c, &cal, asked.year)?;
                let annual = reports::annual_list(c, &cal, asked.year, &asked.page)?;
                Ok::<_, Error>((asked.period, asked.year, summary, months, annual))
            })
            .await
        }
        Err(e) => Err(e),
    };
    let years: Vec<i32> = (2000..=today.year()).rev().collect();
    let choices = context! { q => &q, periods => PERIODS, years, this_year => today.year() };
    match figures {
        Ok((period, year, summary, (months, currency), (annual, threshold, _))) => {
            let currency = Currency::from_stored(&currency);
            let money = |minor: i64| Money::new(minor, currency.clone()).to_string();
            let highest = months
                .iter()
                .filter(|m| m.amount_minor > 0)
                .max_by_key(|m| m.amount_minor)
                .map(|m| (MONTHS[m.month as usize - 1], money(m.amount_minor)));
            let steps = funnel_steps(&summary.referrals);
            let conversion = percent(summary.referrals.completed, summary.referrals.registered);
            let next = annual.next_cursor.as_deref().map(|c| q.with_cursor(Some(c)));
            let first = q.cursor.is_some().then(|| q.with_cursor(None));
            let ctx = context! {
                period => context! { from => period.from, to => period.to },
                year,
                steps,
                conversion,
                summary,
                months => month_bars(&months, &currency),
                earned_in_year => money(months.iter().map(|m| m.amount_minor).sum()),
                highest,
                annual => annual.items,
                next,
                first,
                threshold,
                chart => context! { width => CHART_WIDTH, funnel_height => 4 * STEP_HEIGHT, plot_top => PLOT_TOP, baseline => BASELINE },
                ..choices
            };
            page.render(StatusCode::OK, "console/reports.html", "/console/reports", ctx)
        }
        Err(e) => {
            let r = Refused::of(e)?;
            let ctx = context! { errors => r.errors, summary_error => r.summary, ..choices };
            page.render(r.status, "console/reports.html", "/console/reports", ctx)
        }
    }
}

#[derive(Debug, Deserialize)]
struct YearQuery {
    #[serde(default)]
    year: String,
}

/// The annual report's CSV: the file `GET /v1/reports/annual.csv` answers.
async fn annual_csv(
    page: FinancePage,
    q: web::Query<YearQuery>,
    calendar: web::Data<Calendar>,
) -> Result<HttpResponse, WebError> {
    let year = q.year.trim().parse::<i32>().map_err(|_| Error::validation("year", "must be a year like 2026"))?;
    Ok(csv_export::annual_report(&page.pool, **calendar, year)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn asked(period: &str, from: &str, to: &str) -> Result<(Option<NaiveDate>, Option<NaiveDate>), Error> {
        let q = ReportsQuery { period: period.into(), from: from.into(), to: to.into(), ..Default::default() };
        q.parse(day("2026-03-15")).map(|a| (a.period.from, a.period.to))
    }

    #[test]
    fn named_periods_are_days_of_the_clinic_calendar() {
        assert_eq!(asked("", "", "").unwrap(), (Some(day("2026-03-01")), Some(day("2026-03-15"))));
        assert_eq!(asked("last_month", "", "").unwrap(), (Some(day("2026-02-01")), Some(day("2026-02-28"))));
        assert_eq!(asked("this_year", "", "").unwrap(), (Some(day("2026-01-01")), Some(day("2026-03-15"))));
        assert_eq!(asked("custom", "2025-12-24", "").unwrap(), (Some(day("2025-12-24")), None));
        let q = ReportsQuery { period: "last_month".into(), ..Default::default() };
        let january = q.parse(day("2026-01-31")).unwrap().period;
        assert_eq!((january.from, january.to), (Some(day("2025-12-01")), Some(day("2025-12-31"))));
    }

    #[test]
    fn bad_choices_are_refused_all_at_once() {
        let Err(Error::Validation(errors)) = asked("custom", "yesterday", "2026-13-01") else { panic!("refused") };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["from", "to"]);
        let Err(Error::Validation(errors)) = asked("custom", "2026-03-02", "2026-03-01") else { panic!("refused") };
        assert_eq!(errors[0].field, "to");
        assert!(matches!(asked("fortnight", "", ""), Err(Error::Validation(_))));
    }

    #[test]
    fn the_funnel_converts_step_by_step() {
        let f = Funnel {
            by_status: Default::default(),
            registered: 8,
            started_treatment: 6,
            completed: 3,
            paid: 0,
            conversion_rate: 0.375,
        };
        let steps = funnel_steps(&f);
        let rates: Vec<Option<&str>> = steps.iter().map(|s| s.rate.as_deref()).collect();
        assert_eq!(rates, [None, Some("75.0 %"), Some("50.0 %"), Some("0.0 %")]);
        let widths: Vec<i64> = steps.iter().map(|s| s.width).collect();
        assert_eq!(widths, [360, 270, 135, 0]);
        assert_eq!(percent(1, 3).as_deref(), Some("33.3 %"));
        assert_eq!(percent(2, 3).as_deref(), Some("66.7 %"));
        assert_eq!(percent(0, 0), None);
    }

    #[test]
    fn month_bars_scale_to_the_best_month() {
        let mut months: Vec<MonthTotal> =
            (1..=12).map(|month| MonthTotal { month, count: 0, amount_minor: 0 }).collect();
        months[2] = MonthTotal { month: 3, count: 2, amount_minor: 20000 };
        months[3] = MonthTotal { month: 4, count: 1, amount_minor: 5000 };
        let bars = month_bars(&months, &Currency::parse("EUR").unwrap());
        assert_eq!((bars[2].height, bars[2].y, bars[2].amount.as_str()), (148, PLOT_TOP, "200.00 EUR"));
        assert_eq!(bars[3].height, 37);
        assert_eq!((bars[0].height, bars[0].y), (0, BASELINE));
        assert_eq!(bars[11].x, 11 * 30 + 5);
    }
}
