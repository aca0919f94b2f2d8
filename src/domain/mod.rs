//! Pure business rules: newtypes parsed once at the edge, state machines, key and code
//! generation. Nothing here touches actix or diesel.

/// A closed set of names stored as text: the enum, `ALL`, `as_str`, `parse` (unknown names are
/// `None`: callers fail closed) and `Display`. `db::text` maps these to and from columns.
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub const ALL: [Self; [$($text),+].len()] = [$(Self::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some(Self::$variant),)+ _ => None }
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use text_enum;

/// Checks a state machine against its table: each (state, event) pair in `allowed` moves to
/// its state, every other pair is refused as an invalid transition naming the current state.
#[cfg(test)]
pub(crate) fn assert_transition_table<S, E>(
    states: &[S],
    events: &[E],
    allowed: &[(S, E, S)],
    transition: impl Fn(S, E) -> Result<S, DomainError>,
) where
    S: Copy + PartialEq + std::fmt::Debug + AsRef<str>,
    E: Copy + PartialEq + std::fmt::Debug,
{
    for &from in states {
        for &event in events {
            let expected = allowed.iter().find(|(f, e, _)| *f == from && *e == event).map(|(_, _, to)| *to);
            match (transition(from, event), expected) {
                (Ok(to), Some(exp)) => assert_eq!(to, exp, "{from:?} + {event:?}"),
                (Err(DomainError::InvalidTransition { current, .. }), None) => assert_eq!(current, from.as_ref()),
                (got, exp) => panic!("{from:?} + {event:?}: got {got:?}, expected {exp:?}"),
            }
        }
    }
}

pub mod ambassador;
pub mod api_key;
pub mod audit;
pub mod calendar;
pub mod code;
pub mod contact;
pub mod csv;
pub mod money;
pub mod notice;
pub mod payout;
pub mod program;
pub mod referral;
pub mod reward;
pub mod search;
pub mod team;
pub mod webhook;

use serde::Serialize;

/// One offending input field, reported in a problem's `errors` list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// Path of the field in the request (`email`, `payout_method.email`, `limit`).
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DomainError {
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("cannot {event} a {entity} that is {current}")]
    InvalidTransition { entity: &'static str, current: String, event: String },
}

/// Collects field errors so one response reports every bad field at once.
#[derive(Debug, Default)]
pub struct Validation {
    errors: Vec<FieldError>,
}

impl Validation {
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps the parsed value, or records the field's error and returns `None`.
    pub fn check<T>(&mut self, field: &str, parsed: Result<T, String>) -> Option<T> {
        match parsed {
            Ok(v) => Some(v),
            Err(message) => {
                self.errors.push(FieldError::new(field, message));
                None
            }
        }
    }

    pub fn push(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    pub fn finish(self) -> Result<(), DomainError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(DomainError::Validation(self.errors))
        }
    }
}

/// Trims a required free-text value and bounds its length (in characters).
pub fn required_text(value: &str, max: usize) -> Result<String, String> {
    let v = value.trim();
    if v.is_empty() {
        return Err("must not be empty".into());
    }
    bounded(v, max)
}

/// Trims an optional free-text value; blank becomes `None`.
pub fn optional_text(value: Option<&str>, max: usize) -> Result<Option<String>, String> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => bounded(v, max).map(Some),
    }
}

fn bounded(v: &str, max: usize) -> Result<String, String> {
    if v.chars().count() > max {
        return Err(format!("must be at most {max} characters"));
    }
    if v.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err("must not contain control characters".into());
    }
    Ok(v.to_owned())
}
