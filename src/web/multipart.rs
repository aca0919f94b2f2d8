//! A posted `multipart/form-data` body: the one form with a file input (Admin → Import). Read
//! whole, up to [`MAX_UPLOAD_BYTES`] (larger files go through the API or the command line,
//! which stream); text fields become a [`Form`] (the CSRF check reads it like any form), files
//! stay bytes.

use std::collections::HashMap;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;

use super::{Form, WebError};
use crate::error::ApiError;

/// The largest upload the console takes.
pub const MAX_UPLOAD_BYTES: usize = 8 * 1024 * 1024;

/// The form's text fields, and its files by field name (empty when no file was chosen).
pub(crate) struct Multipart {
    pub form: Form,
    pub files: HashMap<String, Vec<u8>>,
}

impl FromRequest for Multipart {
    type Error = WebError;
    type Future = LocalBoxFuture<'static, Result<Self, WebError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let boundary = boundary(req);
        let mut payload = payload.take();
        Box::pin(async move {
            let boundary = boundary.ok_or_else(|| {
                ApiError::Malformed("The form must be sent as multipart/form-data (it has a file).".into())
            })?;
            let mut body = Vec::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| ApiError::Malformed(format!("could not read the upload: {e}")))?;
                if body.len() + chunk.len() > MAX_UPLOAD_BYTES {
                    return Err(ApiError::PayloadTooLarge.into());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(parse(&body, &boundary)?)
        })
    }
}

/// The boundary of a `multipart/form-data` request, if it is one.
fn boundary(req: &HttpRequest) -> Option<String> {
    let content_type = req.headers().get("content-type")?.to_str().ok()?;
    let mut parts = content_type.split(';');
    if !parts.next()?.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    parts.find_map(|p| {
        let (name, value) = p.trim().split_once('=')?;
        name.eq_ignore_ascii_case("boundary").then(|| value.trim_matches('"').to_owned())
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A parameter of a `Content-Disposition` header (`name="csv"`).
fn disposition_param(header: &str, param: &str) -> Option<String> {
    header.split(';').find_map(|p| {
        let (name, value) = p.trim().split_once('=')?;
        name.trim().eq_ignore_ascii_case(param).then(|| value.trim().trim_matches('"').to_owned())
    })
}

fn parse(body: &[u8], boundary: &str) -> Result<Multipart, ApiError> {
    let malformed = || ApiError::Malformed("The uploaded form could not be read.".into());
    let delimiter = format!("--{boundary}").into_bytes();
    let next_part = format!("\r\n--{boundary}").into_bytes();
    let mut rest = &body[find(body, &delimiter).ok_or_else(malformed)? + delimiter.len()..];
    let (mut fields, mut files) = (HashMap::new(), HashMap::new());
    loop {
        if rest.starts_with(b"--") {
            break;
        }
        rest = rest.strip_prefix(b"\r\n").ok_or_else(malformed)?;
        let head_end = find(rest, b"\r\n\r\n").ok_or_else(malformed)?;
        let head = std::str::from_utf8(&rest[..head_end]).map_err(|_| malformed())?;
        rest = &rest[head_end + 4..];
        let end = find(rest, &next_part).ok_or_else(malformed)?;
        let content = &rest[..end];
        rest = &rest[end + next_part.len()..];
        let disposition = head
            .split("\r\n")
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.trim().eq_ignore_ascii_case("content-disposition").then_some(value)
            })
            .ok_or_else(malformed)?;
        let name = disposition_param(disposition, "name").ok_or_else(malformed)?;
        if disposition_param(disposition, "filename").is_some() {
            files.insert(name, content.to_vec());
        } else {
            let value = String::from_utf8(content.to_vec()).map_err(|_| malformed())?;
            crate::extract::refuse_controls(&name, &value)?;
            fields.insert(name, value);
        }
    }
    Ok(Multipart { form: Form(fields), files })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_files_are_read_and_a_broken_body_is_refused() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\ntok\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\nContent-Type: text/csv\r\n\r\n\
name,email\r\nA,a@example.com\r\n\r\n--XyZ--\r\n";
        let m = parse(body, "XyZ").unwrap();
        assert_eq!(m.form.text("csrf"), "tok");
        assert_eq!(m.files["file"], b"name,email\r\nA,a@example.com\r\n");
        assert!(parse(b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nno end", "XyZ").is_err());
        assert!(parse(b"nothing here", "XyZ").is_err());
    }
}
