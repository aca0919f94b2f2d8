//! The OpenAPI 3.1 document served at `/openapi.json` (and rendered by Swagger UI at `/docs/`).

use std::sync::OnceLock;

use actix_web::http::header::ContentType;
use actix_web::{web, HttpResponse};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Vouch API",
        description = "Referral and ambassador tracking for clinics. Errors are RFC 9457 \
            `application/problem+json`. Every POST accepts an `Idempotency-Key` header.",
    ),
    paths(
        routes::health::healthz, routes::health::readyz, routes::health::metrics,
        routes::api_keys::create, routes::api_keys::list, routes::api_keys::revoke,
        routes::team::invite, routes::team::list, routes::team::get, routes::team::update, routes::team::deactivate,
        routes::team::reactivate,
        routes::ambassadors::enrol, routes::ambassadors::list, routes::ambassadors::get,
        routes::ambassadors::update, routes::ambassadors::lifecycle,
        routes::codes::create, routes::codes::list, routes::codes::deactivate,
        routes::public::lookup_code, routes::public::apply, routes::public::refer,
        routes::portal::login, routes::portal::start_session, routes::portal::logout,
        routes::me::get, routes::me::update, routes::me::codes, routes::me::list_referrals, routes::me::get_referral,
        routes::me::list_rewards, routes::me::list_payouts,
        routes::referrals::create, routes::referrals::list, routes::referrals::get,
        routes::referrals::record_session, routes::referrals::list_sessions,
        routes::referrals::complete, routes::referrals::close_out,
        routes::referrals::update, routes::referrals::erase,
        routes::program::get, routes::program::replace, routes::program::versions,
        routes::rewards::list, routes::rewards::adjust,
        routes::payouts::create, routes::payouts::list, routes::payouts::get, routes::payouts::export,
        routes::payouts::lock, routes::payouts::mark_paid, routes::payouts::cancel, routes::payouts::fail_line,
        routes::reports::summary, routes::reports::annual, routes::reports::annual_csv,
        routes::emails::list, routes::emails::retry,
        routes::audit::list,
        routes::webhooks::create, routes::webhooks::list, routes::webhooks::get, routes::webhooks::update,
        routes::webhooks::delete, routes::webhooks::rotate_secret, routes::webhooks::deliveries,
        routes::webhooks::test, routes::webhooks::replay,
        routes::imports::ambassadors, routes::imports::referrals,
    ),
    // Query-parameter enums are referenced by name but not collected by utoipa: list them.
    components(schemas(
        crate::error::Problem, crate::domain::FieldError,
        routes::emails::EmailStatus, routes::payouts::ExportFormat,
        crate::domain::webhook::DeliveryStatus, crate::domain::webhook::EventType,
        crate::app::webhooks::AmbassadorData, crate::app::webhooks::ReferralData,
        crate::app::webhooks::PayoutLineData, crate::store::rewards::RewardView, crate::store::payouts::PayoutView,
    )),
    modifiers(&BearerAuth, &UniqueOperationIds, &Webhooks),
    tags(
        (name = "ops", description = "Health, readiness, metrics"),
        (name = "api-keys", description = "API keys (admin)"),
        (name = "team", description = "Team members who sign in to the console (admin)"),
        (name = "ambassadors", description = "Ambassadors (staff)"),
        (name = "codes", description = "Referral codes (staff)"),
        (name = "referrals", description = "Referred clients through treatment (staff; finance reads masked)"),
        (name = "public", description = "Public, rate-limited endpoints"),
        (name = "portal", description = "Ambassador sign-in by magic link (public, rate limited)"),
        (name = "me", description = "The signed-in ambassador's own data (portal session token)"),
        (name = "program", description = "Reward rules, versioned (staff and finance read, admin changes)"),
        (name = "rewards", description = "The rewards ledger (finance)"),
        (name = "payouts", description = "Payout batches and CSV exports (finance)"),
        (name = "reports", description = "Funnel, ledger and yearly totals (finance)"),
        (name = "emails", description = "E-mail outbox (admin)"),
        (name = "audit", description = "Audit trail (admin)"),
        (name = "webhooks", description = "Webhook endpoints, deliveries and replays (admin); the events are under `webhooks`"),
        (name = "imports", description = "CSV imports (admin)"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

/// utoipa names an operation after its handler function, and handlers in different modules
/// share names (`list`, `get`, `create`, `update`): client generators need every
/// `operationId` unique, so each is prefixed with its tag (`referrals_list`, `me_get`).
struct UniqueOperationIds;

impl Modify for UniqueOperationIds {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ];
            for op in operations.into_iter().flatten() {
                let tag = op.tags.as_ref().and_then(|t| t.first()).map(|t| t.replace('-', "_"));
                if let (Some(tag), Some(id)) = (tag, op.operation_id.as_mut()) {
                    *id = format!("{tag}_{id}");
                }
            }
        }
    }
}

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key `vk_live_…` (admin, staff or finance), or a portal session token `vp_…` (ambassador)"))
                    .build(),
            ),
        );
    }
}

/// The events Vouch sends, as the OpenAPI 3.1 `webhooks` section (utoipa 5 has no field for
/// it, so it goes in as a top-level member): one POST per event type, its body the
/// versioned envelope around the record's schema, signed per Standard Webhooks.
struct Webhooks;

impl Modify for Webhooks {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use crate::domain::audit::EntityType;
        use crate::domain::webhook::{EventType, PAYLOAD_VERSION};
        use serde_json::json;
        let header = |name: &str, description: &str| {
            json!({ "name": name, "in": "header", "required": true, "description": description,
                "schema": { "type": "string" } })
        };
        let parameters = json!([
            header("webhook-id", "The event's id: the same on every retry and replay (use it to ignore duplicates)."),
            header("webhook-timestamp", "This attempt's time, Unix seconds (refuse ones too far from now)."),
            header(
                "webhook-signature",
                "`v1,<base64 HMAC-SHA256 of \"{webhook-id}.{webhook-timestamp}.{body}\">` with the endpoint's \
                 secret (base64 after `whsec_`); during a secret rotation two, space-separated: accept either.",
            ),
        ]);
        let mut hooks = serde_json::Map::new();
        for event in EventType::ALL {
            let (schema, what) = match event.entity() {
                EntityType::Ambassador => ("AmbassadorData", "the ambassador"),
                EntityType::Referral => {
                    ("ReferralData", "the referral (client names and contact only to staff systems)")
                }
                EntityType::Reward => ("RewardView", "the ledger entry as finance sees it"),
                EntityType::PayoutLine => ("PayoutLineData", "the failed payout line and its batch"),
                _ => ("PayoutView", "the payout batch (without its lines)"),
            };
            let body = json!({
                "type": "object",
                "required": ["type", "version", "timestamp", "data"],
                "properties": {
                    "type": { "type": "string", "const": event.as_str() },
                    "version": { "type": "integer", "const": PAYLOAD_VERSION,
                        "description": "The payload schema's version; a breaking change gets a new one." },
                    "timestamp": { "type": "string", "format": "date-time", "description": "When the change happened." },
                    "data": { "$ref": format!("#/components/schemas/{schema}") },
                },
            });
            hooks.insert(
                event.as_str().to_owned(),
                json!({ "post": {
                    "operationId": format!("webhook_{}", event.as_str().replace('.', "_")),
                    "summary": format!("{event}: {what}"),
                    "tags": ["webhooks"],
                    "parameters": parameters,
                    "requestBody": { "required": true, "content": { "application/json": { "schema": body } } },
                    "responses": {
                        "2XX": { "description": "Received. Any other answer (or none within the timeout) is retried \
                            with backoff; redirects are not followed." },
                    },
                } }),
            );
        }
        openapi.extensions.get_or_insert_with(Default::default).insert("webhooks".into(), hooks.into());
    }
}

/// `GET /openapi.json`: the document, built and serialised once — on the first request, not at
/// start-up — and shared by every worker. Building it runs much code and makes about a
/// megabyte of schema values; an idle server keeps neither, and no request rebuilds it.
pub async fn document() -> HttpResponse {
    static JSON: OnceLock<web::Bytes> = OnceLock::new();
    let json = JSON.get_or_init(|| {
        web::Bytes::from(serde_json::to_vec(&ApiDoc::openapi()).expect("the OpenAPI document serialises"))
    });
    HttpResponse::Ok().content_type(ContentType::json()).body(json.clone())
}
