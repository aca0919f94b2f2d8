//! Request extractors that turn every client mistake into a precise problem: the JSON body
//! (content type, size, syntax, unknown fields, wrong types — with the offending field's path)
//! and the query string — and the one place control characters are refused for every
//! input: path, query string, JSON string values and form fields.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::domain::FieldError;
use crate::error::ApiError;

/// Request bodies are refused above this size (413).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON body parsed into `T` (which should `deny_unknown_fields`).
pub struct ApiJson<T>(pub T);

/// Like [`ApiJson`], but an empty body is allowed and gives `None` (for actions whose body
/// only carries an optional reason).
pub struct OptionalJson<T>(pub Option<T>);

/// A query string parsed into `T`.
pub struct ApiQuery<T>(pub T);

fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            let mime = v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
            mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false)
}

fn declared_too_large(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > MAX_BODY_BYTES)
}

/// Reads the whole body, refusing it past [`MAX_BODY_BYTES`].
pub async fn read_body(mut payload: Payload) -> Result<Vec<u8>, ApiError> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| match e {
            actix_web::error::PayloadError::Overflow => ApiError::PayloadTooLarge,
            other => ApiError::Malformed(format!("could not read the request body: {other}")),
        })?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ApiError::PayloadTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Parses a JSON object body, naming the offending field on a data error.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::Malformed("The request body is empty; send a JSON object.".into()));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => data_error(&path, &strip_position(&inner.to_string())),
            _ => ApiError::Malformed(format!(
                "The request body is not valid JSON: {}",
                strip_position(&inner.to_string())
            )),
        }
    })?;
    de.end().map_err(|e| {
        ApiError::Malformed(format!("The request body is not valid JSON: {}", strip_position(&e.to_string())))
    })?;
    // Raw control characters are already invalid JSON; escaped ones (`\u0000`) are not. The
    // body parsed, so it parses again as a tree, which names the field that holds one.
    let tree: serde_json::Value = serde_json::from_slice(body).map_err(|e| ApiError::Malformed(e.to_string()))?;
    // serde fills a struct from a JSON array too (fields by position), which no documented
    // request schema allows: every body is an object.
    if !tree.is_object() {
        return Err(ApiError::validation("body", "must be a JSON object"));
    }
    refuse_controls_in_json(&tree, "")?;
    Ok(value)
}

/// C0 control characters and DEL (`is_ascii_control` covers both). Free text in a body (notes, messages) may hold tabs and
/// line breaks; nothing else needs a control character, and PostgreSQL cannot store NUL.
fn is_forbidden(c: char, free_text: bool) -> bool {
    c.is_ascii_control() && !(free_text && matches!(c, '\t' | '\n' | '\r'))
}

const CONTROL_MESSAGE: &str = "must not contain control characters";

/// Refuses a body text value (or field name) holding a control character.
pub fn refuse_controls(field: &str, value: &str) -> Result<(), ApiError> {
    if value.chars().any(|c| is_forbidden(c, true)) {
        return Err(ApiError::validation(if field.is_empty() { "body" } else { field }, CONTROL_MESSAGE));
    }
    Ok(())
}

fn refuse_controls_in_json(value: &serde_json::Value, path: &str) -> Result<(), ApiError> {
    use serde_json::Value;
    let join = |key: &str| if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
    match value {
        Value::String(s) => refuse_controls(path, s),
        Value::Array(items) => {
            items.iter().enumerate().try_for_each(|(i, item)| refuse_controls_in_json(item, &join(&i.to_string())))
        }
        Value::Object(map) => map.iter().try_for_each(|(key, item)| {
            refuse_controls(&join(key), key)?;
            refuse_controls_in_json(item, &join(key))
        }),
        _ => Ok(()),
    }
}

/// Refuses a path or query string that holds a control character, raw or percent-encoded
/// (`/v1/ambassadors/%00`): no id, code or search term has one, so none is allowed.
pub fn check_path_and_query(path: &str, query: &str) -> Result<(), ApiError> {
    let decoded = percent_decode(path);
    if decoded.iter().any(|b| b.is_ascii_control() || *b == 0x7f) {
        return Err(ApiError::validation("path", CONTROL_MESSAGE));
    }
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if name.chars().chain(value.chars()).any(|c| is_forbidden(c, false)) {
            return Err(ApiError::validation(&name, CONTROL_MESSAGE));
        }
    }
    Ok(())
}

/// Decodes `%XX` escapes byte-wise (anything else is kept as it is).
fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// Builds the field error for a deserialisation data error at `path`.
fn data_error(path: &str, message: &str) -> ApiError {
    let path = if path == "." { "" } else { path };
    // An unknown key is already the last path segment; a missing one is not yet in the path.
    let join = |name: &str| {
        if path.is_empty() {
            name.to_owned()
        } else if path == name || path.ends_with(&format!(".{name}")) {
            path.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    let quoted = message.split('`').nth(1);
    let (field, text) = if let (Some(name), true) = (quoted, message.starts_with("unknown field")) {
        (join(name), "is not a known field".to_owned())
    } else if let (Some(name), true) = (quoted, message.starts_with("missing field")) {
        (join(name), "is required".to_owned())
    } else {
        (if path.is_empty() { "body".to_owned() } else { path.to_owned() }, message.to_owned())
    };
    ApiError::Validation(vec![FieldError::new(field, text)])
}

/// Reads a JSON body; `None` when it is empty and `allow_empty` is set.
fn json_body<T: DeserializeOwned + 'static>(
    req: &HttpRequest,
    payload: &mut Payload,
    allow_empty: bool,
) -> LocalBoxFuture<'static, Result<Option<T>, ApiError>> {
    let json = is_json(req);
    let too_large = declared_too_large(req);
    let payload = payload.take();
    Box::pin(async move {
        if too_large {
            return Err(ApiError::PayloadTooLarge);
        }
        let body = read_body(payload).await?;
        if allow_empty && body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        if !json {
            return Err(ApiError::UnsupportedMediaType);
        }
        // The documented schema of an optional body is "the object, or null".
        if allow_empty && body.trim_ascii() == b"null" {
            return Ok(None);
        }
        parse_json(&body).map(Some)
    })
}

impl<T: DeserializeOwned + 'static> FromRequest for ApiJson<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = json_body(req, payload, false);
        Box::pin(async move {
            body.await?.map(ApiJson).ok_or_else(|| ApiError::Malformed("The request body is empty.".into()))
        })
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for OptionalJson<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = json_body(req, payload, true);
        Box::pin(async move { body.await.map(OptionalJson) })
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for ApiQuery<T> {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(req.query_string().as_bytes()));
        let parsed = serde_path_to_error::deserialize(de).map(ApiQuery).map_err(|e| {
            let path = e.path().to_string();
            let message = e.into_inner().to_string();
            data_error(&path, &message)
        });
        std::future::ready(parsed)
    }
}

/// Deserialises a field that may be absent (`None`), `null` (`Some(None)`) or a value
/// (`Some(Some(v))`), for PATCH bodies where `null` clears a field.
pub fn nullable<'de, T, D>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    T: serde::Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

use serde::Deserialize as _;

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        count: Option<i64>,
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        flag: bool,
    }

    fn field_of(r: Result<Body, ApiError>) -> String {
        match r {
            Err(ApiError::Validation(e)) => e[0].field.clone(),
            other => panic!("expected validation error, got {other:?}"),
        }
    }

    #[test]
    fn data_errors_name_the_field() {
        assert_eq!(field_of(parse_json(br#"{"name":"a","bogus":1}"#)), "bogus");
        assert_eq!(field_of(parse_json(br#"{"count":1}"#)), "name");
        assert_eq!(field_of(parse_json(br#"{"name":"a","count":"x"}"#)), "count");
        assert_eq!(field_of(parse_json(br#"{"name":"a","inner":{"flag":1}}"#)), "inner.flag");
        assert_eq!(field_of(parse_json(br#"{"name":"a","inner":{"flag":true,"x":1}}"#)), "inner.x");
    }

    #[test]
    fn control_characters_are_refused_with_their_field() {
        assert_eq!(field_of(parse_json(br#"{"name":"a\u0000b"}"#)), "name");
        assert_eq!(field_of(parse_json(br#"{"name":"a","inner":{"flag":true,"x\u0001":1}}"#)), "inner.x\u{1}");
        assert!(parse_json::<Body>(br#"{"name":"two\nlines\tand a tab"}"#).is_ok());
        assert_eq!(field_of(parse_json(br#"["a", 1, null]"#)), "body");
    }

    #[test]
    fn paths_and_queries_with_controls_are_refused() {
        let field = |r: Result<(), ApiError>| match r {
            Err(ApiError::Validation(e)) => e[0].field.clone(),
            other => panic!("expected validation error, got {other:?}"),
        };
        assert_eq!(field(check_path_and_query("/v1/ambassadors/%00", "")), "path");
        assert_eq!(field(check_path_and_query("/v1/x/%7f", "")), "path");
        assert_eq!(field(check_path_and_query("/v1/x", "a=1&q=%0A")), "q");
        assert_eq!(field(check_path_and_query("/v1/x", "q=a\tb")), "q");
        assert!(check_path_and_query("/v1/x/%20%C3%A9%", "q=caf%C3%A9+au+lait&r=%").is_ok());
        assert_eq!(percent_decode("a%41%4g%"), b"aA%4g%".to_vec());
    }

    #[test]
    fn syntax_errors_are_malformed() {
        assert!(matches!(parse_json::<Body>(br#"{"name":"#), Err(ApiError::Malformed(_))));
        assert!(matches!(parse_json::<Body>(b""), Err(ApiError::Malformed(_))));
        assert!(matches!(parse_json::<Body>(br#"{"name":"a"} x"#), Err(ApiError::Malformed(_))));
    }
}
