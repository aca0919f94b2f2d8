//! Admin → API keys: the keys systems use (name, role, prefix, created, last used, revoked);
//! creating one, its secret shown once in the answer to the post itself (never in a flash
//! cookie or a URL; pages are `no-store`, so the browser keeps no copy); revoking one after a
//! confirmation page. The use cases `/v1/api-keys` runs; a refusal shows the API's message.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use minijinja::{context, Value};

use super::team::roles;
use super::{ConsolePage, Refused};
use crate::app::api_keys;
use crate::auth::{Admin, AuthCache};
use crate::db::blocking;
use crate::domain::api_key::NewKey;
use crate::domain::team::parse_role;
use crate::web::{resource, Form, WebError};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/console/api-keys").route(web::get().to(list)).route(web::post().to(create))).service(
        resource("/console/api-keys/{id}/revoke").route(web::get().to(confirm_revoke)).route(web::post().to(revoke)),
    );
}

type AdminPage = ConsolePage<Admin>;

const NAV: &str = "/console/api-keys";
const REVOKE_PAGE: &str = "console/api_key_revoke.html";

impl AdminPage {
    async fn keys_page(&self, status: StatusCode, form: Value) -> Result<HttpResponse, WebError> {
        let keys = blocking(&self.pool, api_keys::list).await?;
        self.render(status, "console/api_keys.html", NAV, context! { keys, roles => roles(), ..form })
    }

    async fn revoke_page(&self, status: StatusCode, id: String, form: Value) -> Result<HttpResponse, WebError> {
        let key = blocking(&self.pool, move |c| api_keys::get(c, &id)).await?;
        self.render(status, REVOKE_PAGE, NAV, context! { key, ..form })
    }
}

async fn list(page: AdminPage) -> Result<HttpResponse, WebError> {
    page.keys_page(StatusCode::OK, context! { values => context! { role => "staff" } }).await
}

async fn create(page: AdminPage, form: Form) -> Result<HttpResponse, WebError> {
    page.check(&form)?;
    let created = match NewKey::parse(&form.text("name"), parse_role(&form.text("role"))) {
        Ok(new) => {
            let actor = page.console.who.actor();
            blocking(&page.pool, move |c| api_keys::create(c, &new, &actor)).await
        }
        Err(e) => Err(e.into()),
    };
    match created {
        // The secret is in this answer only: a redirect would have to carry it somewhere.
        Ok((key, secret)) => page.render(StatusCode::OK, "console/api_key_created.html", NAV, context! { key, secret }),
        Err(e) => {
            let r = Refused::of(e)?;
            let form = context! { errors => r.errors, summary => r.summary, values => form.values() };
            page.keys_page(r.status, form).await
        }
    }
}

async fn confirm_revoke(page: AdminPage, id: web::Path<String>) -> Result<HttpResponse, WebError> {
    page.revoke_page(StatusCode::OK, id.into_inner(), context! {}).await
}

async fn revoke(
    page: AdminPage,
    id: web::Path<String>,
    form: Form,
    cache: web::Data<AuthCache>,
) -> Result<HttpResponse, WebError> {
    page.check(&form)?;
    let (actor, id) = (page.console.who.actor(), id.into_inner());
    let target = id.clone();
    match blocking(&page.pool, move |c| api_keys::revoke(c, &target, &actor)).await {
        Ok(key) => {
            cache.forget_key(&key.id);
            Ok(page.done(NAV, &format!("API key “{}” revoked: it stops working at once.", key.name)))
        }
        Err(e) => {
            let r = Refused::of(e)?;
            page.revoke_page(r.status, id, context! { summary => r.summary, errors => r.errors }).await
        }
    }
}
