//! Reading the e-mails the app sent: a small RFC 5322 / MIME reader for the `.eml` files the
//! file transport writes (and the messages the test SMTP listener receives).

use std::time::{Duration, Instant};

use base64::Engine;
use diesel::prelude::*;
use vouch::db::schema::email_outbox;

use crate::helpers::TestApp;

/// One parsed e-mail.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: String,
    pub reply_to: Option<String>,
    pub subject: String,
    pub message_id: String,
    pub content_type: String,
    pub text: String,
    pub html: String,
}

impl Mail {
    /// The first `https?://…` link in the text part that contains `needle`.
    pub fn link_containing(&self, needle: &str) -> Option<String> {
        self.text
            .split_whitespace()
            .find(|w| (w.starts_with("http://") || w.starts_with("https://")) && w.contains(needle))
            .map(str::to_owned)
    }

    /// Everything a reader can see: headers, both parts decoded.
    pub fn everything(&self) -> String {
        format!("{}\n{}\n{}\n{}", self.subject, self.to, self.text, self.html)
    }
}

fn split_head(raw: &str) -> (&str, &str) {
    match raw.find("\r\n\r\n") {
        Some(i) => (&raw[..i], &raw[i + 4..]),
        None => match raw.find("\n\n") {
            Some(i) => (&raw[..i], &raw[i + 2..]),
            None => (raw, ""),
        },
    }
}

/// Header fields, unfolded, names lower-cased.
fn headers(head: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some(last) = out.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            out.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    out
}

fn header<'a>(hs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    hs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn decode_qp(body: &str) -> String {
    let mut bytes = Vec::new();
    let lines: Vec<&str> = body.split('\n').map(|l| l.trim_end_matches('\r')).collect();
    for (i, line) in lines.iter().enumerate() {
        let (line, soft) = match line.strip_suffix('=') {
            Some(l) => (l, true),
            None => (*line, false),
        };
        let b = line.as_bytes();
        let mut j = 0;
        while j < b.len() {
            if b[j] == b'=' && j + 2 < b.len() {
                if let Ok(v) = u8::from_str_radix(&line[j + 1..j + 3], 16) {
                    bytes.push(v);
                    j += 3;
                    continue;
                }
            }
            bytes.push(b[j]);
            j += 1;
        }
        if !soft && i + 1 < lines.len() {
            bytes.push(b'\n');
        }
    }
    String::from_utf8(bytes).expect("quoted-printable decodes to UTF-8")
}

fn decode(body: &str, encoding: Option<&str>) -> String {
    match encoding.map(|e| e.to_ascii_lowercase()).as_deref() {
        Some("base64") => {
            let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(compact).expect("base64 part"))
                .expect("UTF-8 part")
        }
        Some("quoted-printable") => decode_qp(body),
        _ => body.replace("\r\n", "\n"),
    }
}

/// Parses one message (multipart/alternative with a text and an HTML part, as Vouch sends).
pub fn parse(raw: &str) -> Mail {
    let (head, body) = split_head(raw);
    let hs = headers(head);
    let content_type = header(&hs, "content-type").unwrap_or_default().to_owned();
    let (mut text, mut html) = (String::new(), String::new());
    if let Some(b) = content_type.split("boundary=").nth(1) {
        let boundary = format!("--{}", b.trim_matches('"').split(';').next().unwrap().trim_matches('"'));
        for part in body.split(boundary.as_str()).skip(1) {
            if part.starts_with("--") {
                break;
            }
            let (phead, pbody) = split_head(part.trim_start_matches(['\r', '\n']));
            let phs = headers(phead);
            let ptype = header(&phs, "content-type").unwrap_or_default().to_ascii_lowercase();
            let decoded = decode(pbody.trim_end_matches(['\r', '\n']), header(&phs, "content-transfer-encoding"));
            if ptype.starts_with("text/plain") {
                text = decoded;
            } else if ptype.starts_with("text/html") {
                html = decoded;
            }
        }
    }
    Mail {
        from: header(&hs, "from").unwrap_or_default().to_owned(),
        to: header(&hs, "to").unwrap_or_default().to_owned(),
        reply_to: header(&hs, "reply-to").map(str::to_owned),
        subject: header(&hs, "subject").unwrap_or_default().to_owned(),
        message_id: header(&hs, "message-id").unwrap_or_default().to_owned(),
        content_type,
        text,
        html,
    }
}

impl TestApp {
    /// Folder the file transport writes to.
    pub fn mail_dir(&self) -> std::path::PathBuf {
        self.settings.email.file_dir(&self.settings.data_dir)
    }

    /// Every `.eml` file written so far, oldest first (Message-IDs carry the UUID v7 outbox id).
    pub fn mails(&self) -> Vec<Mail> {
        let mut mails: Vec<Mail> = match std::fs::read_dir(self.mail_dir()) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                .map(|e| parse(&std::fs::read_to_string(e.path()).unwrap()))
                .collect(),
            Err(_) => Vec::new(),
        };
        mails.sort_by(|a, b| a.message_id.cmp(&b.message_id));
        mails
    }

    /// Rows not yet sent or failed.
    pub fn outbox_pending(&self) -> i64 {
        let mut conn = self.pool.get().unwrap();
        email_outbox::table
            .filter(email_outbox::status.eq_any(["queued", "sending"]))
            .count()
            .get_result(&mut conn)
            .unwrap()
    }

    /// Waits until the worker has dealt with every due row, then returns the mail written.
    pub async fn delivered(&self) -> Vec<Mail> {
        let started = Instant::now();
        while self.outbox_pending() > 0 {
            assert!(started.elapsed() < Duration::from_secs(15), "outbox not drained in 15 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.mails()
    }

    /// Mail delivered to this address, oldest first.
    pub async fn mail_to(&self, address: &str) -> Vec<Mail> {
        self.delivered().await.into_iter().filter(|m| m.to.contains(address)).collect()
    }
}
