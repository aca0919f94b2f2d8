//! The e-mail templates (`templates/email/`, embedded at compile time) and their rendering
//! with minijinja. Each e-mail is a pair: `<name>.txt` (blocks `subject`, `preview` and the
//! plain-text body) and `<name>.html`; `.html` templates escape every value automatically, so
//! a name like `<script>` arrives as text.

use minijinja::{AutoEscape, Environment, Output, State, UndefinedBehavior};
use serde_json::{Map, Value};

/// Declares the templates once: their names, and their `.txt`/`.html` sources (with the
/// shared layout) embedded at compile time.
macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        /// Every e-mail the outbox can carry, by template name.
        pub const TEMPLATES: &[&str] = &[$($name),*];

        const SOURCES: &[(&str, &str)] = &[
            ("layout.txt", include_str!("../../templates/email/layout.txt")),
            ("layout.html", include_str!("../../templates/email/layout.html")),
            $(
                (concat!($name, ".txt"), include_str!(concat!("../../templates/email/", $name, ".txt"))),
                (concat!($name, ".html"), include_str!(concat!("../../templates/email/", $name, ".html"))),
            )*
        ];
    };
}

templates!(
    "ambassador_welcome",
    "referral_registered",
    "referral_cancelled",
    "referral_refunded",
    "reward_earned",
    "payout_sent",
    "portal_login",
    "staff_public_referral",
    "staff_application",
    "team_invite",
    "team_sign_in",
    "webhook_disabled",
);

/// A rendered e-mail, ready to be put into a MIME message.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub subject: String,
    /// The preheader mail clients show next to the subject.
    pub preview: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("unknown e-mail template {0:?}")]
    UnknownTemplate(String),
    #[error("payload is not a JSON object")]
    BadPayload,
    #[error("rendering {template}: {source}")]
    Template { template: String, source: minijinja::Error },
}

/// Values every template may use besides its payload.
#[derive(Debug, Clone)]
pub struct Brand {
    pub name: String,
    /// Base URL, without a trailing slash.
    pub public_url: String,
    /// Programme terms, linked from the welcome e-mail; empty: none.
    pub terms_url: String,
}

pub struct Renderer {
    env: Environment<'static>,
    brand: Brand,
}

impl Renderer {
    pub fn new(brand: Brand) -> Self {
        let mut env = Environment::new();
        // A missing payload value is an error (the row fails), never an empty gap in a sent
        // e-mail; `{% if x %}` still works for optional ones.
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        env.set_formatter(html_formatter);
        for (name, source) in SOURCES {
            env.add_template(name, source).expect("embedded e-mail templates parse");
        }
        Self { env, brand }
    }

    pub fn render(&self, template: &str, payload: &Value) -> Result<Rendered, RenderError> {
        if !TEMPLATES.contains(&template) {
            return Err(RenderError::UnknownTemplate(template.to_owned()));
        }
        let mut ctx: Map<String, Value> = payload.as_object().cloned().ok_or(RenderError::BadPayload)?;
        ctx.insert("brand".into(), Value::String(self.brand.name.clone()));
        ctx.insert("public_url".into(), Value::String(self.brand.public_url.clone()));
        ctx.insert("portal_url".into(), Value::String(format!("{}/portal", self.brand.public_url)));
        ctx.insert("terms_url".into(), Value::String(self.brand.terms_url.clone()));
        let err = |name: &str| {
            let name = name.to_owned();
            move |source| RenderError::Template { template: name, source }
        };
        let txt_name = format!("{template}.txt");
        let txt = self.env.get_template(&txt_name).map_err(err(&txt_name))?;
        let mut captured = txt.render_captured(&ctx).map_err(err(&txt_name))?;
        let blocks = captured.with_state_mut(|state| -> Result<(String, String), minijinja::Error> {
            Ok((state.render_block("subject")?, state.render_block("preview")?))
        });
        let (subject, preview) = blocks.map_err(err(&txt_name))?;
        let (subject, preview) = (one_line(&subject), one_line(&preview));
        let text = tidy(captured.output());
        ctx.insert("subject".into(), Value::String(subject.clone()));
        ctx.insert("preview".into(), Value::String(preview.clone()));
        let html_name = format!("{template}.html");
        let html = self.env.get_template(&html_name).and_then(|t| t.render(&ctx)).map_err(err(&html_name))?;
        Ok(Rendered { subject, preview, text, html })
    }
}

/// minijinja's HTML escaping (e-mails and web pages), minus `/` (escaped as `&#x2f;` by
/// default, which is valid but makes every link in the HTML part unreadable in its source). `& < > " '` are escaped, which
/// is what keeps a value from opening a tag or leaving an attribute.
pub(crate) fn html_formatter(
    out: &mut Output,
    state: &State,
    value: &minijinja::Value,
) -> Result<(), minijinja::Error> {
    match (state.auto_escape(), value.as_str()) {
        (AutoEscape::Html, Some(s)) if !value.is_safe() => {
            let mut escaped = String::with_capacity(s.len());
            for c in s.chars() {
                match c {
                    '&' => escaped.push_str("&amp;"),
                    '<' => escaped.push_str("&lt;"),
                    '>' => escaped.push_str("&gt;"),
                    '"' => escaped.push_str("&quot;"),
                    '\'' => escaped.push_str("&#x27;"),
                    c => escaped.push(c),
                }
            }
            out.write_str(&escaped)
                .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, e.to_string()))
        }
        _ => minijinja::escape_formatter(out, state, value),
    }
}

/// Subjects and previews are one line, whatever the template's layout.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Trailing spaces off every line, at most one blank line in a row, one final newline.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.trim().lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn renderer() -> Renderer {
        Renderer::new(Brand {
            name: "Clinic & Co".into(),
            public_url: "https://vouch.example".into(),
            terms_url: String::new(),
        })
    }

    /// A payload for every template, with a hostile value in each text field.
    fn sample(template: &str) -> Value {
        let evil = "<script>alert(1)</script>";
        match template {
            "ambassador_welcome" => {
                json!({ "name": evil, "code": "7Q4K-9MZD", "share_link": "https://vouch.example/r/7Q4K-9MZD",
                        "reward": "100.00 EUR", "holding_days": 14, "min_payout": "50.00 EUR" })
            }
            "referral_registered" | "referral_cancelled" | "referral_refunded" => {
                json!({ "ambassador_name": evil, "client_label": "Maria G." })
            }
            "reward_earned" => json!({ "ambassador_name": evil, "client_label": "Maria G.",
                "amount": "100.00 EUR", "holds_until": "2026-12-09" }),
            "payout_sent" => json!({ "ambassador_name": evil, "amount": "150.00 EUR",
                "reference": "BATCH-7", "paid_on": "2026-12-01" }),
            "portal_login" => json!({ "name": evil, "link": "https://vouch.example/portal/login?token=abc",
                "expires_at": "2026-11-25T10:15:00Z" }),
            "staff_public_referral" => json!({ "referral_id": "r-1", "status": "registered",
                "reason_code": null, "code": "7Q4K-9MZD" }),
            "staff_application" => json!({ "applicant_name": evil, "ambassador_id": "a-1" }),
            "team_invite" => json!({ "name": evil, "role": "staff", "invited_by": evil,
                "link": "https://vouch.example/console/sign-in/link?token=abc", "expires_at": "2026-11-26T10:00:00Z" }),
            "team_sign_in" => json!({ "name": evil, "link": "https://vouch.example/console/sign-in/link?token=abc",
                "expires_at": "2026-11-25T10:15:00Z" }),
            "webhook_disabled" => json!({ "endpoint_id": "w-1", "url": "https://hooks.example/<script>",
                "reason": "100 attempts in a row failed since 2026-11-25T10:00:00Z" }),
            other => panic!("no sample for {other}"),
        }
    }

    #[test]
    fn every_template_kind_has_sources() {
        let kinds: Vec<&str> = crate::domain::notice::Template::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(kinds, TEMPLATES);
    }

    #[test]
    fn every_template_renders_both_parts_and_escapes_html() {
        let r = renderer();
        for t in TEMPLATES {
            let out = r.render(t, &sample(t)).unwrap_or_else(|e| panic!("{t}: {e}"));
            assert!(!out.subject.is_empty() && !out.preview.is_empty(), "{t}");
            assert!(!out.subject.contains('\n'), "{t}");
            assert!(out.text.len() > 40 && out.html.contains("</html>"), "{t}");
            assert!(!out.html.contains("<script>"), "{t}: HTML must escape values");
            assert!(out.html.contains("Clinic &amp; Co"), "{t}");
            assert!(out.html.contains(&out.preview), "{t}: preheader in the HTML");
            if sample(t).to_string().contains("<script>") {
                assert!(out.html.contains("&lt;script&gt;"), "{t}");
                assert!(out.text.contains("<script>"), "{t}: plain text shows the value as typed");
            }
        }
    }

    #[test]
    fn subjects_and_previews_are_discreet() {
        let r = renderer();
        for t in TEMPLATES {
            let out = r.render(t, &sample(t)).unwrap();
            for part in [&out.subject, &out.preview] {
                let lower = part.to_lowercase();
                for word in ["treatment", "hair", "scalp", "transplant", "alopecia", "maria", "clinic visit"] {
                    assert!(!lower.contains(word), "{t}: {part:?} mentions {word:?}");
                }
            }
        }
    }

    #[test]
    fn values_reach_the_text() {
        let r = renderer();
        let out = r.render("reward_earned", &sample("reward_earned")).unwrap();
        assert!(out.text.contains("100.00 EUR") && out.text.contains("2026-12-09") && out.text.contains("Maria G."));
        let out = r.render("ambassador_welcome", &sample("ambassador_welcome")).unwrap();
        assert!(out.text.contains("https://vouch.example/r/7Q4K-9MZD"));
        assert!(!out.text.contains("full terms"), "no terms link configured");
        let with_terms = Renderer::new(Brand { terms_url: "https://vouch.example/terms".into(), ..r.brand.clone() });
        let out = with_terms.render("ambassador_welcome", &sample("ambassador_welcome")).unwrap();
        assert!(out.text.contains("https://vouch.example/terms") && out.html.contains("https://vouch.example/terms"));
    }

    #[test]
    fn unknown_templates_and_missing_values_are_errors() {
        let r = renderer();
        assert!(matches!(r.render("nope", &json!({})), Err(RenderError::UnknownTemplate(_))));
        assert!(matches!(r.render("payout_sent", &json!([1])), Err(RenderError::BadPayload)));
        assert!(matches!(
            r.render("payout_sent", &json!({ "ambassador_name": "A" })),
            Err(RenderError::Template { .. })
        ));
    }
}
