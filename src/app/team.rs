//! The team and its console access: invite, change role, deactivate (admins, through the API,
//! the console and the CLI); ask for a sign-in link, sign in, sign out, sign out everywhere;
//! the signed-in member behind a session cookie; and what the console's home shows.
//! Each state change is one transaction with its audit row and any e-mail.

use chrono::{NaiveDate, NaiveDateTime, TimeDelta};
use diesel::QueryResult;
use serde::Serialize;
use serde_json::json;

use super::audit::{ActorNames, NamedEvent};
use super::notices::{self, TeamLink};
use super::Error;
use crate::db::{now, write_tx, DbConnection};
use crate::domain::api_key::{hash, random_token};
use crate::domain::audit::{ActorKind, AuditAction, EntityType};
use crate::domain::contact::Email;
use crate::domain::team::{self, MemberStatus, NewMember, Refusal, Role, SessionEnd, SessionPolicy};
use crate::store::audit::{self, Actor, Change};
use crate::store::team::{self as store, MemberRow, NewLink, SessionRow};
use crate::store::{new_id, queues, Page, PageRequest, StoreError};

const ENTITY: EntityType = EntityType::TeamMember;

/// A team member as the API and the console show them.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Member {
    pub id: String,
    pub name: String,
    pub email: String,
    pub role: Role,
    pub status: MemberStatus,
    #[serde(serialize_with = "crate::store::utc::ser")]
    pub created_at: NaiveDateTime,
    #[serde(serialize_with = "crate::store::utc::ser")]
    pub updated_at: NaiveDateTime,
    #[serde(serialize_with = "crate::store::utc::ser_opt")]
    pub deactivated_at: Option<NaiveDateTime>,
}

impl From<MemberRow> for Member {
    fn from(r: MemberRow) -> Self {
        Self {
            id: r.id,
            name: r.name,
            email: r.email,
            role: r.role,
            status: r.status,
            created_at: r.created_at,
            updated_at: r.updated_at,
            deactivated_at: r.deactivated_at,
        }
    }
}

fn not_found() -> Error {
    Error::NotFound("team member")
}

fn email_taken() -> Error {
    Error::Conflict {
        kind: "email-taken",
        detail: "A team member with this e-mail address exists already.".into(),
        field: Some("email"),
    }
}

fn refused(r: Refusal, event: &str, field: Option<&'static str>) -> Error {
    match r {
        Refusal::Deactivated => Error::InvalidTransition {
            entity: "team member",
            current: MemberStatus::Deactivated.as_str().into(),
            event: event.into(),
            hint: None,
        },
        Refusal::Active => Error::InvalidTransition {
            entity: "team member",
            current: MemberStatus::Active.as_str().into(),
            event: event.into(),
            hint: None,
        },
        Refusal::LastAdmin => Error::Conflict {
            kind: "last-admin",
            detail: "This is the last active admin: make another member an admin first.".into(),
            field,
        },
    }
}

fn invalid_link() -> Error {
    Error::Unprocessable {
        kind: "invalid-login-link",
        detail: "This sign-in link is invalid, expired or already used. Ask for a new one.".into(),
        field: Some("token"),
    }
}

/// The page a sign-in link opens (a button there uses it: mail scanners cannot).
pub fn link_url(public_url: &str, token: &str) -> String {
    format!("{public_url}/console/link?token={token}")
}

/// A new one-time link for a member: (row id, the URL with its token, expiry).
fn issue_link(
    conn: &mut DbConnection,
    member_id: &str,
    ttl: TimeDelta,
    public_url: &str,
) -> QueryResult<(String, String, NaiveDateTime)> {
    let (id, token, at) = (new_id(), random_token(), now());
    let expires_at = at + ttl;
    store::insert_link(conn, &NewLink { id: &id, member_id, token_hash: &hash(&token), expires_at, created_at: at })?;
    Ok((id, link_url(public_url, &token), expires_at))
}

/// Where an invitation's first sign-in link goes.
#[derive(Debug, Clone, Copy)]
pub enum Invitation<'a> {
    /// E-mailed to the new member (the API and the console).
    Email { public_url: &'a str },
    /// Handed back to be shown once (the CLI's first admin, before e-mail may work).
    Print { public_url: &'a str },
}

/// Who an invitation says it is from: the inviting member's name, else the clinic's admins.
fn inviter(conn: &mut DbConnection, actor: &Actor) -> QueryResult<String> {
    if let (ActorKind::TeamMember, Some(id)) = (actor.kind, &actor.id) {
        if let Some(m) = store::find(conn, id)? {
            return Ok(m.name);
        }
    }
    Ok("An administrator".into())
}

/// Adds a member (active) with a first sign-in link valid [`team::INVITE_LINK_TTL`];
/// returns them, and the link only for [`Invitation::Print`].
pub fn invite(
    conn: &mut DbConnection,
    new: &NewMember,
    how: Invitation<'_>,
    actor: &Actor,
) -> Result<(Member, Option<String>), Error> {
    write_tx(conn, |conn| {
        if store::by_email(conn, new.email.as_str())?.is_some() {
            return Err(email_taken());
        }
        let id = new_id();
        store::insert_member(conn, &id, new, now()).map_err(|e| match StoreError::unique_race(e) {
            race if race.lost_race() => email_taken(),
            other => other.into(),
        })?;
        let (public_url, print) = match how {
            Invitation::Email { public_url } => (public_url, false),
            Invitation::Print { public_url } => (public_url, true),
        };
        let (link_id, link, expires_at) = issue_link(conn, &id, team::INVITE_LINK_TTL, public_url)?;
        if !print {
            let invited_by = inviter(conn, actor)?;
            let mail =
                TeamLink { link_id: &link_id, name: &new.name, email: new.email.as_str(), link: &link, expires_at };
            notices::team_invite(conn, &mail, new.role, &invited_by)?;
        }
        audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::TeamMemberInvited,
                entity_type: ENTITY,
                entity_id: &id,
                before: None,
                after: Some(MemberStatus::Active.as_str()),
                details: Some(json!({ "role": new.role.as_str(), "link": if print { "printed" } else { "e-mailed" } })),
            },
        )?;
        let member = store::find(conn, &id)?.ok_or_else(not_found)?;
        Ok((member.into(), print.then_some(link)))
    })
}

/// Locks the active admins, then the member; returns the member and how many *other*
/// active admins there are (see [`store::lock_active_admins`]).
fn lock_with_admins(conn: &mut DbConnection, id: &str) -> Result<(MemberRow, i64), Error> {
    let admins = store::lock_active_admins(conn)?;
    let member = store::lock(conn, id)?.ok_or_else(not_found)?;
    let others = admins.iter().filter(|a| a.as_str() != id).count() as i64;
    Ok((member, others))
}

/// Gives a member another role and ends their sessions (they sign in again under it). The
/// last active admin keeps the role (409 `last-admin`); a deactivated member is a 409.
pub fn change_role(conn: &mut DbConnection, id: &str, to: Role, actor: &Actor) -> Result<Member, Error> {
    write_tx(conn, |conn| {
        let (m, others) = lock_with_admins(conn, id)?;
        match team::change_role(m.status, m.role, to, others) {
            Err(r) => return Err(refused(r, "change the role of", Some("role"))),
            Ok(false) => return Ok(m.into()),
            Ok(true) => {}
        }
        let at = now();
        if store::set_role(conn, id, m.role, to, at)? != 1 {
            return Err(StoreError::Stale.into());
        }
        let ended = store::end_sessions_of(conn, id, SessionEnd::RoleChanged, at)?;
        audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::TeamMemberRoleChanged,
                entity_type: ENTITY,
                entity_id: id,
                before: Some(m.role.as_str()),
                after: Some(to.as_str()),
                details: Some(json!({ "sessions_ended": ended })),
            },
        )?;
        Ok(store::find(conn, id)?.ok_or_else(not_found)?.into())
    })
}

/// Deactivates a member: their sessions end and their unused links die at once. The last
/// active admin cannot be deactivated (409 `last-admin`).
pub fn deactivate(conn: &mut DbConnection, id: &str, actor: &Actor) -> Result<Member, Error> {
    write_tx(conn, |conn| {
        let (m, others) = lock_with_admins(conn, id)?;
        team::deactivate(m.status, m.role, others).map_err(|r| refused(r, "deactivate", None))?;
        let at = now();
        if store::set_deactivated(conn, id, at)? != 1 {
            return Err(StoreError::Stale.into());
        }
        let ended = store::end_sessions_of(conn, id, SessionEnd::Deactivated, at)?;
        store::expire_links(conn, id, at)?;
        audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::TeamMemberDeactivated,
                entity_type: ENTITY,
                entity_id: id,
                before: Some(MemberStatus::Active.as_str()),
                after: Some(MemberStatus::Deactivated.as_str()),
                details: Some(json!({ "sessions_ended": ended })),
            },
        )?;
        Ok(store::find(conn, id)?.ok_or_else(not_found)?.into())
    })
}

/// Reactivates a deactivated member under the role they had. Nothing of their old access
/// comes back: their sessions ended and their links died with the deactivation (any left
/// open are ended here too), so they sign in again with a new link from the sign-in page.
pub fn reactivate(conn: &mut DbConnection, id: &str, actor: &Actor) -> Result<Member, Error> {
    write_tx(conn, |conn| {
        let m = store::lock(conn, id)?.ok_or_else(not_found)?;
        team::reactivate(m.status).map_err(|r| refused(r, "reactivate", None))?;
        let at = now();
        if store::set_reactivated(conn, id, at)? != 1 {
            return Err(StoreError::Stale.into());
        }
        let ended = store::end_sessions_of(conn, id, SessionEnd::Deactivated, at)?;
        store::expire_links(conn, id, at)?;
        audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::TeamMemberReactivated,
                entity_type: ENTITY,
                entity_id: id,
                before: Some(MemberStatus::Deactivated.as_str()),
                after: Some(MemberStatus::Active.as_str()),
                details: Some(json!({ "role": m.role.as_str(), "sessions_ended": ended })),
            },
        )?;
        Ok(store::find(conn, id)?.ok_or_else(not_found)?.into())
    })
}

pub fn get(conn: &mut DbConnection, id: &str) -> Result<Member, Error> {
    Ok(store::find(conn, id)?.ok_or_else(not_found)?.into())
}

pub fn list(conn: &mut DbConnection, page: &PageRequest) -> Result<Page<Member>, Error> {
    Ok(store::list(conn, page)?.map(Member::from))
}

/// What a sign-in link request needs besides the address.
pub struct SignInRequest<'a> {
    pub public_url: &'a str,
    /// Sign-in e-mails to one address per [`team::SIGN_IN_MAIL_WINDOW`] at most.
    pub per_hour: u32,
    pub actor: &'a Actor,
}

/// E-mails a sign-in link to an active member with this address; does nothing (silently)
/// for any other address, or once the address had `per_hour` links within the hour. The
/// answer never tells which.
pub fn request_sign_in(conn: &mut DbConnection, email: &Email, req: &SignInRequest<'_>) -> Result<(), Error> {
    write_tx(conn, |conn| {
        let Some(m) = store::by_email(conn, email.as_str())?.filter(|m| m.status == MemberStatus::Active) else {
            return Ok(());
        };
        if store::links_since(conn, &m.id, now() - team::SIGN_IN_MAIL_WINDOW)? >= i64::from(req.per_hour) {
            tracing::info!(member_id = %m.id, "console sign-in e-mail limit reached for this address; nothing sent");
            return Ok(());
        }
        let (link_id, link, expires_at) = issue_link(conn, &m.id, team::SIGN_IN_LINK_TTL, req.public_url)?;
        notices::team_sign_in(
            conn,
            &TeamLink { link_id: &link_id, name: &m.name, email: &m.email, link: &link, expires_at },
        )?;
        audit::record(
            conn,
            req.actor,
            Change {
                action: AuditAction::TeamSignInLinkSent,
                entity_type: ENTITY,
                entity_id: &m.id,
                before: None,
                after: None,
                details: None,
            },
        )?;
        Ok(())
    })
}

/// A member signed in to the console: their session and who they are.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub session_id: String,
    pub member: Member,
    pub request_id: Option<String>,
}

impl SignedIn {
    /// Audit rows name the member and their role.
    pub fn actor(&self) -> Actor {
        member_actor(&self.member.id, self.member.role, self.request_id.clone())
    }
}

fn member_actor(id: &str, role: Role, request_id: Option<String>) -> Actor {
    Actor { kind: ActorKind::TeamMember, id: Some(id.to_owned()), role: Some(role.as_str().to_owned()), request_id }
}

/// Uses a sign-in link (once) and starts a session; returns its secret (the cookie's value)
/// and the member. An unknown, used or expired link, or a deactivated member, is 422
/// `invalid-login-link`.
pub fn sign_in(
    conn: &mut DbConnection,
    token: &str,
    policy: &SessionPolicy,
    request_id: Option<String>,
) -> Result<(String, Member), Error> {
    write_tx(conn, |conn| {
        let at = now();
        let member_id = store::use_link(conn, &hash(token), at)?.ok_or_else(invalid_link)?;
        let m = store::find(conn, &member_id)?.filter(|m| m.status == MemberStatus::Active).ok_or_else(invalid_link)?;
        let secret = format!("{}{}", team::SESSION_PREFIX, random_token());
        let session =
            SessionRow { id: new_id(), member_id, created_at: at, last_seen_at: at, expires_at: policy.expires_at(at) };
        store::insert_session(conn, &session, &hash(&secret))?;
        audit::record(
            conn,
            &member_actor(&m.id, m.role, request_id),
            Change {
                action: AuditAction::TeamSessionStarted,
                entity_type: ENTITY,
                entity_id: &m.id,
                before: None,
                after: None,
                details: Some(json!({ "session_id": session.id })),
            },
        )?;
        Ok((secret, m.into()))
    })
}

/// The member behind a session cookie, if the session is open, neither idle past
/// `console.session_idle_minutes` nor older than `console.session_max_hours`, and the member
/// is active; notes the use (at most once a minute).
pub fn session(
    conn: &mut DbConnection,
    secret: &str,
    policy: &SessionPolicy,
    request_id: Option<String>,
) -> Result<Option<SignedIn>, Error> {
    if !secret.starts_with(team::SESSION_PREFIX) || secret.len() > 200 {
        return Ok(None);
    }
    let Some((s, m)) = store::open_session(conn, &hash(secret))? else {
        return Ok(None);
    };
    let at = now();
    if m.status != MemberStatus::Active || !policy.is_live(s.last_seen_at, s.expires_at, at) {
        return Ok(None);
    }
    if policy.needs_touch(s.last_seen_at, at) {
        // Best effort: a busy database must not fail the page over a usage stamp.
        if let Err(e) = store::touch_session(conn, &s.id, at) {
            tracing::debug!(error = %e, "could not stamp console session use");
        }
    }
    Ok(Some(SignedIn { session_id: s.id, member: m.into(), request_id }))
}

/// Ends this session.
pub fn sign_out(conn: &mut DbConnection, who: &SignedIn) -> Result<(), Error> {
    write_tx(conn, |conn| {
        if store::end_session(conn, &who.session_id, SessionEnd::SignedOut, now())? {
            audit::record(
                conn,
                &who.actor(),
                Change {
                    action: AuditAction::TeamSessionEnded,
                    entity_type: ENTITY,
                    entity_id: &who.member.id,
                    before: None,
                    after: None,
                    details: Some(json!({ "session_id": who.session_id })),
                },
            )?;
        }
        Ok(())
    })
}

/// Ends every session of the member, on every device.
pub fn sign_out_everywhere(conn: &mut DbConnection, who: &SignedIn) -> Result<usize, Error> {
    write_tx(conn, |conn| {
        let ended = store::end_sessions_of(conn, &who.member.id, SessionEnd::SignedOutEverywhere, now())?;
        audit::record(
            conn,
            &who.actor(),
            Change {
                action: AuditAction::TeamSignedOutEverywhere,
                entity_type: ENTITY,
                entity_id: &who.member.id,
                before: None,
                after: None,
                details: Some(json!({ "sessions_ended": ended })),
            },
        )?;
        Ok(ended)
    })
}

/// Housekeeping: sign-in links and sessions that can no longer sign anyone in.
pub fn purge_expired(conn: &mut DbConnection) -> QueryResult<usize> {
    store::purge_expired(conn, team::SIGN_IN_MAIL_WINDOW)
}

/// The console's home: what waits for a decision, and the latest events this member may see.
#[derive(Debug, Serialize)]
pub struct Home {
    pub share_link_referrals_waiting: i64,
    pub applications_waiting: i64,
    /// Staff's lists (empty for finance, who see no client names): the newest share-link
    /// referrals and applications waiting, and clients in treatment gone quiet.
    pub waiting_referrals: Vec<queues::QueuedReferral>,
    pub waiting_applications: Vec<(String, String)>,
    pub stale_referrals: Vec<queues::QueuedReferral>,
    pub events: Vec<NamedEvent>,
    pub next_cursor: Option<String>,
}

/// Who a stored actor label names (`team_member:<id>`, `api_key:<id>`, `system`: a ledger
/// row's or a batch's `created_by`), for people: the member's name, the key's name.
pub fn actor_named(conn: &mut DbConnection, label: &str) -> Result<String, Error> {
    let (kind, id) = label.split_once(':').map_or((label, None), |(k, i)| (k, Some(i)));
    Ok(ActorNames::load(conn, std::iter::once((kind, id)))?.label(kind, id, None))
}

/// Rows in each of the home page's lists.
const HOME_LIST_ROWS: i64 = 10;

/// The home page of `who`; `stale_since`: clients in treatment with no session since this
/// day are listed as gone quiet.
pub fn home(
    conn: &mut DbConnection,
    who: &SignedIn,
    page: &PageRequest,
    stale_since: NaiveDate,
) -> Result<Home, Error> {
    let visible =
        audit::Visible { entity_types: team::audit_entity_types(who.member.role), own_entity: &who.member.id };
    let events = audit::recent_visible(conn, &visible, page)?;
    let names = ActorNames::of_events(conn, &events.items)?;
    let events = events.map(|e| names.name(e));
    let sees_clients = who.member.role != Role::Finance;
    let (waiting_referrals, waiting_applications, stale_referrals) = if sees_clients {
        (
            queues::share_link_referrals(conn, HOME_LIST_ROWS)?,
            queues::applications(conn, HOME_LIST_ROWS)?,
            queues::stale_in_treatment(conn, stale_since, HOME_LIST_ROWS)?,
        )
    } else {
        Default::default()
    };
    Ok(Home {
        share_link_referrals_waiting: queues::share_link_referrals_waiting(conn)?,
        applications_waiting: queues::applications_waiting(conn)?,
        waiting_referrals,
        waiting_applications,
        stale_referrals,
        events: events.items,
        next_cursor: events.next_cursor,
    })
}
