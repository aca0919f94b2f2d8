//! Admin → Program rules: the rules in force and their versions; the form that changes them
//! (read into what `PUT /v1/program` takes and checked by the same rules, a refusal shown with
//! the API's messages and nothing stored); and "what would this referral earn", worked out by
//! the ledger's own calculation ([`app::program::example`]) for the rules on the form. Without
//! JavaScript the form's "Preview" button shows it; with it, the page's script asks
//! `POST /console/program/example` for the same section as the form is edited.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use minijinja::{context, Value};

use super::home::PageQuery;
use super::{ConsolePage, Refused};
use crate::app::{program, Error};
use crate::auth::Admin;
use crate::db::blocking;
use crate::domain::program::{ProgramInput, ProgramRules, RewardRule, Tier, YearToDate};
use crate::domain::{FieldError, Validation};
use crate::store::program::ProgramView;
use crate::web::{resource, Form, WebError};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/console/program").route(web::get().to(show)).route(web::post().to(submit)))
        .service(resource("/console/program/example").route(web::post().to(example)));
}

type AdminPage = ConsolePage<Admin>;

const NAV: &str = "/console/program";
/// Tier rows the form offers at most (a program has a handful).
const TIER_ROWS_MAX: usize = 10;
/// Blank tier rows shown at least, to add tiers without JavaScript.
const TIER_ROWS_MIN: usize = 3;

/// The form's fields by name (what was typed, or the rules in force).
type Values = HashMap<String, String>;

fn tier(i: usize, field: &str) -> String {
    format!("tiers[{i}].{field}")
}

/// The form's values for the rules in force, with the example's starting point: the first
/// completion of the year, nothing earned yet, a treatment of 1,000.00.
fn values_of(view: &ProgramView) -> Values {
    let mut v = Values::new();
    let mut put = |k: &str, value: String| {
        v.insert(k.to_owned(), value);
    };
    put("currency", view.currency.clone());
    match &view.reward {
        RewardRule::Flat { amount_minor } => {
            put("reward.type", "flat".into());
            put("reward.amount_minor", amount_minor.to_string());
        }
        RewardRule::Percent { basis_points, max_minor } => {
            put("reward.type", "percent".into());
            put("reward.basis_points", basis_points.to_string());
            put("reward.max_minor", max_minor.map(|m| m.to_string()).unwrap_or_default());
        }
    }
    for (i, t) in view.tiers.iter().enumerate() {
        put(&tier(i, "min_completed"), t.min_completed.to_string());
        put(&tier(i, "value"), t.amount_minor.or(t.basis_points).map(|x| x.to_string()).unwrap_or_default());
    }
    put("holding_days", view.holding_days.to_string());
    put("min_payout_minor", view.min_payout_minor.to_string());
    put("annual_cap_minor", view.annual_cap_minor.map(|c| c.to_string()).unwrap_or_default());
    put("attribution_days", view.attribution_days.to_string());
    put("client_offer", view.client_offer.clone().unwrap_or_default());
    put("tax_threshold_minor", view.tax_threshold_minor.to_string());
    put("treatment_value_minor", "100000".into());
    put("completed_in_year", "1".into());
    put("earned_this_year_minor", "0".into());
    v
}

fn values_of_form(form: &Form) -> Values {
    form.values().into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

/// Reads the form's fields.
struct Reader<'a> {
    values: &'a Values,
    v: Validation,
}

impl Reader<'_> {
    fn text(&self, field: &str) -> &str {
        self.values.get(field).map_or("", |s| s.trim())
    }

    /// A whole number; blank: `None` (an error when `required`).
    fn whole(&mut self, field: &str, required: bool) -> Option<i64> {
        match self.text(field) {
            "" => {
                if required {
                    self.v.push(field, "must not be empty");
                }
                None
            }
            s => match s.parse::<i64>() {
                Ok(n) => Some(n),
                Err(_) => {
                    self.v.push(field, "must be a whole number");
                    None
                }
            },
        }
    }
}

/// The tier rows in use (either field filled in).
fn tier_rows_used(values: &Values) -> Vec<usize> {
    let filled = |k: String| values.get(&k).is_some_and(|s| !s.trim().is_empty());
    (0..TIER_ROWS_MAX).filter(|&i| filled(tier(i, "min_completed")) || filled(tier(i, "value"))).collect()
}

/// How many tier rows the form shows: those up to the last one in use, and a blank one more.
fn tier_rows(values: &Values) -> usize {
    let used = tier_rows_used(values).last().map_or(0, |i| i + 1);
    (used + 1).clamp(TIER_ROWS_MIN, TIER_ROWS_MAX)
}

/// The rules on the form, checked by `PUT /v1/program`'s own rules ([`ProgramInput::parse`]);
/// refused with every field's message, named after the form's fields.
fn read_rules(values: &Values) -> Result<ProgramRules, Error> {
    let mut r = Reader { values, v: Validation::new() };
    let percent = match r.text("reward.type") {
        "percent" => true,
        "flat" => false,
        _ => {
            r.v.push("reward.type", "must be flat or percent");
            false
        }
    };
    let reward = if percent {
        RewardRule::Percent {
            basis_points: r.whole("reward.basis_points", true).unwrap_or(1),
            max_minor: r.whole("reward.max_minor", false),
        }
    } else {
        RewardRule::Flat { amount_minor: r.whole("reward.amount_minor", true).unwrap_or(1) }
    };
    let rows = tier_rows_used(values);
    let tiers = rows
        .iter()
        .map(|&i| {
            let min_completed = r.whole(&tier(i, "min_completed"), true).unwrap_or(i64::MAX);
            let value = r.whole(&tier(i, "value"), true).unwrap_or(1);
            let (amount_minor, basis_points) = if percent { (None, Some(value)) } else { (Some(value), None) };
            Tier { min_completed, amount_minor, basis_points }
        })
        .collect();
    let input = ProgramInput {
        currency: r.text("currency").to_owned(),
        reward,
        tiers,
        holding_days: r.whole("holding_days", true).unwrap_or(0),
        min_payout_minor: r.whole("min_payout_minor", true).unwrap_or(0),
        annual_cap_minor: r.whole("annual_cap_minor", false),
        attribution_days: r.whole("attribution_days", true).unwrap_or(1),
        client_offer: Some(r.text("client_offer").to_owned()),
        tax_threshold_minor: r.whole("tax_threshold_minor", true).unwrap_or(0),
    };
    // The form's own errors (blank, not a number) first; then the API's for the other fields.
    let mut errors = match r.v.finish() {
        Ok(()) => Vec::new(),
        Err(crate::domain::DomainError::Validation(e)) => e,
        Err(other) => return Err(other.into()),
    };
    match input.parse() {
        Ok(rules) if errors.is_empty() => Ok(rules),
        Ok(_) => Err(Error::Validation(errors)),
        Err(crate::domain::DomainError::Validation(api)) => {
            for e in api {
                let field = form_field(&e.field, &rows);
                if !errors.iter().any(|x| x.field == field) {
                    errors.push(FieldError::new(field, e.message));
                }
            }
            Err(Error::Validation(errors))
        }
        Err(other) => Err(other.into()),
    }
}

/// The form field an API error names: `tiers[k]` is the k-th row in use, and a tier's
/// amount or share is its one `value` field.
fn form_field(api_field: &str, rows: &[usize]) -> String {
    let Some(rest) = api_field.strip_prefix("tiers[") else { return api_field.to_owned() };
    let Some((k, name)) = rest.split_once("].") else { return api_field.to_owned() };
    let row = k.parse::<usize>().ok().and_then(|k| rows.get(k).copied()).unwrap_or(0);
    let name = if matches!(name, "amount_minor" | "basis_points") { "value" } else { name };
    tier(row, name)
}

/// What the example section shows for the rules on the form: the reward with how it was
/// worked out, or why it cannot be.
fn example_of(rules: &Result<ProgramRules, Error>, values: &Values) -> Result<Value, WebError> {
    let Ok(rules) = rules else {
        let problems = match rules {
            Err(Error::Validation(errors)) => {
                errors.iter().map(|e| format!("{}: {}", label_of(&e.field), e.message)).collect()
            }
            _ => Vec::new(),
        };
        return Ok(context! { blocked => true, problems });
    };
    let mut r = Reader { values, v: Validation::new() };
    let value = r.whole("treatment_value_minor", false);
    let nth = r.whole("completed_in_year", true);
    let earned = r.whole("earned_this_year_minor", false).unwrap_or(0);
    if value.is_some_and(|v| v < 0) {
        r.v.push("treatment_value_minor", "must not be negative");
    }
    if nth.is_some_and(|n| !(1..=10_000).contains(&n)) {
        r.v.push("completed_in_year", "must be between 1 and 10000");
    }
    let worked = r.v.finish().map_err(Error::from).and_then(|()| {
        let year = YearToDate { completed_before: nth.unwrap_or(1) - 1, earned_minor: earned };
        program::example(rules, year, value)
    });
    Ok(match worked {
        Ok(c) => context! {
            amount_minor => c.amount_minor,
            uncapped_minor => c.uncapped_minor,
            capped => c.capped_reason.is_some(),
            basis => c.basis,
            earned_this_year_minor => earned,
            currency => rules.currency.as_str(),
            holding_days => rules.holding_days,
        },
        Err(e) => context! { errors => Refused::of(e)?.errors },
    })
}

/// A field's name in words, for the example's list of what to fix first.
fn label_of(field: &str) -> String {
    let label = match field {
        "currency" => "Currency",
        "reward.type" => "Kind of reward",
        "reward.amount_minor" => "Amount per referral",
        "reward.basis_points" => "Share of the treatment value",
        "reward.max_minor" => "Most per referral",
        "holding_days" => "Holding days",
        "min_payout_minor" => "Smallest payout",
        "annual_cap_minor" => "Annual cap",
        "attribution_days" => "Attribution window",
        "client_offer" => "Offer to the friend",
        "tax_threshold_minor" => "Tax threshold",
        other => {
            let row =
                other.strip_prefix("tiers[").and_then(|r| r.split_once(']')).and_then(|(k, _)| k.parse::<usize>().ok());
            return row.map_or_else(|| other.to_owned(), |k| format!("Tier {}", k + 1));
        }
    };
    label.to_owned()
}

impl AdminPage {
    /// The page: the rules in force, their versions (at `cursor`), and the form with `values`.
    async fn program_page(
        &self,
        status: StatusCode,
        values: Option<Values>,
        cursor: &PageQuery,
        form: Value,
    ) -> Result<HttpResponse, WebError> {
        let rows = cursor.page()?;
        let (current, versions) =
            blocking(&self.pool, move |c| Ok::<_, Error>((program::current(c)?, program::versions_named(c, &rows)?)))
                .await?;
        let values = values.unwrap_or_else(|| values_of(&current));
        let example = example_of(&read_rules(&values), &values)?;
        let ctx = context! {
            current,
            versions => versions.items,
            next_cursor => versions.next_cursor,
            paged => cursor.cursor.is_some(),
            tier_rows => tier_rows(&values),
            values,
            example,
            ..form
        };
        self.render(status, "console/program.html", NAV, ctx)
    }
}

async fn show(page: AdminPage, q: web::Query<PageQuery>) -> Result<HttpResponse, WebError> {
    page.program_page(StatusCode::OK, None, &q, context! {}).await
}

/// "Preview" shows the form again with the example (and any refusals), storing nothing;
/// "Save" makes the rules the version in force.
async fn submit(page: AdminPage, form: Form) -> Result<HttpResponse, WebError> {
    page.check(&form)?;
    let values = values_of_form(&form);
    let first = PageQuery { cursor: None };
    let rules = read_rules(&values);
    let done = match (form.text("action").as_str(), rules) {
        ("preview", Ok(_)) => {
            return page.program_page(StatusCode::OK, Some(values), &first, context! { previewed => true }).await
        }
        (_, Err(e)) => Err(e),
        (_, Ok(rules)) => {
            let actor = page.console.who.actor();
            blocking(&page.pool, move |c| program::replace(c, &rules, &actor)).await
        }
    };
    match done {
        Ok(v) => Ok(page.done(
            NAV,
            &format!(
                "Version {} of the rules is in force. Rewards already earned keep the rules they were earned under.",
                v.version
            ),
        )),
        Err(e) => {
            let r = Refused::of(e)?;
            let form = context! { errors => r.errors, summary => r.summary };
            page.program_page(r.status, Some(values), &first, form).await
        }
    }
}

/// The example section alone, for the page's script: worked out for the rules on the form.
async fn example(page: AdminPage, form: Form) -> Result<HttpResponse, WebError> {
    page.check(&form)?;
    let values = values_of_form(&form);
    let rules = read_rules(&values);
    let status = if rules.is_ok() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let example = example_of(&rules, &values)?;
    crate::web::page(status, "console/program_example.html", context! { example }, None)
}
