//! Admin → Team: the members, inviting one, changing a role, deactivating (after a
//! confirmation page), reactivating. Each is a form post on the same use cases and rules as `/v1/team`; a
//! refusal shows the API's message on the form and changes nothing.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use minijinja::{context, Value};

use super::home::PageQuery;
use super::{ConsolePage, Refused};
use crate::app::team::{self, Invitation, Member};
use crate::auth::Admin;
use crate::db::blocking;
use crate::domain::team::{parse_role, NewMember, Role};
use crate::web::{resource, Form, WebError};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/console/team").route(web::get().to(list)).route(web::post().to(invite)))
        .service(resource("/console/team/{id}").route(web::get().to(member)))
        .service(resource("/console/team/{id}/role").route(web::post().to(change_role)))
        .service(
            resource("/console/team/{id}/deactivate")
                .route(web::get().to(confirm_deactivate))
                .route(web::post().to(deactivate)),
        )
        .service(resource("/console/team/{id}/reactivate").route(web::post().to(reactivate)));
}

type AdminPage = ConsolePage<Admin>;

const MEMBER_PAGE: &str = "console/member.html";
const DEACTIVATE_PAGE: &str = "console/deactivate.html";

pub(super) fn roles() -> Vec<&'static str> {
    Role::ALL.iter().map(|r| r.as_str()).collect()
}

impl AdminPage {
    /// The team list with the invitation form (`form`: what was typed, and why it was refused).
    async fn team_list(&self, status: StatusCode, cursor: &PageQuery, form: Value) -> Result<HttpResponse, WebError> {
        let page = cursor.page()?;
        let members = blocking(&self.pool, move |c| team::list(c, &page)).await?;
        let ctx = context! {
            members => members.items,
            next_cursor => members.next_cursor,
            paged => cursor.cursor.is_some(),
            roles => roles(),
            ..form
        };
        self.render(status, "console/team.html", "/console/team", ctx)
    }

    async fn load(&self, id: String) -> Result<Member, WebError> {
        Ok(blocking(&self.pool, move |c| team::get(c, &id)).await?)
    }

    /// A member's page (`template`: their details, or the deactivation step).
    fn member_page(
        &self,
        status: StatusCode,
        template: &str,
        m: &Member,
        form: Value,
    ) -> Result<HttpResponse, WebError> {
        let is_self = m.id == self.console.who.member.id;
        self.render(status, template, "/console/team", context! { member => m, roles => roles(), is_self, ..form })
    }

    /// A refused post on a member's page: the page again with why, nothing changed.
    async fn refused(
        &self,
        e: crate::app::Error,
        template: &str,
        id: String,
        form: &Form,
    ) -> Result<HttpResponse, WebError> {
        let r = Refused::of(e)?;
        let m = self.load(id).await?;
        let ctx = context! { errors => r.errors, summary => r.summary, values => form.values() };
        self.member_page(r.status, template, &m, ctx)
    }
}

async fn list(page: AdminPage, q: web::Query<PageQuery>) -> Result<HttpResponse, WebError> {
    page.team_list(StatusCode::OK, &q, context! { values => context! { role => "staff" } }).await
}

async fn invite(page: AdminPage, form: Form) -> Result<HttpResponse, WebError> {
    page.check(&form)?;
    let parsed =
        NewMember::parse(form.optional("name").as_deref(), &form.text("email"), parse_role(&form.text("role")));
    let invited = match parsed {
        Ok(new) => {
            let (actor, url) = (page.console.who.actor(), page.settings.public_url());
            blocking(&page.pool, move |c| team::invite(c, &new, Invitation::Email { public_url: &url }, &actor)).await
        }
        Err(e) => Err(e.into()),
    };
    match invited {
        Ok((m, _)) => Ok(page.done("/console/team", &format!("Invitation sent to {} <{}>.", m.name, m.email))),
        Err(e) => {
            let r = Refused::of(e)?;
            let form = context! { errors => r.errors, summary => r.summary, values => form.values() };
            page.team_list(r.status, &PageQuery { cursor: None }, form).await
        }
    }
}

async fn member(page: AdminPage, id: web::Path<String>) -> Result<HttpResponse, WebError> {
    let m = page.load(id.into_inner()).await?;
    let values = context! { role => m.role.as_str() };
    page.member_page(StatusCode::OK, MEMBER_PAGE, &m, context! { values })
}

async fn change_role(page: AdminPage, id: web::Path<String>, form: Form) -> Result<HttpResponse, WebError> {
    page.check(&form)?;
    let id = id.into_inner();
    let changed = match parse_role(&form.text("role")) {
        Ok(role) => {
            let (actor, id) = (page.console.who.actor(), id.clone());
            blocking(&page.pool, move |c| team::change_role(c, &id, role, &actor)).await
        }
        Err(message) => Err(crate::app::Error::validation("role", message)),
    };
    match changed {
        Ok(m) => {
            // Changing your own role ends your session: the console's home sends you to sign in.
            let to = if m.id == page.console.who.member.id {
                "/console".to_owned()
            } else {
                format!("/console/team/{}", m.id)
            };
            Ok(page.done(&to, &format!("{} is now {}. Their console sessions have ended.", m.name, m.role)))
        }
        Err(e) => page.refused(e, MEMBER_PAGE, id, &form).await,
    }
}

async fn confirm_deactivate(page: AdminPage, id: web::Path<String>) -> Result<HttpResponse, WebError> {
    let m = page.load(id.into_inner()).await?;
    page.member_page(StatusCode::OK, DEACTIVATE_PAGE, &m, context! {})
}

async fn deactivate(page: AdminPage, id: web::Path<String>, form: Form) -> Result<HttpResponse, WebError> {
    page.check(&form)?;
    let (actor, id) = (page.console.who.actor(), id.into_inner());
    let target = id.clone();
    match blocking(&page.pool, move |c| team::deactivate(c, &target, &actor)).await {
        Ok(m) => Ok(page.done("/console/team", &format!("{} is deactivated and signed out everywhere.", m.name))),
        Err(e) => page.refused(e, DEACTIVATE_PAGE, id, &form).await,
    }
}

/// Not destructive (nothing of the old access comes back), so no confirmation page.
async fn reactivate(page: AdminPage, id: web::Path<String>, form: Form) -> Result<HttpResponse, WebError> {
    page.check(&form)?;
    let (actor, id) = (page.console.who.actor(), id.into_inner());
    let target = id.clone();
    match blocking(&page.pool, move |c| team::reactivate(c, &target, &actor)).await {
        Ok(m) => Ok(page.done(
            &format!("/console/team/{}", m.id),
            &format!("{} is active again as {}. They sign in with a new link from the sign-in page.", m.name, m.role),
        )),
        Err(e) => page.refused(e, MEMBER_PAGE, id, &form).await,
    }
}
