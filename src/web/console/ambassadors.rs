//! Staff → Ambassadors: the list (status filter and search, newest first, paginated),
//! enrolment, an ambassador's page (contact, status, payout method, consent, codes, referrals,
//! balance), the lifecycle steps after a confirmation page (approve, decline, suspend,
//! reactivate, close; a reason where the API wants one), editing the profile (`PATCH
//! /v1/ambassadors/{id}`'s fields), adding a code, deactivating one after
//! a confirmation page, and the printable share page (a QR code per active code, drawn here as
//! SVG). Each is the use case `/v1/ambassadors` and `/v1/codes` run; a refusal shows the API's
//! message on the form and changes nothing.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use minijinja::{context, Value};
use serde::{Deserialize, Serialize};

use super::home::PageQuery;
use super::{list_query, ConsolePage, Refused, PAGE_ROWS};
use crate::app::ambassadors::{self, AmbassadorView};
use crate::app::input::{lifecycle_reason, parse_ambassador_edit, parse_enrolment, search_text};
use crate::app::input::{AmbassadorEdit, EnrolmentInput};
use crate::app::{codes, program, referrals, Error};
use crate::auth::{AuthCache, Staff};
use crate::db::blocking;
use crate::domain::ambassador::{self as lifecycle, AmbassadorStatus, LifecycleEvent};
use crate::domain::ambassador::{NotificationPreferences, PayoutMethod};
use crate::domain::calendar::Calendar;
use crate::domain::code::ReferralCode;
use crate::domain::reward::Balance;
use crate::domain::Validation;
use crate::email::MailContext;
use crate::store::ambassadors::{AmbassadorFilter, Enrolment};
use crate::store::referrals::ReferralFilter;
use crate::store::PageRequest;
use crate::web::{resource, Form, WebError};

pub fn configure(cfg: &mut web::ServiceConfig) {
    // `new` before `{id}`: resources match in the order they are registered.
    cfg.service(resource("/console/ambassadors").route(web::get().to(list)).route(web::post().to(enrol)))
        .service(resource("/console/ambassadors/new").route(web::get().to(new_form)))
        .service(resource("/console/ambassadors/{id}").route(web::get().to(show)))
        .service(resource("/console/ambassadors/{id}/share").route(web::get().to(share)))
        .service(resource("/console/ambassadors/{id}/profile").route(web::post().to(edit_profile)))
        .service(resource("/console/ambassadors/{id}/codes").route(web::post().to(add_code)))
        .service(
            resource("/console/ambassadors/{id}/codes/{code}/deactivate")
                .route(web::get().to(confirm_deactivate))
                .route(web::post().to(deactivate)),
        );
    for event in LifecycleEvent::ALL {
        cfg.service(
            resource(&format!("/console/ambassadors/{{id}}/{}", event.as_str()))
                .app_data(web::Data::new(event))
                .route(web::get().to(confirm_step))
                .route(web::post().to(step)),
        );
    }
}

type StaffPage = ConsolePage<Staff>;

const NAV: &str = "/console/ambassadors";
const NEW_PAGE: &str = "console/ambassador_new.html";
const DETAIL_PAGE: &str = "console/ambassador.html";
const STEP_PAGE: &str = "console/ambassador_step.html";
const DEACTIVATE_PAGE: &str = "console/code_deactivate.html";
/// Referrals on an ambassador's page; older ones are a page further.
const REFERRAL_ROWS: i64 = 10;

fn href(id: &str) -> String {
    format!("/console/ambassadors/{id}")
}

/// The list's filters and position; empty fields mean "any".
#[derive(Debug, Default, Deserialize, Serialize)]
struct ListQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    q: String,
    cursor: Option<String>,
}

impl ListQuery {
    fn filter(&self) -> Result<AmbassadorFilter, Error> {
        let status = match self.status.trim() {
            "" => None,
            s => Some(AmbassadorStatus::parse(s).ok_or_else(|| Error::validation("status", "is not a status"))?),
        };
        Ok(AmbassadorFilter { status, q: search_text(Some(&self.q))? })
    }
}

/// What a lifecycle step is called on its button and in its flash message.
fn step_ctx(event: LifecycleEvent) -> Value {
    context! { action => event.as_str(), reason_required => event.requires_reason() }
}

fn flash_after(event: LifecycleEvent, name: &str) -> String {
    match event {
        LifecycleEvent::Approve => format!("{name} is approved: the welcome e-mail with their code is on its way."),
        LifecycleEvent::Decline => format!("{name}'s application is declined."),
        LifecycleEvent::Suspend => {
            format!("{name} is suspended: their codes take no referrals and their rewards are held.")
        }
        LifecycleEvent::Reactivate => format!("{name} is active again: their codes take referrals."),
        LifecycleEvent::Close => format!("{name}'s membership is closed."),
    }
}

/// The payout method chosen on the enrolment form (`None`: not given yet).
fn payout_method(form: &Form) -> Result<Option<PayoutMethod>, Error> {
    match form.text("payout_method").as_str() {
        "" => Ok(None),
        "paypal" => Ok(Some(PayoutMethod::Paypal { email: form.text("payout_email") })),
        "bank" => Ok(Some(PayoutMethod::Bank { reference: form.text("payout_reference") })),
        "store_credit" => Ok(Some(PayoutMethod::StoreCredit)),
        _ => Err(Error::validation("payout_method", "must be paypal, bank or store_credit")),
    }
}

/// The share link as a QR code: inline SVG (no image request, sharp when printed), named for
/// screen readers.
fn qr_svg(url: &str, code: &str) -> Result<String, Error> {
    let qr = qrcode::QrCode::with_error_correction_level(url.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| Error::internal(format!("QR code of {url}: {e}")))?;
    let svg = qr.render::<qrcode::render::svg::Color<'_>>().min_dimensions(240, 240).quiet_zone(true).build();
    // The renderer writes a standalone document: inline, the element alone. Codes are
    // `A-Z 0-9 -` only, safe inside the attribute.
    let start = svg.find("<svg").ok_or_else(|| Error::internal("the QR renderer wrote no <svg>"))?;
    Ok(svg[start..].replacen(
        "<svg",
        &format!("<svg role=\"img\" aria-label=\"QR code of the share link for code {code}\""),
        1,
    ))
}

// Free functions, not methods: `ConsolePage<Staff>` is shared with the other staff pages.
fn calendar(page: &StaffPage) -> Calendar {
    ***page.req.app_data::<web::Data<Calendar>>().expect("calendar registered")
}

fn view(page: &StaffPage, ((row, codes, counts), balance): (ambassadors::Full, Balance)) -> AmbassadorView {
    AmbassadorView::new(row, codes, counts, &page.settings.public_url()).with_balance(balance)
}

async fn list_page(page: &StaffPage, q: ListQuery) -> Result<HttpResponse, WebError> {
    let filter = q.filter()?;
    let rows = PageRequest::parse(Some(PAGE_ROWS), q.cursor.as_deref())?;
    let found = blocking(&page.pool, move |c| ambassadors::list(c, &filter, &rows)).await?;
    let url = page.settings.public_url();
    let found = found.map(|(row, codes, counts)| {
        let view = AmbassadorView::new(row, codes, counts, &url);
        let referrals: i64 = view.referral_counts.values().sum();
        context! { referrals => referrals, ..Value::from_serialize(&view) }
    });
    let filters = [("status", q.status.as_str()), ("q", q.q.as_str())];
    let next = found.next_cursor.as_deref().map(|c| list_query(&filters, Some(c)));
    let newest = list_query(&filters, None);
    let filtered = !newest.is_empty();
    let ctx = context! {
        ambassadors => found.items,
        next,
        newest,
        q,
        filtered,
        statuses => AmbassadorStatus::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
    };
    page.render(StatusCode::OK, "console/ambassadors.html", NAV, ctx)
}

/// The ambassador as their page shows them, with a page of their referrals (newest
/// first; clients as first name and initial) and the steps their status allows.
async fn load(page: &StaffPage, id: String, cursor: &PageQuery) -> Result<(AmbassadorView, Value), WebError> {
    let rows = PageRequest::parse(Some(REFERRAL_ROWS), cursor.cursor.as_deref())?;
    let cal = calendar(page);
    let (detail, refs) = blocking(&page.pool, move |c| {
        let detail = ambassadors::detail(c, &id)?;
        let filter = ReferralFilter { ambassador_id: Some(id), ..ReferralFilter::default() };
        Ok::<_, Error>((detail, referrals::search(c, &cal, &filter, &rows)?))
    })
    .await?;
    let view = view(page, detail);
    let refs = refs.map(|(r, code)| {
        context! {
            id => r.id,
            first_name => r.client_first_name,
            last_initial => r.client_last_name.as_deref().and_then(|l| l.chars().next()).map(String::from),
            status => r.status.as_str(),
            registered_on => r.registered_on(&cal).to_string(),
            code,
        }
    });
    let status = view.status;
    let steps: Vec<&str> = LifecycleEvent::ALL
        .into_iter()
        .filter(|e| lifecycle::transition(status, *e).is_ok())
        .map(LifecycleEvent::as_str)
        .collect();
    let ctx = context! {
        ambassador => view,
        referrals => refs.items,
        next_cursor => refs.next_cursor,
        paged => cursor.cursor.is_some(),
        steps,
        can_add_code => !matches!(status, AmbassadorStatus::Closed | AmbassadorStatus::Declined),
    };
    Ok((view, ctx))
}

/// A page about one ambassador (`template`), with `extra` (a refused form, a step).
async fn ambassador_page(
    page: &StaffPage,
    status: StatusCode,
    template: &str,
    id: String,
    extra: Value,
) -> Result<HttpResponse, WebError> {
    let (_, ctx) = load(page, id, &PageQuery { cursor: None }).await?;
    page.render(status, template, NAV, context! { ..extra, ..ctx })
}

/// The step that deactivates one of the ambassador's codes (404 for anyone else's).
async fn code_page(
    page: &StaffPage,
    status: StatusCode,
    id: String,
    code_id: &str,
    extra: Value,
) -> Result<HttpResponse, WebError> {
    let (view, ctx) = load(page, id, &PageQuery { cursor: None }).await?;
    let code = view.codes.into_iter().find(|c| c.id == code_id).ok_or(Error::NotFound("referral code"))?;
    page.render(status, DEACTIVATE_PAGE, NAV, context! { code => code, ..context! { ..extra, ..ctx } })
}

async fn list(page: StaffPage, q: web::Query<ListQuery>) -> Result<HttpResponse, WebError> {
    list_page(&page, q.into_inner()).await
}

async fn new_form(page: StaffPage) -> Result<HttpResponse, WebError> {
    let values = context! { referral_updates => "yes", reward_updates => "yes" };
    page.render(StatusCode::OK, NEW_PAGE, NAV, context! { values })
}

async fn enrol(page: StaffPage, form: Form) -> Result<HttpResponse, WebError> {
    page.check(&form)?;
    let (phone, display_name, notes, code) =
        (form.optional("phone"), form.optional("display_name"), form.optional("notes"), form.optional("code"));
    let parsed = payout_method(&form).and_then(|payout_method| {
        let input = EnrolmentInput {
            name: &form.text("name"),
            email: &form.text("email"),
            phone: phone.as_deref(),
            display_name: display_name.as_deref(),
            show_name_to_referrals: form.checked("show_name_to_referrals"),
            payout_method,
            notification_preferences: Some(NotificationPreferences {
                referral_updates: form.checked("referral_updates"),
                reward_updates: form.checked("reward_updates"),
            }),
            notes: notes.as_deref(),
            code: code.as_deref(),
        };
        Ok(parse_enrolment(&page.settings, input)?)
    });
    let enrolled = match parsed {
        Ok(new) => {
            let (actor, mail) = (page.console.who.actor(), MailContext::new(&page.settings));
            blocking(&page.pool, move |c| ambassadors::enrol(c, &new, Enrolment::ByStaff, &mail, &actor)).await
        }
        Err(e) => Err(e),
    };
    match enrolled {
        Ok((row, codes)) => {
            let code = codes.first().map(|c| format!(" with code {}", c.code)).unwrap_or_default();
            Ok(page.done(&href(&row.id), &format!("{} is enrolled{code}. The welcome e-mail is on its way.", row.name)))
        }
        Err(e) => {
            let (status, refusal) = Refused::form(e, &form)?;
            page.render(status, NEW_PAGE, NAV, refusal)
        }
    }
}

async fn show(page: StaffPage, id: web::Path<String>, q: web::Query<PageQuery>) -> Result<HttpResponse, WebError> {
    let (_, ctx) = load(&page, id.into_inner(), &q).await?;
    page.render(StatusCode::OK, DETAIL_PAGE, NAV, ctx)
}

async fn confirm_step(
    page: StaffPage,
    id: web::Path<String>,
    event: web::Data<LifecycleEvent>,
) -> Result<HttpResponse, WebError> {
    ambassador_page(&page, StatusCode::OK, STEP_PAGE, id.into_inner(), step_ctx(**event)).await
}

async fn step(
    page: StaffPage,
    id: web::Path<String>,
    event: web::Data<LifecycleEvent>,
    cache: web::Data<AuthCache>,
    form: Form,
) -> Result<HttpResponse, WebError> {
    page.check(&form)?;
    let (event, id) = (**event, id.into_inner());
    let done = match lifecycle_reason(event, form.optional("reason").as_deref()) {
        Ok(reason) => {
            let (actor, mail, target) = (page.console.who.actor(), MailContext::new(&page.settings), id.clone());
            blocking(&page.pool, move |c| ambassadors::transition(c, &target, event, reason.as_deref(), &mail, &actor))
                .await
        }
        Err(e) => Err(e.into()),
    };
    match done {
        Ok(row) => {
            // Only an active ambassador's portal sessions sign in.
            cache.forget_ambassador(&row.id);
            Ok(page.done(&href(&id), &flash_after(event, &row.name)))
        }
        Err(e) => {
            let (status, refusal) = Refused::form(e, &form)?;
            ambassador_page(&page, status, STEP_PAGE, id, context! { ..refusal, ..step_ctx(event) }).await
        }
    }
}

/// The edit form sends every field: a blank one clears it (name and e-mail are required), an
/// unticked box turns it off, and the payout method is chosen as on the enrolment form.
async fn edit_profile(
    page: StaffPage,
    id: web::Path<String>,
    cache: web::Data<AuthCache>,
    form: Form,
) -> Result<HttpResponse, WebError> {
    page.check(&form)?;
    let id = id.into_inner();
    let edited = match payout_method(&form) {
        Ok(method) => {
            let (name, email) = (form.text("name"), form.text("email"));
            let typed: Vec<Option<String>> =
                ["phone", "display_name", "notes"].iter().map(|f| form.optional(f)).collect();
            let mut v = Validation::new();
            let changes = parse_ambassador_edit(
                &mut v,
                &page.settings,
                AmbassadorEdit {
                    name: Some(&name),
                    email: Some(&email),
                    phone: Some(typed[0].as_deref()),
                    display_name: Some(typed[1].as_deref()),
                    show_name_to_referrals: Some(form.checked("show_name_to_referrals")),
                    payout_method: Some(method),
                    notification_preferences: Some(NotificationPreferences {
                        referral_updates: form.checked("referral_updates"),
                        reward_updates: form.checked("reward_updates"),
                    }),
                    notes: Some(typed[2].as_deref()),
                },
            );
            match v.finish() {
                Ok(()) => {
                    let (actor, target) = (page.console.who.actor(), id.clone());
                    blocking(&page.pool, move |c| ambassadors::update(c, &target, &changes, &actor)).await
                }
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e),
    };
    match edited {
        Ok(row) => {
            // A new e-mail address ends their portal sessions (as through the API).
            cache.forget_ambassador(&row.id);
            Ok(page.done(&href(&id), &format!("{}'s profile is saved.", row.name)))
        }
        Err(e) => {
            let (status, refusal) = Refused::form(e, &form)?;
            ambassador_page(&page, status, DETAIL_PAGE, id, context! { refused => "profile", ..refusal }).await
        }
    }
}

async fn add_code(page: StaffPage, id: web::Path<String>, form: Form) -> Result<HttpResponse, WebError> {
    page.check(&form)?;
    let id = id.into_inner();
    let vanity = form
        .optional("code")
        .map(|c| ReferralCode::parse_vanity(&c))
        .transpose()
        .map_err(|m| Error::validation("code", m));
    let added = match vanity {
        Ok(vanity) => {
            let (actor, target) = (page.console.who.actor(), id.clone());
            blocking(&page.pool, move |c| codes::create(c, &target, vanity.as_ref(), &actor)).await
        }
        Err(e) => Err(e),
    };
    match added {
        Ok(code) => Ok(page.done(&href(&id), &format!("Code {} added: it takes referrals now.", code.code))),
        Err(e) => {
            let (status, refusal) = Refused::form(e, &form)?;
            ambassador_page(&page, status, DETAIL_PAGE, id, context! { refused => "code", ..refusal }).await
        }
    }
}

async fn confirm_deactivate(page: StaffPage, path: web::Path<(String, String)>) -> Result<HttpResponse, WebError> {
    let (id, code_id) = path.into_inner();
    code_page(&page, StatusCode::OK, id, &code_id, context! {}).await
}

async fn deactivate(page: StaffPage, path: web::Path<(String, String)>, form: Form) -> Result<HttpResponse, WebError> {
    page.check(&form)?;
    let (id, code_id) = path.into_inner();
    let (actor, ambassador, wanted) = (page.console.who.actor(), id.clone(), code_id.clone());
    let done = blocking(&page.pool, move |c| {
        // Only a code of this ambassador, whatever the address says.
        let code = codes::list(c, &ambassador)?
            .into_iter()
            .find(|k| k.id == wanted)
            .ok_or(Error::NotFound("referral code"))?;
        codes::deactivate(c, &code.code, &actor)
    })
    .await;
    match done {
        Ok(code) => Ok(page.done(&href(&id), &format!("Code {} is deactivated; it stays reserved.", code.code))),
        Err(e) => {
            let (status, refusal) = Refused::form(e, &form)?;
            code_page(&page, status, id, &code_id, refusal).await
        }
    }
}

/// The printable page the clinic hands out: per active code, the share link and its QR code.
async fn share(page: StaffPage, id: web::Path<String>) -> Result<HttpResponse, WebError> {
    let id = id.into_inner();
    let (detail, offer) = blocking(&page.pool, move |c| {
        let detail = ambassadors::detail(c, &id)?;
        Ok::<_, Error>((detail, program::current(c)?.client_offer))
    })
    .await?;
    let view = view(&page, detail);
    let links = view
        .codes
        .iter()
        .filter(|c| c.active)
        .map(|c| {
            let qr = Value::from_safe_string(qr_svg(&c.share_url, &c.code)?);
            Ok(context! { code => c.code, url => c.share_url, qr })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let ctx = context! { ambassador => view, links, offer };
    page.render(StatusCode::OK, "console/ambassador_share.html", NAV, ctx)
}
