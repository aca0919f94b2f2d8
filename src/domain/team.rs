//! Team members: the clinic's people who work in the console (API keys stay for systems).
//! Their roles, states, the rules that keep at least one active admin, and the lifetime of
//! their sign-in links and sessions.

use crate::domain::audit::EntityType;
use chrono::{NaiveDateTime, TimeDelta};

pub use super::api_key::Role;
use super::contact::Email;
use super::{required_text, Validation};

/// A one-time sign-in link requested on the sign-in page works this long.
pub const SIGN_IN_LINK_TTL: TimeDelta = TimeDelta::minutes(15);
/// The link in an invitation works this long (the invitee may not read mail at once; a
/// lapsed one is replaced by asking for a sign-in link).
pub const INVITE_LINK_TTL: TimeDelta = TimeDelta::hours(24);
/// The window of the per-address limit on sign-in e-mails.
pub const SIGN_IN_MAIL_WINDOW: TimeDelta = TimeDelta::hours(1);
/// Console session tokens start with this, so they are never taken for an API key or a
/// portal session.
pub const SESSION_PREFIX: &str = "vc_";
/// The longest a member's name may be.
pub const NAME_MAX: usize = 100;

super::text_enum! {
    /// Whether a member may sign in.
    #[derive(serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum MemberStatus {
        Active = "active",
        Deactivated = "deactivated",
    }
}

super::text_enum! {
    /// Why a console session ended before its time.
    pub enum SessionEnd {
        SignedOut = "signed_out",
        SignedOutEverywhere = "signed_out_everywhere",
        RoleChanged = "role_changed",
        Deactivated = "deactivated",
    }
}

/// A member to invite, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMember {
    pub name: String,
    pub email: Email,
    pub role: Role,
}

impl NewMember {
    /// Every bad field at once. A blank name becomes the e-mail's local part (the CLI's
    /// `--name` is optional), so every member has a name to show.
    pub fn parse(name: Option<&str>, email: &str, role: Result<Role, String>) -> Result<Self, super::DomainError> {
        let mut v = Validation::new();
        let email = v.check("email", Email::parse(email));
        let role = v.check("role", role);
        let name = match (name.map(str::trim).filter(|n| !n.is_empty()), &email) {
            (Some(n), _) => v.check("name", required_text(n, NAME_MAX)),
            (None, Some(e)) => Some(default_name(e)),
            (None, None) => None,
        };
        v.finish()?;
        match (name, email, role) {
            (Some(name), Some(email), Some(role)) => Ok(Self { name, email, role }),
            _ => unreachable!("validation passed, so every field parsed"),
        }
    }
}

fn default_name(email: &Email) -> String {
    let local = email.as_str().split('@').next().unwrap_or_default();
    local.chars().take(NAME_MAX).collect()
}

/// A role as typed in a form or on the command line.
pub fn parse_role(input: &str) -> Result<Role, String> {
    Role::parse(input.trim()).ok_or_else(|| "must be one of admin, staff, finance".to_owned())
}

/// Why a change to a member is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The member is deactivated: their role no longer changes, they are not deactivated twice.
    Deactivated,
    /// The change would leave the clinic without an active admin.
    LastAdmin,
    /// Only a deactivated member is reactivated.
    Active,
}

/// Whether `member` (`status`, `from`) may get role `to`, given how many *other* active
/// admins there are. `Ok(false)`: the role is already `to` (nothing to do).
pub fn change_role(status: MemberStatus, from: Role, to: Role, other_active_admins: i64) -> Result<bool, Refusal> {
    if status == MemberStatus::Deactivated {
        return Err(Refusal::Deactivated);
    }
    if from == to {
        return Ok(false);
    }
    if from == Role::Admin && other_active_admins == 0 {
        return Err(Refusal::LastAdmin);
    }
    Ok(true)
}

/// Whether a member may be deactivated, given how many *other* active admins there are.
pub fn deactivate(status: MemberStatus, role: Role, other_active_admins: i64) -> Result<(), Refusal> {
    if status == MemberStatus::Deactivated {
        return Err(Refusal::Deactivated);
    }
    if role == Role::Admin && other_active_admins == 0 {
        return Err(Refusal::LastAdmin);
    }
    Ok(())
}

/// Whether a member may be reactivated: only a deactivated one.
pub fn reactivate(status: MemberStatus) -> Result<(), Refusal> {
    match status {
        MemberStatus::Deactivated => Ok(()),
        MemberStatus::Active => Err(Refusal::Active),
    }
}

/// The audit events a role sees on its console home: `None` every event (admins); else the
/// events about what the role works with (and, always, the member's own).
pub fn audit_entity_types(role: Role) -> Option<&'static [EntityType]> {
    use EntityType::*;
    match role {
        Role::Admin => None,
        Role::Staff => Some(&[Ambassador, ReferralCode, Referral]),
        Role::Finance => Some(&[Reward, Payout, PayoutLine, Program]),
    }
}

/// How long a console session lives: `idle` without a request, `max` in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    pub idle: TimeDelta,
    pub max: TimeDelta,
}

impl SessionPolicy {
    /// When a session started at `created` ends at the latest.
    pub fn expires_at(&self, created: NaiveDateTime) -> NaiveDateTime {
        created + self.max
    }

    /// Whether a session last seen at `last_seen` and ending at `expires_at` is live at `now`.
    pub fn is_live(&self, last_seen: NaiveDateTime, expires_at: NaiveDateTime, now: NaiveDateTime) -> bool {
        now < expires_at && now < last_seen + self.idle
    }

    /// Whether to stamp the session as seen now: at most once a minute (so reads do not all
    /// become writes), and often enough that a session in use never runs idle.
    pub fn needs_touch(&self, last_seen: NaiveDateTime, now: NaiveDateTime) -> bool {
        now - last_seen >= TimeDelta::minutes(1).min(self.idle / 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_members_parse_every_field_and_default_the_name() {
        let m = NewMember::parse(None, " Jo.Smith@Clinic.Example ", Ok(Role::Staff)).unwrap();
        assert_eq!((m.name.as_str(), m.email.as_str(), m.role), ("jo.smith", "jo.smith@clinic.example", Role::Staff));
        let m = NewMember::parse(Some("  Jo Smith "), "jo@clinic.example", Ok(Role::Admin)).unwrap();
        assert_eq!(m.name, "Jo Smith");
        let Err(super::super::DomainError::Validation(errors)) =
            NewMember::parse(Some(&"x".repeat(101)), "nope", parse_role("owner"))
        else {
            panic!("refused")
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["email", "role", "name"]);
        assert_eq!(parse_role(" finance "), Ok(Role::Finance));
    }

    #[test]
    fn the_last_active_admin_stays_an_admin() {
        use MemberStatus::*;
        use Role::*;
        assert_eq!(change_role(Active, Admin, Staff, 0), Err(Refusal::LastAdmin));
        assert_eq!(change_role(Active, Admin, Staff, 1), Ok(true));
        assert_eq!(change_role(Active, Staff, Admin, 0), Ok(true));
        assert_eq!(change_role(Active, Staff, Finance, 0), Ok(true));
        assert_eq!(change_role(Active, Staff, Staff, 0), Ok(false));
        assert_eq!(change_role(Active, Admin, Admin, 0), Ok(false));
        assert_eq!(change_role(Deactivated, Staff, Admin, 3), Err(Refusal::Deactivated));
        assert_eq!(deactivate(Active, Admin, 0), Err(Refusal::LastAdmin));
        assert_eq!(deactivate(Active, Admin, 1), Ok(()));
        assert_eq!(deactivate(Active, Finance, 0), Ok(()));
        assert_eq!(deactivate(Deactivated, Staff, 2), Err(Refusal::Deactivated));
        assert_eq!(reactivate(Deactivated), Ok(()));
        assert_eq!(reactivate(Active), Err(Refusal::Active));
    }

    #[test]
    fn sessions_end_when_idle_or_at_their_absolute_end() {
        let policy = SessionPolicy { idle: TimeDelta::minutes(30), max: TimeDelta::hours(12) };
        let start = chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap().and_hms_opt(8, 0, 0).unwrap();
        let end = policy.expires_at(start);
        assert_eq!(end, start + TimeDelta::hours(12));
        assert!(policy.is_live(start, end, start + TimeDelta::minutes(29)));
        assert!(!policy.is_live(start, end, start + TimeDelta::minutes(30)), "idle");
        let busy = end - TimeDelta::minutes(1);
        assert!(policy.is_live(busy, end, end - TimeDelta::seconds(1)));
        assert!(!policy.is_live(busy, end, end), "absolute");
        assert!(!policy.needs_touch(start, start + TimeDelta::seconds(59)));
        assert!(policy.needs_touch(start, start + TimeDelta::seconds(60)));
        let short = SessionPolicy { idle: TimeDelta::minutes(1), max: TimeDelta::hours(1) };
        assert!(short.needs_touch(start, start + TimeDelta::seconds(30)), "touched before it can run idle");
    }
}
