//! Finance → Ledger: the rewards ledger filtered by status, kind and ambassador (newest first,
//! paginated; each row names its ambassador), the ambassador's balance when one is chosen, and
//! the manual adjustment form (an amount of money in the program's currency; the use case
//! `POST /v1/rewards/adjustments` runs; a refusal shows the API's message on the form and stores
//! nothing).

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use minijinja::{context, Value};
use serde::{Deserialize, Serialize};

use super::{list_query, ConsolePage, Refused, PAGE_ROWS};
use crate::app::{input, program, rewards};
use crate::auth::Finance;
use crate::db::{blocking, now};
use crate::domain::calendar::Calendar;
use crate::domain::money::{Currency, Money};
use crate::domain::reward::{RewardKind, RewardStatus};
use crate::store::rewards::{RewardFilter, RewardView};
use crate::store::PageRequest;
use crate::web::{resource, Form, WebError};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/console/ledger").route(web::get().to(list)).route(web::post().to(adjust)));
}

type FinancePage = ConsolePage<Finance>;

/// The ledger's filters and position; empty fields mean "any".
#[derive(Debug, Default, Deserialize, Serialize)]
struct LedgerQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    ambassador_id: String,
    cursor: Option<String>,
}

impl LedgerQuery {
    fn filter(&self) -> Result<RewardFilter, crate::app::Error> {
        let pick = |s: &str| s.trim().to_owned();
        let status = match pick(&self.status).as_str() {
            "" => None,
            s => {
                Some(RewardStatus::parse(s).ok_or_else(|| crate::app::Error::validation("status", "is not a status"))?)
            }
        };
        let kind = match pick(&self.kind).as_str() {
            "" => None,
            k => Some(RewardKind::parse(k).ok_or_else(|| crate::app::Error::validation("kind", "is not a kind"))?),
        };
        let ambassador_id = Some(pick(&self.ambassador_id)).filter(|a| !a.is_empty());
        Ok(RewardFilter { ambassador_id, referral_id: None, status, kind })
    }

    /// The query string of the next page (same filters).
    fn next(&self, cursor: &str) -> String {
        list_query(
            &[("status", &self.status), ("kind", &self.kind), ("ambassador_id", &self.ambassador_id)],
            Some(cursor),
        )
    }
}

impl FinancePage {
    async fn ledger(&self, status: StatusCode, q: LedgerQuery, form: Value) -> Result<HttpResponse, WebError> {
        let filter = q.filter()?;
        let rows = PageRequest::parse(Some(PAGE_ROWS), q.cursor.as_deref())?;
        let one = filter.ambassador_id.clone();
        let (page, names, balance, currency) = blocking(&self.pool, move |c| {
            let (page, names) = rewards::list_named(c, &filter, &rows)?;
            let balance = one.map(|a| rewards::balance(c, &a)).transpose()?;
            let currency = program::current(c)?.currency;
            Ok::<_, crate::app::Error>((page, names, balance, currency))
        })
        .await?;
        let at = now();
        let page = page.map(|r| RewardView::new(r, at));
        let next = page.next_cursor.as_deref().map(|c| q.next(c));
        let ctx = context! {
            rewards => page.items,
            names,
            next,
            balance,
            currency,
            q,
            statuses => RewardStatus::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            kinds => RewardKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
            ..form
        };
        self.render(status, "console/ledger.html", "/console/ledger", ctx)
    }
}

async fn list(page: FinancePage, q: web::Query<LedgerQuery>) -> Result<HttpResponse, WebError> {
    page.ledger(StatusCode::OK, q.into_inner(), context! {}).await
}

/// The adjustment form: the amount is money in the program's currency (`12.50`, `-3.20`),
/// parsed here into minor units; an id that is no ambassador's is refused on the form.
async fn adjust(page: FinancePage, form: Form, calendar: web::Data<Calendar>) -> Result<HttpResponse, WebError> {
    page.check(&form)?;
    let ambassador_id = form.text("ambassador_id").trim().to_owned();
    let (actor, cal, id) = (page.console.who.actor(), **calendar, ambassador_id.clone());
    let (amount, reason) = (form.text("amount"), form.text("reason"));
    let done = blocking(&page.pool, move |c| {
        let currency = Currency::from_stored(&program::current(c)?.currency);
        let typed = Money::parse(&amount, currency).map(|m| m.minor);
        let (amount, reason) = input::parse_adjustment("amount", typed, &reason)?;
        rewards::adjust(c, &cal, &id, amount, &reason, &actor).map_err(|e| match e {
            crate::app::Error::NotFound("ambassador") => {
                crate::app::Error::validation("ambassador_id", "is not the id of an ambassador")
            }
            e => e,
        })
    })
    .await;
    match done {
        Ok(row) => {
            let to = format!("/console/ledger?ambassador_id={}", row.ambassador_id);
            Ok(page.done(&to, "Adjustment added: payable in the next batch."))
        }
        Err(e) => {
            let (status, form) = Refused::form(e, &form)?;
            let q = LedgerQuery { ambassador_id, ..LedgerQuery::default() };
            page.ledger(status, q, form).await
        }
    }
}
