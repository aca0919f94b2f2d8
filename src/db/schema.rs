//! Diesel table definitions shared by both backends (written by hand to match `migrations/`).

diesel::table! {
    api_keys (id) {
        id -> Text,
        name -> Text,
        role -> Text,
        prefix -> Text,
        secret_hash -> Text,
        created_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    ambassadors (id) {
        id -> Text,
        status -> Text,
        source -> Text,
        name -> Text,
        email -> Text,
        phone -> Nullable<Text>,
        display_name -> Nullable<Text>,
        show_name_to_referrals -> Bool,
        payout_method -> Nullable<Text>,
        payout_paypal_email -> Nullable<Text>,
        payout_bank_reference -> Nullable<Text>,
        notify_referral_updates -> Bool,
        notify_reward_updates -> Bool,
        notes -> Nullable<Text>,
        application_message -> Nullable<Text>,
        status_reason -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        status_changed_at -> Timestamp,
        /// `domain::search::text_key` of the name (the console's search).
        name_key -> Nullable<Text>,
    }
}

diesel::table! {
    referral_codes (id) {
        id -> Text,
        ambassador_id -> Text,
        code -> Text,
        normalized -> Text,
        kind -> Text,
        active -> Bool,
        created_at -> Timestamp,
        deactivated_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    audit_events (id) {
        id -> Text,
        occurred_at -> Timestamp,
        actor_type -> Text,
        actor_id -> Nullable<Text>,
        actor_role -> Nullable<Text>,
        action -> Text,
        entity_type -> Text,
        entity_id -> Text,
        before_status -> Nullable<Text>,
        after_status -> Nullable<Text>,
        request_id -> Nullable<Text>,
        details -> Nullable<Text>,
    }
}

diesel::table! {
    idempotency_keys (scope, idem_key) {
        scope -> Text,
        idem_key -> Text,
        request_hash -> Text,
        status_code -> Nullable<Integer>,
        response_body -> Nullable<Text>,
        created_at -> Timestamp,
        request_id -> Nullable<Text>,
        subject_id -> Nullable<Text>,
    }
}

diesel::joinable!(referral_codes -> ambassadors (ambassador_id));

diesel::table! {
    app_secrets (name) {
        name -> Text,
        value -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    /// The console search's keys of a client (`domain::search`); none once erased.
    referral_search_keys (referral_id) {
        referral_id -> Text,
        name_key -> Text,
        reversed_name_key -> Nullable<Text>,
        email -> Nullable<Text>,
        phone_digits_reversed -> Nullable<Text>,
        external_ref_key -> Nullable<Text>,
    }
}

diesel::table! {
    referrals (id) {
        id -> Text,
        ambassador_id -> Nullable<Text>,
        code_id -> Nullable<Text>,
        submitted_code -> Nullable<Text>,
        status -> Text,
        source -> Text,
        client_first_name -> Nullable<Text>,
        client_last_name -> Nullable<Text>,
        client_email -> Nullable<Text>,
        client_phone -> Nullable<Text>,
        notes -> Nullable<Text>,
        email_key -> Nullable<Text>,
        phone_key -> Nullable<Text>,
        external_ref -> Nullable<Text>,
        share_name_with_ambassador -> Bool,
        planned_sessions -> Nullable<Integer>,
        session_count -> Integer,
        first_session_on -> Nullable<Date>,
        completed_on -> Nullable<Date>,
        treatment_value_minor -> Nullable<BigInt>,
        earns -> Nullable<Bool>,
        not_earning_reason -> Nullable<Text>,
        reason_code -> Nullable<Text>,
        reason_note -> Nullable<Text>,
        registered_at -> Timestamp,
        treatment_started_at -> Nullable<Timestamp>,
        completed_at -> Nullable<Timestamp>,
        refunded_at -> Nullable<Timestamp>,
        cancelled_at -> Nullable<Timestamp>,
        rejected_at -> Nullable<Timestamp>,
        erased_at -> Nullable<Timestamp>,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    referral_sessions (id) {
        id -> Text,
        referral_id -> Text,
        session_on -> Date,
        note -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    portal_login_tokens (id) {
        id -> Text,
        ambassador_id -> Text,
        token_hash -> Text,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    portal_sessions (id) {
        id -> Text,
        ambassador_id -> Text,
        token_hash -> Text,
        expires_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    email_outbox (id) {
        id -> Text,
        dedupe_key -> Text,
        template -> Text,
        to_address -> Text,
        payload -> Text,
        status -> Text,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        last_error -> Nullable<Text>,
        sent_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
    }
}

diesel::joinable!(referral_sessions -> referrals (referral_id));
diesel::table! {
    program_versions (id) {
        id -> Text,
        version -> Integer,
        currency -> Text,
        reward -> Text,
        tiers -> Text,
        holding_days -> Integer,
        min_payout_minor -> BigInt,
        annual_cap_minor -> Nullable<BigInt>,
        attribution_days -> Integer,
        client_offer -> Nullable<Text>,
        tax_threshold_minor -> BigInt,
        created_by -> Text,
        effective_from -> Timestamp,
    }
}

diesel::table! {
    payouts (id) {
        id -> Text,
        number -> Integer,
        status -> Text,
        currency -> Text,
        cutoff -> Timestamp,
        total_minor -> BigInt,
        skipped -> Text,
        reference -> Nullable<Text>,
        created_by -> Text,
        created_at -> Timestamp,
        paid_at -> Nullable<Timestamp>,
        cancelled_at -> Nullable<Timestamp>,
        updated_at -> Timestamp,
        program_version_id -> Text,
        locked_at -> Nullable<Timestamp>,
        cancel_reason -> Nullable<Text>,
    }
}

diesel::table! {
    payout_lines (id) {
        id -> Text,
        payout_id -> Text,
        number -> Integer,
        ambassador_id -> Text,
        amount_minor -> BigInt,
        currency -> Text,
        payout_method -> Text,
        payout_address -> Nullable<Text>,
        method_seq -> Integer,
        status -> Text,
        failure_reason -> Nullable<Text>,
        reward_count -> Integer,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    rewards (id) {
        id -> Text,
        ambassador_id -> Text,
        referral_id -> Nullable<Text>,
        kind -> Text,
        amount_minor -> BigInt,
        currency -> Text,
        state -> Text,
        holds_until -> Timestamp,
        earned_on -> Date,
        program_version_id -> Nullable<Text>,
        basis -> Nullable<Text>,
        uncapped_minor -> Nullable<BigInt>,
        capped_reason -> Nullable<Text>,
        reason -> Nullable<Text>,
        payout_line_id -> Nullable<Text>,
        paid_at -> Nullable<Timestamp>,
        voided_at -> Nullable<Timestamp>,
        void_reason -> Nullable<Text>,
        created_by -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    team_members (id) {
        id -> Text,
        name -> Text,
        email -> Text,
        role -> Text,
        status -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        deactivated_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    team_sign_in_links (id) {
        id -> Text,
        member_id -> Text,
        token_hash -> Text,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    team_sessions (id) {
        id -> Text,
        member_id -> Text,
        token_hash -> Text,
        created_at -> Timestamp,
        last_seen_at -> Timestamp,
        expires_at -> Timestamp,
        ended_at -> Nullable<Timestamp>,
        end_reason -> Nullable<Text>,
    }
}

diesel::joinable!(team_sign_in_links -> team_members (member_id));
diesel::joinable!(team_sessions -> team_members (member_id));

diesel::joinable!(payout_lines -> payouts (payout_id));
diesel::joinable!(payout_lines -> ambassadors (ambassador_id));
diesel::joinable!(rewards -> ambassadors (ambassador_id));
diesel::joinable!(rewards -> payout_lines (payout_line_id));
diesel::joinable!(rewards -> referrals (referral_id));
diesel::table! {
    webhook_endpoints (id) {
        id -> Text,
        url -> Text,
        description -> Text,
        events -> Text,
        enabled -> Bool,
        staff_system -> Bool,
        secret_sealed -> Text,
        previous_secret_sealed -> Nullable<Text>,
        previous_secret_expires_at -> Nullable<Timestamp>,
        failure_streak -> Integer,
        failing_since -> Nullable<Timestamp>,
        disabled_reason -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> Text,
        endpoint_id -> Text,
        event_id -> Text,
        event_type -> Text,
        entity_key -> Text,
        payload -> Text,
        status -> Text,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        last_status_code -> Nullable<Integer>,
        last_error -> Nullable<Text>,
        delivered_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    webhook_attempts (id) {
        id -> Text,
        delivery_id -> Text,
        attempt -> Integer,
        attempted_at -> Timestamp,
        status_code -> Nullable<Integer>,
        response_body -> Nullable<Text>,
        error -> Nullable<Text>,
        duration_ms -> BigInt,
    }
}

diesel::table! {
    import_locks (kind) {
        kind -> Text,
    }
}

diesel::joinable!(webhook_deliveries -> webhook_endpoints (endpoint_id));
diesel::joinable!(webhook_attempts -> webhook_deliveries (delivery_id));
diesel::table! {
    /// Running totals per ambassador, kept by triggers (migration `ambassador_tallies`): referral
    /// counts by status (`<status>`, `visible:<status>`) and reward sums by state (`reward:<state>`).
    ambassador_tallies (ambassador_id, tally) {
        ambassador_id -> Text,
        tally -> Text,
        n -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    api_keys,
    ambassadors,
    ambassador_tallies,
    referral_codes,
    audit_events,
    idempotency_keys,
    import_locks,
    app_secrets,
    referrals,
    referral_search_keys,
    referral_sessions,
    portal_login_tokens,
    portal_sessions,
    email_outbox,
    program_versions,
    payouts,
    payout_lines,
    rewards,
    team_members,
    team_sign_in_links,
    team_sessions,
    webhook_endpoints,
    webhook_deliveries,
    webhook_attempts,
);
