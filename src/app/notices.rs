//! The e-mails state changes queue, each inside the change's own transaction and under a
//! dedupe key, so a retried request or a re-run never queues one twice. The one module that
//! queues e-mail rows (`store::outbox::enqueue`); the use cases call it, nothing below `app`
//! does.
//!
//! Discretion: e-mails to an ambassador name a referred client only as "First L." and only
//! with the client's consent (otherwise an opaque label); staff alerts carry ids, never client
//! contact details. Optional notices follow the ambassador's notification preferences.

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;
use serde_json::json;

use super::Result;
use crate::db::schema::{ambassadors, email_outbox};
use crate::db::DbConnection;
use crate::domain::money::Money;
use crate::domain::notice::{EmailStatus, Template};
use crate::domain::referral::ReferralStatus;
use crate::email::MailContext;
use crate::store::ambassadors::AmbassadorRow;
use crate::store::codes::CodeRow;
use crate::store::referrals::{self, ReferralRow};
use crate::store::rewards::{self, RewardRow};
use crate::store::{outbox, program};

/// Welcome with the ambassador's code and share link (staff enrolment, or approval of an
/// application). One per ambassador, ever.
pub fn ambassador_welcome(
    conn: &mut DbConnection,
    mail: &MailContext,
    ambassador: &AmbassadorRow,
    code: &CodeRow,
) -> Result<bool> {
    let rules = program::current(conn)?.rules;
    let min_payout = crate::domain::money::Money::new(rules.min_payout_minor, rules.currency.clone());
    Ok(outbox::enqueue(
        conn,
        &format!("ambassador-welcome:{}", ambassador.id),
        Template::AmbassadorWelcome,
        &ambassador.email,
        &json!({
            "name": ambassador.name,
            "code": code.code,
            "share_link": format!("{}/r/{}", mail.public_url, code.code),
            "reward": rules.reward_summary(),
            "holding_days": rules.holding_days,
            "min_payout": min_payout.to_string(),
        }),
    )?)
}

// The two queries below (an ambassador's address, the outbox rows about a client) belong in
// `store::ambassadors` and `store::outbox`, which move on their own branch (issue #12, part 3);
// they go there at the merge.

/// The ambassador's name, address and referral-updates preference.
fn recipient(conn: &mut DbConnection, ambassador_id: &str) -> QueryResult<(String, String, bool)> {
    ambassadors::table
        .find(ambassador_id)
        .select((ambassadors::name, ambassadors::email, ambassadors::notify_referral_updates))
        .first(conn)
}

/// How the e-mail names the client: as the ambassador's portal does.
fn client_label(conn: &mut DbConnection, referral: &ReferralRow) -> QueryResult<String> {
    let code = referrals::code_of(conn, referral)?;
    Ok(referral.label_for_ambassador(code.as_deref()))
}

const REFERRAL_NOTICE_KEYS: [&str; 3] = ["referral-registered", "referral-cancelled", "referral-refunded"];

/// When a client's personal data is erased: e-mails about them that are not sent yet name
/// them only by the opaque label from now on (sent ones no longer hold the name at all).
pub fn forget_client(conn: &mut DbConnection, referral: &ReferralRow) -> QueryResult<()> {
    let mut keys: Vec<String> = REFERRAL_NOTICE_KEYS.iter().map(|k| format!("{k}:{}", referral.id)).collect();
    // The reward-earned notice names the client too; it is keyed by the reward.
    let reward_ids = rewards::ids_for_referral(conn, &referral.id)?;
    keys.extend(reward_ids.iter().map(|r| format!("reward-earned:{r}")));
    let unsent: Vec<(String, String)> = email_outbox::table
        .filter(email_outbox::dedupe_key.eq_any(&keys))
        .filter(email_outbox::status.ne(EmailStatus::Sent))
        .select((email_outbox::id, email_outbox::payload))
        .load(conn)?;
    let anonymous = ReferralRow {
        client_first_name: None,
        client_last_name: None,
        share_name_with_ambassador: false,
        ..referral.clone()
    };
    let label = client_label(conn, &anonymous)?;
    for (id, payload) in unsent {
        let mut payload: serde_json::Value = serde_json::from_str(&payload).unwrap_or_else(|_| json!({}));
        if let Some(map) = payload.as_object_mut() {
            map.insert("client_label".into(), json!(label));
        }
        diesel::update(email_outbox::table.find(&id))
            .set(email_outbox::payload.eq(payload.to_string()))
            .execute(conn)?;
    }
    Ok(())
}

/// Tells the ambassador about a referral that was registered, cancelled or refunded
/// (optional: only with referral updates on) — only about referrals the ambassador may see.
/// A share-link submission is announced as registered at the friend's first session (it is
/// hidden before: accepted and refused-on-arrival submissions must look alike).
pub fn referral_update(conn: &mut DbConnection, referral: &ReferralRow) -> QueryResult<bool> {
    let Some(notice) = referral_notice(referral) else {
        return Ok(false);
    };
    let Some(ambassador_id) = &referral.ambassador_id else {
        return Ok(false);
    };
    let (name, email, wants_updates) = recipient(conn, ambassador_id)?;
    if !wants_updates {
        return Ok(false);
    }
    let label = client_label(conn, referral)?;
    queue_referral_notice(conn, referral, notice, &email, &name, &label)
}

/// [`referral_update`] when the change has just loaded the referral's ambassador and code
/// (`code`: the code's text, as [`referrals::code_of`] gives it): nothing is asked again.
pub fn referral_update_known(
    conn: &mut DbConnection,
    referral: &ReferralRow,
    ambassador: &AmbassadorRow,
    code: Option<&str>,
) -> QueryResult<bool> {
    if referral.ambassador_id.as_deref() != Some(ambassador.id.as_str()) {
        return referral_update(conn, referral);
    }
    let Some(notice) = referral_notice(referral) else {
        return Ok(false);
    };
    if !ambassador.notify_referral_updates {
        return Ok(false);
    }
    let label = referral.label_for_ambassador(code);
    queue_referral_notice(conn, referral, notice, &ambassador.email, &ambassador.name, &label)
}

/// The notice a referral's status calls for, if the ambassador may see it at all.
fn referral_notice(referral: &ReferralRow) -> Option<(Template, &'static str)> {
    if !referral.visible_to_ambassador() {
        return None;
    }
    match referral.status() {
        ReferralStatus::Registered => Some((Template::ReferralRegistered, "referral-registered")),
        ReferralStatus::InTreatment if referral.from_share_link() => {
            Some((Template::ReferralRegistered, "referral-registered"))
        }
        ReferralStatus::Cancelled => Some((Template::ReferralCancelled, "referral-cancelled")),
        ReferralStatus::Refunded => Some((Template::ReferralRefunded, "referral-refunded")),
        _ => None,
    }
}

fn queue_referral_notice(
    conn: &mut DbConnection,
    referral: &ReferralRow,
    (template, key): (Template, &str),
    email: &str,
    name: &str,
    label: &str,
) -> QueryResult<bool> {
    outbox::enqueue(
        conn,
        &format!("{key}:{}", referral.id),
        template,
        email,
        &json!({ "ambassador_name": name, "client_label": label }),
    )
}

/// Alerts staff to a public form submission (whatever became of it): ids and status only.
pub fn staff_public_referral(conn: &mut DbConnection, mail: &MailContext, referral: &ReferralRow) -> QueryResult<bool> {
    let Some(to) = &mail.staff_alert_to else {
        return Ok(false);
    };
    outbox::enqueue(
        conn,
        &format!("staff-public-referral:{}", referral.id),
        Template::StaffPublicReferral,
        to,
        &json!({
            "referral_id": referral.id,
            "status": referral.status,
            "reason_code": referral.reason_code,
            "code": referral.submitted_code,
        }),
    )
}

/// Alerts staff to a public ambassador application.
pub fn staff_application(conn: &mut DbConnection, mail: &MailContext, ambassador: &AmbassadorRow) -> QueryResult<bool> {
    let Some(to) = &mail.staff_alert_to else {
        return Ok(false);
    };
    outbox::enqueue(
        conn,
        &format!("staff-application:{}", ambassador.id),
        Template::StaffApplication,
        to,
        &json!({ "applicant_name": ambassador.name, "ambassador_id": ambassador.id }),
    )
}

/// The reward a completed referral earned, to its ambassador (who opted in to reward
/// updates). One per reward. `client_label`: the referral as its ambassador sees it
/// ([`ReferralRow::label_for_ambassador`]).
pub fn reward_earned(
    conn: &mut DbConnection,
    ambassador: &AmbassadorRow,
    reward: &RewardRow,
    client_label: &str,
    payable_on: NaiveDate,
) -> QueryResult<bool> {
    outbox::enqueue(
        conn,
        &format!("reward-earned:{}", reward.id),
        Template::RewardEarned,
        &ambassador.email,
        &json!({
            "ambassador_name": ambassador.display_name.as_deref().unwrap_or(&ambassador.name),
            "client_label": client_label,
            "amount": reward.money().to_string(),
            "holds_until": payable_on,
        }),
    )
}

/// A paid payout line, to its ambassador. One per batch and ambassador.
pub fn payout_sent(
    conn: &mut DbConnection,
    batch_id: &str,
    reference: &str,
    ambassador_id: &str,
    amount: Money,
    paid_on: NaiveDate,
) -> QueryResult<bool> {
    let (name, display, email): (String, Option<String>, String) = ambassadors::table
        .find(ambassador_id)
        .select((ambassadors::name, ambassadors::display_name, ambassadors::email))
        .first(conn)?;
    outbox::enqueue(
        conn,
        &format!("payout-sent:{batch_id}:{ambassador_id}"),
        Template::PayoutSent,
        &email,
        &json!({
            "ambassador_name": display.unwrap_or(name),
            "amount": amount.to_string(),
            "reference": reference,
            "paid_on": paid_on,
        }),
    )
}

/// A portal sign-in link (`token_id`: the login token's row, never the token itself).
pub fn portal_login(
    conn: &mut DbConnection,
    token_id: &str,
    name: &str,
    email: &str,
    link: &str,
    expires_at: NaiveDateTime,
) -> QueryResult<bool> {
    outbox::enqueue(
        conn,
        &format!("portal-login:{token_id}"),
        Template::PortalLogin,
        email,
        &json!({ "name": name, "link": link, "expires_at": crate::store::utc::format(&expires_at) }),
    )
}

/// A console sign-in link as e-mailed (`link_id`: the link's row, never its token).
pub struct TeamLink<'a> {
    pub link_id: &'a str,
    pub name: &'a str,
    pub email: &'a str,
    pub link: &'a str,
    pub expires_at: NaiveDateTime,
}

impl TeamLink<'_> {
    fn payload(&self) -> serde_json::Value {
        json!({ "name": self.name, "link": self.link, "expires_at": crate::store::utc::format(&self.expires_at) })
    }
}

/// A new team member's invitation to the console, with their first sign-in link.
pub fn team_invite(
    conn: &mut DbConnection,
    link: &TeamLink<'_>,
    role: crate::domain::team::Role,
    invited_by: &str,
) -> QueryResult<bool> {
    let mut payload = link.payload();
    payload["role"] = json!(role.as_str());
    payload["invited_by"] = json!(invited_by);
    outbox::enqueue(conn, &format!("team-invite:{}", link.link_id), Template::TeamInvite, link.email, &payload)
}

/// A console sign-in link a team member asked for.
pub fn team_sign_in(conn: &mut DbConnection, link: &TeamLink<'_>) -> QueryResult<bool> {
    outbox::enqueue(conn, &format!("team-sign-in:{}", link.link_id), Template::TeamSignIn, link.email, &link.payload())
}

/// A webhook endpoint Vouch disabled after a long failure streak, to every active admin of
/// the console (or, with none, to the staff alert address).
pub fn webhook_disabled(
    conn: &mut DbConnection,
    mail: &MailContext,
    endpoint_id: &str,
    url: &str,
    reason: &str,
) -> QueryResult<usize> {
    let mut to = crate::store::team::active_admin_emails(conn)?;
    if to.is_empty() {
        to.extend(mail.staff_alert_to.clone());
    }
    let at = crate::store::utc::format(&crate::db::now());
    let mut queued = 0;
    for address in to {
        let key = format!("webhook-disabled:{endpoint_id}:{at}:{address}");
        let payload = json!({ "endpoint_id": endpoint_id, "url": url, "reason": reason });
        queued += usize::from(outbox::enqueue(conn, &key, Template::WebhookDisabled, &address, &payload)?);
    }
    Ok(queued)
}
