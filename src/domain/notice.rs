//! E-mail notices as data: which templates exist and the states of a queued e-mail.

super::text_enum! {
    /// An e-mail template (`templates/email/<name>.{txt,html}`).
    pub enum Template {
        AmbassadorWelcome = "ambassador_welcome",
        ReferralRegistered = "referral_registered",
        ReferralCancelled = "referral_cancelled",
        ReferralRefunded = "referral_refunded",
        RewardEarned = "reward_earned",
        PayoutSent = "payout_sent",
        PortalLogin = "portal_login",
        StaffPublicReferral = "staff_public_referral",
        StaffApplication = "staff_application",
        TeamInvite = "team_invite",
        TeamSignIn = "team_sign_in",
        WebhookDisabled = "webhook_disabled",
    }
}

super::text_enum! {
    /// Where a queued e-mail stands (the outbox table's CHECK constraint).
    #[derive(serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum EmailStatus {
        Queued = "queued",
        Sending = "sending",
        Sent = "sent",
        Failed = "failed",
    }
}
