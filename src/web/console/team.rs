//! Admin → Team: the members, inviting one, changing a role, deactivating (after a
//! confirmation page). Each is a form post on the same use cases and rules as `/v1/team`; a
//! refusal shows the API's message on the form and changes nothing.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use minijinja::{context, Value};

use super::home::PageQuery;
use super::{flash, render, Console, Refused};
use crate::app::team::{self, Invitation, Member};
use crate::auth::Admin;
use crate::config::Settings;
use crate::db::{blocking, DbPool};
use crate::domain::team::{parse_role, NewMember, Role};
use crate::web::{resource, see_other, CsrfKey, Form, WebError};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/console/team").route(web::get().to(list)).route(web::post().to(invite)))
        .service(resource("/console/team/{id}").route(web::get().to(member)))
        .service(resource("/console/team/{id}/role").route(web::post().to(change_role)))
        .service(
            resource("/console/team/{id}/deactivate")
                .route(web::get().to(confirm_deactivate))
                .route(web::post().to(deactivate)),
        );
}

/// What the pages of one request share.
struct Ctx<'a> {
    req: &'a HttpRequest,
    console: &'a Console<Admin>,
    pool: &'a DbPool,
    settings: &'a Settings,
    key: &'a CsrfKey,
}

impl Ctx<'_> {
    fn render(&self, status: StatusCode, template: &str, ctx: Value) -> Result<HttpResponse, WebError> {
        render(self.req, self.key, self.settings, self.console, (status, template, "/console/team"), ctx)
    }

    /// The team list with the invitation form (`form`: what was typed, and why it was refused).
    async fn list_page(&self, status: StatusCode, cursor: &PageQuery, form: Value) -> Result<HttpResponse, WebError> {
        let page = cursor.page()?;
        let members = blocking(self.pool, move |c| team::list(c, &page)).await?;
        let roles: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
        let ctx = context! {
            members => members.items,
            next_cursor => members.next_cursor,
            paged => cursor.cursor.is_some(),
            roles,
            ..form
        };
        self.render(status, "console/team.html", ctx)
    }

    async fn load(&self, id: String) -> Result<Member, WebError> {
        Ok(blocking(self.pool, move |c| team::get(c, &id)).await?)
    }

    /// A member's page (`template`: their details, or the deactivation step).
    fn member_page(
        &self,
        status: StatusCode,
        template: &str,
        m: &Member,
        form: Value,
    ) -> Result<HttpResponse, WebError> {
        let roles: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
        let is_self = m.id == self.console.who.member.id;
        self.render(status, template, context! { member => m, roles, is_self, ..form })
    }
}

async fn list(
    req: HttpRequest,
    console: Console<Admin>,
    pool: web::Data<DbPool>,
    settings: web::Data<Settings>,
    key: web::Data<CsrfKey>,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, WebError> {
    let ctx = Ctx { req: &req, console: &console, pool: &pool, settings: &settings, key: &key };
    ctx.list_page(StatusCode::OK, &q, context! { values => context! { role => "staff" } }).await
}

async fn invite(
    req: HttpRequest,
    console: Console<Admin>,
    pool: web::Data<DbPool>,
    settings: web::Data<Settings>,
    key: web::Data<CsrfKey>,
    form: Form,
) -> Result<HttpResponse, WebError> {
    key.check(Some(&console.binding()), &form)?;
    let ctx = Ctx { req: &req, console: &console, pool: &pool, settings: &settings, key: &key };
    let parsed =
        NewMember::parse(form.optional("name").as_deref(), &form.text("email"), parse_role(&form.text("role")));
    let invited = match parsed {
        Ok(new) => {
            let (actor, url) = (console.who.actor(), settings.public_url());
            blocking(&pool, move |c| team::invite(c, &new, Invitation::Email { public_url: &url }, &actor)).await
        }
        Err(e) => Err(e.into()),
    };
    match invited {
        Ok((m, _)) => {
            let message = format!("Invitation sent to {} <{}>.", m.name, m.email);
            Ok(see_other("/console/team").cookie(flash(&settings, &key, &message)).finish())
        }
        Err(e) => {
            let r = Refused::of(e)?;
            let form = context! { errors => r.errors, summary => r.summary, values => form.values() };
            ctx.list_page(r.status, &PageQuery { cursor: None }, form).await
        }
    }
}

async fn member(
    req: HttpRequest,
    console: Console<Admin>,
    pool: web::Data<DbPool>,
    settings: web::Data<Settings>,
    key: web::Data<CsrfKey>,
    id: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let ctx = Ctx { req: &req, console: &console, pool: &pool, settings: &settings, key: &key };
    let m = ctx.load(id.into_inner()).await?;
    let values = context! { role => m.role.as_str() };
    ctx.member_page(StatusCode::OK, "console/member.html", &m, context! { values })
}

async fn change_role(
    req: HttpRequest,
    console: Console<Admin>,
    pool: web::Data<DbPool>,
    settings: web::Data<Settings>,
    key: web::Data<CsrfKey>,
    id: web::Path<String>,
    form: Form,
) -> Result<HttpResponse, WebError> {
    key.check(Some(&console.binding()), &form)?;
    let ctx = Ctx { req: &req, console: &console, pool: &pool, settings: &settings, key: &key };
    let id = id.into_inner();
    let changed = match parse_role(&form.text("role")) {
        Ok(role) => {
            let (actor, id) = (console.who.actor(), id.clone());
            blocking(&pool, move |c| team::change_role(c, &id, role, &actor)).await
        }
        Err(message) => Err(crate::error::ApiError::validation("role", message)),
    };
    match changed {
        Ok(m) => {
            let message = format!("{} is now {}. Their console sessions have ended.", m.name, m.role);
            let to =
                if m.id == console.who.member.id { "/console".to_owned() } else { format!("/console/team/{}", m.id) };
            Ok(see_other(&to).cookie(flash(&settings, &key, &message)).finish())
        }
        Err(e) => {
            let r = Refused::of(e)?;
            let m = ctx.load(id).await?;
            let form = context! { errors => r.errors, summary => r.summary, values => form.values() };
            ctx.member_page(r.status, "console/member.html", &m, form)
        }
    }
}

async fn confirm_deactivate(
    req: HttpRequest,
    console: Console<Admin>,
    pool: web::Data<DbPool>,
    settings: web::Data<Settings>,
    key: web::Data<CsrfKey>,
    id: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let ctx = Ctx { req: &req, console: &console, pool: &pool, settings: &settings, key: &key };
    let m = ctx.load(id.into_inner()).await?;
    ctx.member_page(StatusCode::OK, "console/deactivate.html", &m, context! {})
}

async fn deactivate(
    req: HttpRequest,
    console: Console<Admin>,
    pool: web::Data<DbPool>,
    settings: web::Data<Settings>,
    key: web::Data<CsrfKey>,
    id: web::Path<String>,
    form: Form,
) -> Result<HttpResponse, WebError> {
    key.check(Some(&console.binding()), &form)?;
    let ctx = Ctx { req: &req, console: &console, pool: &pool, settings: &settings, key: &key };
    let (actor, id) = (console.who.actor(), id.into_inner());
    let target = id.clone();
    match blocking(&pool, move |c| team::deactivate(c, &target, &actor)).await {
        Ok(m) => {
            let message = format!("{} is deactivated and signed out everywhere.", m.name);
            Ok(see_other("/console/team").cookie(flash(&settings, &key, &message)).finish())
        }
        Err(e) => {
            let r = Refused::of(e)?;
            let m = ctx.load(id).await?;
            ctx.member_page(r.status, "console/deactivate.html", &m, context! { summary => r.summary })
        }
    }
}
