//! What the audit trail records: who acted, which action they took, and on what kind of record.

use super::ambassador::LifecycleEvent;
super::text_enum! {
    /// Who is acting, as recorded in audit events.
    pub enum ActorKind {
        ApiKey = "api_key",
        Ambassador = "ambassador",
        Public = "public",
        System = "system",
        /// A team member signed in to the console (id and role recorded).
        TeamMember = "team_member",
    }
}

super::text_enum! {
    /// Every action an audit event can record.
    pub enum AuditAction {
        AmbassadorEnrolled = "ambassador.enrolled",
        AmbassadorApplied = "ambassador.applied",
        AmbassadorUpdated = "ambassador.updated",
        AmbassadorApproved = "ambassador.approve",
        AmbassadorDeclined = "ambassador.decline",
        AmbassadorSuspended = "ambassador.suspend",
        AmbassadorReactivated = "ambassador.reactivate",
        AmbassadorClosed = "ambassador.close",
        ApiKeyCreated = "api_key.created",
        ApiKeyRevoked = "api_key.revoked",
        CodeCreated = "code.created",
        CodeDeactivated = "code.deactivated",
        EmailRetried = "email.retried",
        /// One chunk of a CSV import written (counts in the details).
        ImportChunkApplied = "import.chunk_applied",
        PayoutCreated = "payout.created",
        PayoutLocked = "payout.locked",
        PayoutPaid = "payout.paid",
        PayoutCancelled = "payout.cancelled",
        PayoutLineFailed = "payout_line.failed",
        PayoutLineReduced = "payout_line.reduced",
        PayoutLineReleased = "payout_line.released",
        PortalLoginLinkSent = "portal.login_link_sent",
        PortalSessionStarted = "portal.session_started",
        PortalSessionEnded = "portal.session_ended",
        ProgramUpdated = "program.updated",
        ReferralRegistered = "referral.registered",
        ReferralSubmittedRejected = "referral.submitted_rejected",
        ReferralSessionRecorded = "referral.session_recorded",
        ReferralCompleted = "referral.completed",
        ReferralCancelled = "referral.cancelled",
        ReferralRejected = "referral.rejected",
        ReferralRefunded = "referral.refunded",
        ReferralUpdated = "referral.updated",
        ReferralPersonalDataErased = "referral.personal_data_erased",
        RewardEarned = "reward.earned",
        RewardVoided = "reward.voided",
        RewardClawback = "reward.clawback",
        RewardAdjusted = "reward.adjusted",
        RewardInPayout = "reward.in_payout",
        RewardPaid = "reward.paid",
        RewardReleased = "reward.released",
        RewardRefundedInLockedPayout = "reward.refunded_in_locked_payout",
        TeamMemberInvited = "team_member.invited",
        TeamMemberRoleChanged = "team_member.role_changed",
        TeamMemberDeactivated = "team_member.deactivated",
        TeamMemberReactivated = "team_member.reactivated",
        TeamSignInLinkSent = "team_member.sign_in_link_sent",
        TeamSessionStarted = "team_member.session_started",
        TeamSessionEnded = "team_member.session_ended",
        TeamSignedOutEverywhere = "team_member.signed_out_everywhere",
        WebhookCreated = "webhook.created",
        WebhookUpdated = "webhook.updated",
        WebhookDeleted = "webhook.deleted",
        WebhookSecretRotated = "webhook.secret_rotated",
        WebhookPinged = "webhook.pinged",
        WebhookDisabled = "webhook.disabled",
        WebhookDeliveryReplayed = "webhook_delivery.replayed",
    }
}

super::text_enum! {
    /// What kind of record an audit event is about.
    #[derive(serde::Serialize, utoipa::ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum EntityType {
        Ambassador = "ambassador",
        ApiKey = "api_key",
        Email = "email",
        /// A CSV import run (its chunks share the id).
        Import = "import",
        Payout = "payout",
        PayoutLine = "payout_line",
        Program = "program",
        Referral = "referral",
        ReferralCode = "referral_code",
        Reward = "reward",
        TeamMember = "team_member",
        Webhook = "webhook",
        WebhookDelivery = "webhook_delivery",
    }
}

impl AuditAction {
    /// The action a staff change of an ambassador's status records.
    pub fn of_lifecycle(event: LifecycleEvent) -> Self {
        match event {
            LifecycleEvent::Approve => Self::AmbassadorApproved,
            LifecycleEvent::Decline => Self::AmbassadorDeclined,
            LifecycleEvent::Suspend => Self::AmbassadorSuspended,
            LifecycleEvent::Reactivate => Self::AmbassadorReactivated,
            LifecycleEvent::Close => Self::AmbassadorClosed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_actions_keep_their_recorded_names() {
        for event in LifecycleEvent::ALL {
            assert_eq!(AuditAction::of_lifecycle(event).as_str(), format!("ambassador.{}", event.as_str()));
        }
    }

    #[test]
    fn entity_types_serialise_as_their_stored_names() {
        for entity in EntityType::ALL {
            assert_eq!(serde_json::to_value(entity).unwrap(), entity.as_str());
        }
    }
}
