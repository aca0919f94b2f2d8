//! Every error a client can see, mapped to an RFC 9457 `application/problem+json` body in one
//! place. Internal causes are logged with `tracing`, never sent.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::domain::{DomainError, FieldError};

pub const PROBLEM_JSON: &str = "application/problem+json";

/// Marks a response that asks the client to try again (see [`ApiError::is_try_again`]).
#[derive(Debug, Clone, Copy)]
pub struct TryAgain;

/// RFC 9457 problem details as Vouch sends them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Stable slug: `validation-failed`, `not-found`, `invalid-transition`, `conflict`, …
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Offending fields, for validation problems.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Problem-specific members such as `current_status` or `existing_id`.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extensions: Map<String, Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("missing or invalid credentials")]
    Unauthorized,
    #[error("forbidden")]
    Forbidden,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("payload too large")]
    PayloadTooLarge,
    /// The request line and headers together exceeded `limit_bytes`.
    #[error("request headers too large")]
    HeadersTooLarge { limit_bytes: usize },
    /// A uniqueness or state rule: `kind` is the problem type (`email-taken`, `code-taken`, …).
    #[error("{detail}")]
    Conflict { kind: &'static str, detail: String, field: Option<&'static str> },
    /// A business rule refused otherwise well-formed input: `kind` is the problem type
    /// (`invalid-code`, `ambassador-inactive`, `self-referral`, …).
    #[error("{detail}")]
    Unprocessable { kind: &'static str, detail: String, field: Option<&'static str> },
    /// The client was already referred; names the live referral that won.
    #[error("client already referred")]
    DuplicateReferral { existing_referral_id: String },
    /// `hint`, when given, tells the client which step comes first (appended to `detail`).
    #[error("cannot {event} a {entity} that is {current}")]
    InvalidTransition { entity: &'static str, current: String, event: String, hint: Option<String> },
    /// A concurrent request won (see [`crate::store::StoreError`]): 409 `concurrent-update`
    /// unless the use case gave it a more precise meaning.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("rate limited")]
    RateLimited { retry_after_secs: u64 },
    #[error("idempotency key reused with a different request")]
    IdempotencyKeyReused,
    #[error("a request with this idempotency key is still being processed")]
    IdempotencyInProgress,
    /// The first request with this key changed data (its audit rows carry `request_id`) but its
    /// response was never stored: it is not run a second time.
    #[error("idempotent request {request_id} was carried out but its response was lost")]
    IdempotencyReplyLost { request_id: String },
    /// The stored response named a client whose personal data was erased since.
    #[error("stored response erased with the client's personal data")]
    ReplyErased,
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Validation(_) => "validation-failed",
            Self::Malformed(_) => "malformed-request",
            Self::UnsupportedMediaType => "unsupported-media-type",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound(_) => "not-found",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::PayloadTooLarge => "payload-too-large",
            Self::HeadersTooLarge { .. } => "headers-too-large",
            Self::Conflict { kind, .. } | Self::Unprocessable { kind, .. } => kind,
            Self::DuplicateReferral { .. } => "duplicate-referral",
            Self::Store(_) => "concurrent-update",
            Self::InvalidTransition { .. } => "invalid-transition",
            Self::RateLimited { .. } => "rate-limited",
            Self::IdempotencyKeyReused => "idempotency-key-reused",
            Self::IdempotencyInProgress => "idempotency-in-progress",
            Self::IdempotencyReplyLost { .. } => "idempotency-reply-lost",
            Self::ReplyErased => "personal-data-erased",
            Self::Unavailable(_) => "service-unavailable",
            Self::Internal(_) => "internal-error",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Self::Validation(_) => "Your request has invalid fields",
            Self::Malformed(_) => "Malformed request",
            Self::UnsupportedMediaType => "Unsupported media type",
            Self::Unauthorized => "Authentication required",
            Self::Forbidden => "Not allowed",
            Self::NotFound(_) => "Not found",
            Self::MethodNotAllowed => "Method not allowed",
            Self::PayloadTooLarge => "Request body too large",
            Self::HeadersTooLarge { .. } => "Request headers too large",
            Self::Conflict { .. } | Self::Store(_) => "Conflict",
            Self::Unprocessable { .. } => "Request refused by a business rule",
            Self::DuplicateReferral { .. } => "Client already referred",
            Self::InvalidTransition { .. } => "Invalid state transition",
            Self::RateLimited { .. } => "Too many requests",
            Self::IdempotencyKeyReused => "Idempotency key reused",
            Self::IdempotencyInProgress => "Request in progress",
            Self::IdempotencyReplyLost { .. } => "Request already carried out",
            Self::ReplyErased => "Response erased",
            Self::Unavailable(_) => "Service unavailable",
            Self::Internal(_) => "Internal server error",
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::Validation(errors) => match errors.as_slice() {
                [one] => format!("`{}` {}", one.field, one.message),
                _ => format!("{} fields are invalid; see `errors`", errors.len()),
            },
            Self::Malformed(why) => why.clone(),
            Self::UnsupportedMediaType => "Send the body as JSON with `Content-Type: application/json`.".into(),
            Self::Unauthorized => {
                "Send a valid API key or portal session token as `Authorization: Bearer <token>`.".into()
            }
            Self::Forbidden => "Your key's role may not do this.".into(),
            Self::NotFound(what) => format!("No such {what}."),
            Self::MethodNotAllowed => "This resource does not support that HTTP method.".into(),
            Self::PayloadTooLarge => "Request bodies are limited to 64 KiB.".into(),
            Self::HeadersTooLarge { limit_bytes } => {
                format!("The request line and headers are limited to {} KiB together.", limit_bytes / 1024)
            }
            Self::Conflict { detail, .. } | Self::Unprocessable { detail, .. } => detail.clone(),
            Self::DuplicateReferral { .. } => {
                "This client was already referred (same e-mail or phone); the first valid referral wins.".into()
            }
            Self::Store(_) => "Another request changed this at the same moment; reload it and try again.".into(),
            Self::InvalidTransition { entity, current, event, hint } => match hint {
                Some(hint) => format!("Cannot {event} this {entity}: it is {current}. {hint}"),
                None => format!("Cannot {event} this {entity}: it is {current}."),
            },
            Self::RateLimited { retry_after_secs } => {
                format!("Too many requests from your address; retry in {retry_after_secs} s.")
            }
            Self::IdempotencyKeyReused => {
                "This Idempotency-Key was already used with a different request; use a new key.".into()
            }
            Self::IdempotencyInProgress => {
                "The first request with this Idempotency-Key is still running; retry shortly.".into()
            }
            Self::IdempotencyReplyLost { request_id } => format!(
                "The first request with this Idempotency-Key was carried out, but its response could not be \
                 kept, so it is not run again. Look the result up instead: the audit trail names request \
                 {request_id}."
            ),
            Self::ReplyErased => "The response to this request named a client whose personal data has since been \
                                  erased, so it is not replayed. The request itself was carried out."
                .into(),
            Self::Unavailable(_) => "The service is temporarily unavailable; retry shortly.".into(),
            Self::Internal(_) => "Something went wrong on our side. It has been logged.".into(),
        }
    }

    /// Whether the answer means "try again": such replies are never stored for replay (a
    /// retry must run the request again, not get the same refusal back).
    pub fn is_try_again(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::IdempotencyInProgress
                | Self::Unavailable(_)
                | Self::Internal(_)
                | Self::Conflict { kind: "concurrent-update", .. }
                | Self::Store(_)
        )
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> u16 {
        self.status_code().as_u16()
    }

    /// The problem+json body, as text.
    pub fn problem_json(&self) -> String {
        serde_json::to_string(&self.problem()).unwrap_or_default()
    }

    pub fn problem(&self) -> Problem {
        let mut extensions = Map::new();
        let mut errors = Vec::new();
        match self {
            Self::Validation(e) => errors = e.clone(),
            Self::Conflict { field: Some(field), detail, .. }
            | Self::Unprocessable { field: Some(field), detail, .. } => {
                errors.push(FieldError::new(*field, detail.clone()));
            }
            Self::DuplicateReferral { existing_referral_id } => {
                extensions.insert("existing_referral_id".into(), Value::String(existing_referral_id.clone()));
            }
            Self::InvalidTransition { current, .. } => {
                extensions.insert("current_status".into(), Value::String(current.clone()));
            }
            Self::IdempotencyReplyLost { request_id } => {
                extensions.insert("request_id".into(), Value::String(request_id.clone()));
            }
            _ => {}
        }
        Problem {
            kind: self.kind().into(),
            title: self.title().into(),
            status: self.status_code().as_u16(),
            detail: self.detail(),
            errors,
            extensions,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Validation(_) | Self::IdempotencyKeyReused | Self::Unprocessable { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::Conflict { .. }
            | Self::Store(_)
            | Self::DuplicateReferral { .. }
            | Self::InvalidTransition { .. }
            | Self::IdempotencyInProgress
            | Self::IdempotencyReplyLost { .. } => StatusCode::CONFLICT,
            Self::ReplyErased => StatusCode::GONE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Internal(cause) => tracing::error!(%cause, "internal error"),
            Self::Unavailable(cause) => tracing::warn!(%cause, "service unavailable"),
            _ => {}
        }
        let mut res = HttpResponse::build(self.status_code());
        res.content_type(PROBLEM_JSON);
        match self {
            Self::Unauthorized => {
                res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            Self::RateLimited { retry_after_secs } => {
                res.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            Self::Unavailable(_) => {
                res.insert_header((header::RETRY_AFTER, "1"));
            }
            _ => {}
        }
        let mut res = res.body(self.problem_json());
        if self.is_try_again() {
            res.extensions_mut().insert(TryAgain);
        }
        res
    }
}

impl From<crate::app::Error> for ApiError {
    fn from(e: crate::app::Error) -> Self {
        use crate::app::Error;
        match e {
            Error::Validation(errors) => Self::Validation(errors),
            Error::NotFound(what) => Self::NotFound(what),
            Error::Forbidden => Self::Forbidden,
            Error::Conflict { kind, detail, field } => Self::Conflict { kind, detail, field },
            Error::Unprocessable { kind, detail, field } => Self::Unprocessable { kind, detail, field },
            Error::DuplicateReferral { existing_referral_id } => Self::DuplicateReferral { existing_referral_id },
            Error::InvalidTransition { entity, current, event, hint } => {
                Self::InvalidTransition { entity, current, event, hint }
            }
            Error::Store(e) => Self::Store(e),
            Error::Unavailable(cause) => Self::Unavailable(cause),
            Error::KeyInUse => Self::IdempotencyInProgress,
            Error::Internal(cause) => Self::Internal(cause),
        }
    }
}

/// The edge's own database work (authentication, idempotency, health) maps its failures the
/// way the use cases do.
macro_rules! through_app_error {
    ($($from:ty),*) => {$(
        impl From<$from> for ApiError {
            fn from(e: $from) -> Self {
                crate::app::Error::from(e).into()
            }
        }
    )*};
}
through_app_error!(
    DomainError,
    diesel::result::Error,
    crate::db::TaskError,
    diesel::r2d2::PoolError,
    crate::store::WriteError
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_try_again_answers_are_marked_so() {
        let marked = |e: ApiError| e.error_response().extensions().get::<TryAgain>().is_some();
        let concurrent = ApiError::Conflict { kind: "concurrent-update", detail: "x".into(), field: None };
        assert!(marked(concurrent));
        assert!(marked(ApiError::RateLimited { retry_after_secs: 1 }));
        assert!(marked(ApiError::IdempotencyInProgress));
        assert!(marked(ApiError::Unavailable("db".into())));
        assert!(marked(ApiError::internal("boom")));
        assert!(!marked(ApiError::Conflict { kind: "email-taken", detail: "x".into(), field: None }));
        assert!(!marked(ApiError::IdempotencyReplyLost { request_id: "r".into() }));
        assert!(!marked(ApiError::validation("name", "must not be empty")));
    }
}
