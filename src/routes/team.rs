//! `/v1/team` (admin): team members — the people who sign in to the console.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::app::team::{self, Invitation, Member};
use crate::auth::{Admin, Auth};
use crate::config::Settings;
use crate::db::{blocking, DbPool};
use crate::domain::team::{NewMember, Role};
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, ApiQuery};
use crate::http::resource;
use crate::store::PageRequest;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/team").route(web::post().to(invite)).route(web::get().to(list)))
        .service(resource("/team/{id}").route(web::get().to(get)).route(web::patch().to(update)))
        .service(resource("/team/{id}/deactivate").route(web::post().to(deactivate)))
        .service(resource("/team/{id}/reactivate").route(web::post().to(reactivate)));
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteMember {
    /// Defaults to the part of the e-mail address before `@`.
    pub name: Option<String>,
    /// Unique among team members, whatever the case.
    pub email: String,
    pub role: Role,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMember {
    pub role: Role,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TeamQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TeamList {
    pub items: Vec<Member>,
    pub next_cursor: Option<String>,
}

/// Invite a team member: they are e-mailed a sign-in link to the console (valid 24 hours).
#[utoipa::path(post, path = "/v1/team", tag = "team", security(("bearer" = [])),
    request_body = InviteMember,
    responses((status = 201, body = Member),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn invite(
    auth: Auth<Admin>,
    pool: web::Data<DbPool>,
    settings: web::Data<Settings>,
    body: ApiJson<InviteMember>,
) -> Result<HttpResponse, ApiError> {
    let b = body.0;
    let new = NewMember::parse(b.name.as_deref(), &b.email, Ok(b.role))?;
    let (actor, url) = (auth.actor(), settings.public_url());
    let (member, _) =
        blocking(&pool, move |c| team::invite(c, &new, Invitation::Email { public_url: &url }, &actor)).await?;
    Ok(HttpResponse::Created().json(member))
}

/// Team members, newest first.
#[utoipa::path(get, path = "/v1/team", tag = "team", security(("bearer" = [])), params(TeamQuery),
    responses((status = 200, body = TeamList),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn list(
    _auth: Auth<Admin>,
    pool: web::Data<DbPool>,
    q: ApiQuery<TeamQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = PageRequest::parse(q.0.limit, q.0.cursor.as_deref())?;
    let page = blocking(&pool, move |c| team::list(c, &page)).await?;
    Ok(HttpResponse::Ok().json(TeamList { items: page.items, next_cursor: page.next_cursor }))
}

/// One team member.
#[utoipa::path(get, path = "/v1/team/{id}", tag = "team", security(("bearer" = [])),
    params(("id" = String, Path, description = "Team member id")),
    responses((status = 200, body = Member),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn get(_auth: Auth<Admin>, pool: web::Data<DbPool>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let member = blocking(&pool, move |c| team::get(c, &id)).await?;
    Ok(HttpResponse::Ok().json(member))
}

/// Change a member's role; their console sessions end at once. The last active admin keeps
/// the role (409 `last-admin`).
#[utoipa::path(patch, path = "/v1/team/{id}", tag = "team", security(("bearer" = [])),
    params(("id" = String, Path, description = "Team member id")),
    request_body = UpdateMember,
    responses((status = 200, body = Member),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn update(
    auth: Auth<Admin>,
    pool: web::Data<DbPool>,
    id: web::Path<String>,
    body: ApiJson<UpdateMember>,
) -> Result<HttpResponse, ApiError> {
    let (actor, role) = (auth.actor(), body.0.role);
    let member = blocking(&pool, move |c| team::change_role(c, &id, role, &actor)).await?;
    Ok(HttpResponse::Ok().json(member))
}

/// Deactivate a member: their sessions and unused sign-in links end at once. The last active
/// admin cannot be deactivated (409 `last-admin`).
#[utoipa::path(post, path = "/v1/team/{id}/deactivate", tag = "team", security(("bearer" = [])),
    params(("id" = String, Path, description = "Team member id")),
    responses((status = 200, body = Member),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn deactivate(
    auth: Auth<Admin>,
    pool: web::Data<DbPool>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let actor = auth.actor();
    let member = blocking(&pool, move |c| team::deactivate(c, &id, &actor)).await?;
    Ok(HttpResponse::Ok().json(member))
}

/// Reactivate a deactivated member under their old role. None of their old sessions or links
/// come back: they sign in again with a new link from the console's sign-in page. An active
/// member is a 409 `invalid-transition`.
#[utoipa::path(post, path = "/v1/team/{id}/reactivate", tag = "team", security(("bearer" = [])),
    params(("id" = String, Path, description = "Team member id")),
    responses((status = 200, body = Member),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn reactivate(
    auth: Auth<Admin>,
    pool: web::Data<DbPool>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let actor = auth.actor();
    let member = blocking(&pool, move |c| team::reactivate(c, &id, &actor)).await?;
    Ok(HttpResponse::Ok().json(member))
}
