//! How the domain's state enums are stored: as their text names (`ReferralStatus::InTreatment`
//! ⇄ `'in_treatment'`), on both backends and through the `MultiConnection`. This is the one
//! mapping; the tables' CHECK constraints hold the same names. A name the code does not know
//! fails the read (fails closed) instead of being guessed.

/// Lets each listed type (with `as_str(self) -> &'static str` and
/// `parse(&str) -> Option<Self>`) be bound in queries (`status.eq(ReferralStatus::Completed)`)
/// and loaded from `Text` columns (`pub status: ReferralStatus` in a row struct).
macro_rules! stored_as_text {
    ($($t:ty),+ $(,)?) => {$(
        impl diesel::expression::AsExpression<diesel::sql_types::Text> for $t {
            type Expression =
                <&'static str as diesel::expression::AsExpression<diesel::sql_types::Text>>::Expression;
            fn as_expression(self) -> Self::Expression {
                diesel::expression::AsExpression::<diesel::sql_types::Text>::as_expression(self.as_str())
            }
        }

        impl diesel::expression::AsExpression<diesel::sql_types::Text> for &$t {
            type Expression =
                <&'static str as diesel::expression::AsExpression<diesel::sql_types::Text>>::Expression;
            fn as_expression(self) -> Self::Expression {
                diesel::expression::AsExpression::<diesel::sql_types::Text>::as_expression(self.as_str())
            }
        }

        impl diesel::expression::AsExpression<diesel::sql_types::Nullable<diesel::sql_types::Text>> for $t {
            type Expression = <&'static str as diesel::expression::AsExpression<
                diesel::sql_types::Nullable<diesel::sql_types::Text>,
            >>::Expression;
            fn as_expression(self) -> Self::Expression {
                diesel::expression::AsExpression::<diesel::sql_types::Nullable<diesel::sql_types::Text>>::as_expression(
                    self.as_str(),
                )
            }
        }

        impl<DB> diesel::serialize::ToSql<diesel::sql_types::Text, DB> for $t
        where
            DB: diesel::backend::Backend,
            str: diesel::serialize::ToSql<diesel::sql_types::Text, DB>,
        {
            fn to_sql<'b>(&'b self, out: &mut diesel::serialize::Output<'b, '_, DB>) -> diesel::serialize::Result {
                <str as diesel::serialize::ToSql<diesel::sql_types::Text, DB>>::to_sql(self.as_str(), out)
            }
        }

        impl<DB> diesel::deserialize::FromSql<diesel::sql_types::Text, DB> for $t
        where
            DB: diesel::backend::Backend,
            String: diesel::deserialize::FromSql<diesel::sql_types::Text, DB>,
        {
            fn from_sql(bytes: DB::RawValue<'_>) -> diesel::deserialize::Result<Self> {
                let name = <String as diesel::deserialize::FromSql<diesel::sql_types::Text, DB>>::from_sql(bytes)?;
                <$t>::parse(&name).ok_or_else(|| format!("unknown {} {name:?}", stringify!($t)).into())
            }
        }

        impl<DB> diesel::deserialize::Queryable<diesel::sql_types::Text, DB> for $t
        where
            DB: diesel::backend::Backend,
            Self: diesel::deserialize::FromSql<diesel::sql_types::Text, DB>,
        {
            type Row = Self;
            fn build(row: Self) -> diesel::deserialize::Result<Self> {
                Ok(row)
            }
        }
    )+};
}

stored_as_text!(
    crate::domain::referral::ReferralStatus,
    crate::domain::ambassador::AmbassadorStatus,
    crate::domain::ambassador::Enrolment,
    crate::domain::audit::ActorKind,
    crate::domain::audit::AuditAction,
    crate::domain::audit::EntityType,
    crate::domain::notice::Template,
    crate::domain::notice::EmailStatus,
    crate::domain::code::CodeKind,
    crate::domain::api_key::Role,
    crate::domain::referral::ReferralSource,
    crate::domain::reward::RewardKind,
    crate::domain::reward::RewardState,
    crate::domain::reward::RewardStatus,
    crate::domain::payout::PayoutStatus,
    crate::domain::payout::LineStatus,
    crate::domain::team::MemberStatus,
    crate::domain::team::SessionEnd,
    crate::domain::webhook::DeliveryStatus,
);
