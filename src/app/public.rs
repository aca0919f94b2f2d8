//! What the public can do without a key (the `/v1/public` API and the public pages): look a
//! code up, apply to be an ambassador, refer themselves with a code.

use crate::app::input::{parse_client, parse_person, PersonFields};
use crate::app::{ambassadors, Error, Result};
use crate::config::Settings;
use crate::domain::optional_text;
use crate::domain::Validation;
use crate::email::MailContext;
use crate::store::ambassadors::Enrolment;
use crate::store::ambassadors::NewAmbassador;
use crate::store::referrals::NewReferral;
use serde::Deserialize;
use serde::Serialize;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PublicCode {
    /// The code as issued (`7Q4K-9MZD`).
    pub code: String,
    pub valid: bool,
    /// Only when the ambassador chose to show their name.
    pub ambassador_display_name: Option<String>,
    /// What the referred friend gets (from the program rules).
    pub client_offer: Option<String>,
}

/// What a friend sees of a usable code (the API's lookup and the share-link page); `None` for
/// unknown or inactive codes, and codes of an ambassador who cannot refer now.
pub fn find_code(c: &mut crate::db::DbConnection, code: &str) -> Result<Option<PublicCode>> {
    if code.len() > 64 {
        return Ok(None);
    }
    let Some(found) = crate::store::reads::usable_code(c, code)? else {
        return Ok(None);
    };
    Ok(Some(PublicCode {
        code: found.code,
        valid: true,
        ambassador_display_name: found.display_name.filter(|_| found.show_name_to_referrals),
        client_offer: found.client_offer,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AmbassadorApplication {
    pub name: String,
    pub email: String,
    pub phone: Option<String>,
    pub display_name: Option<String>,
    #[serde(default)]
    pub show_name_to_referrals: bool,
    /// Anything the applicant wants the clinic to know.
    pub message: Option<String>,
}

/// Validates an application (the API's and the `/apply` page's).
pub fn parse_application(settings: &Settings, a: AmbassadorApplication) -> Result<NewAmbassador> {
    let mut v = Validation::new();
    let PersonFields { name, email, phone, display_name } =
        parse_person(&mut v, settings, &a.name, &a.email, a.phone.as_deref(), a.display_name.as_deref());
    let message = v.check("message", optional_text(a.message.as_deref(), 2000));
    v.finish()?;
    Ok(NewAmbassador {
        name: name.unwrap_or_default(),
        email: email.expect("validated"),
        phone: phone.flatten(),
        show_name_to_referrals: a.show_name_to_referrals && matches!(display_name, Some(Some(_))),
        display_name: display_name.flatten(),
        payout_method: None,
        notifications: Default::default(),
        notes: None,
        application_message: message.flatten(),
        vanity_code: None,
    })
}

/// Records an `applied` ambassador (staff alerted in the same transaction). An e-mail that is
/// already known is silently accepted: the answer never reveals who is an ambassador.
pub fn store_application(
    c: &mut crate::db::DbConnection,
    new: &NewAmbassador,
    mail: &MailContext,
    actor: &crate::store::audit::Actor,
) -> Result<()> {
    match ambassadors::enrol(c, new, Enrolment::Application, mail, actor) {
        Ok(_) | Err(Error::Conflict { kind: "email-taken", .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublicReferral {
    /// The code from the share link.
    pub code: String,
    pub first_name: String,
    pub last_name: Option<String>,
    /// E-mail and/or phone: at least one.
    pub email: Option<String>,
    pub phone: Option<String>,
    /// Must be true: the friend agrees to be contacted by the clinic.
    pub consent_to_contact: bool,
    /// The friend agrees that the ambassador sees their first name and initial.
    #[serde(default)]
    pub share_name_with_ambassador: bool,
}

/// Validates a friend's intake form (the API's and the share-link page's); the submission
/// itself is `app::referrals::submit_public`.
pub fn parse_referral(settings: &Settings, b: PublicReferral) -> Result<NewReferral> {
    let mut v = Validation::new();
    let client = parse_client(
        &mut v,
        settings,
        &b.code,
        &b.first_name,
        b.last_name.as_deref(),
        b.email.as_deref(),
        b.phone.as_deref(),
    );
    if !b.consent_to_contact {
        v.push("consent_to_contact", "must be true: we can only record you if the clinic may contact you");
    }
    v.finish()?;
    Ok(NewReferral { share_name_with_ambassador: b.share_name_with_ambassador, ..client })
}
