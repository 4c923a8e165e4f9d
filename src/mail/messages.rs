//! The messages pglab sends, each as plain text and HTML from templates
//! (`templates/mail/`); HTML escapes every value, so that nothing a
//! participant's name holds becomes markup.

use askama::Template;

/// A message ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// What a participant needs to log in for the first time.
pub struct Credentials<'a> {
    pub name: &'a str,
    pub username: &'a str,
    pub password: &'a str,
    pub lab_title: &'a str,
    pub psql: &'a str,
    /// The web app's login page.
    pub login_url: &'a str,
}

#[derive(Template)]
#[template(path = "mail/credentials.txt")]
struct CredentialsText<'a> {
    c: &'a Credentials<'a>,
}

#[derive(Template)]
#[template(path = "mail/credentials.html")]
struct CredentialsHtml<'a> {
    c: &'a Credentials<'a>,
}

/// The subject of a credentials message (recorded with the message).
pub fn credentials_subject(lab_title: &str) -> String {
    format!("Your account for {lab_title}")
}

/// The credentials message.
pub fn credentials(c: &Credentials<'_>) -> Result<Rendered, askama::Error> {
    Ok(Rendered {
        subject: credentials_subject(c.lab_title),
        text: CredentialsText { c }.render()?,
        html: CredentialsHtml { c }.render()?,
    })
}

/// A task of a participant's progress, for a reminder.
pub struct TaskLine {
    pub title: String,
    pub points: u32,
    pub passed: bool,
    pub reason: Option<String>,
}

/// A reminder of the deadline to a participant who has not finished.
pub struct Reminder<'a> {
    pub name: &'a str,
    pub lab_title: &'a str,
    /// `2026-12-01 18:00 UTC`.
    pub deadline: &'a str,
    /// `in 24 hours`.
    pub left: &'a str,
    pub points: u32,
    pub max_points: u32,
    pub tasks: &'a [TaskLine],
    pub login_url: &'a str,
}

#[derive(Template)]
#[template(path = "mail/reminder.txt")]
struct ReminderText<'a> {
    r: &'a Reminder<'a>,
}

#[derive(Template)]
#[template(path = "mail/reminder.html")]
struct ReminderHtml<'a> {
    r: &'a Reminder<'a>,
}

pub fn reminder_subject(lab_title: &str, left: &str) -> String {
    format!("{lab_title}: the deadline is {left}")
}

pub fn reminder(r: &Reminder<'_>) -> Result<Rendered, askama::Error> {
    Ok(Rendered {
        subject: reminder_subject(r.lab_title, r.left),
        text: ReminderText { r }.render()?,
        html: ReminderHtml { r }.render()?,
    })
}

/// A problem of a hand-in's restore, for its result.
pub struct IssueLine {
    pub message: String,
    pub line: Option<usize>,
    pub statement: Option<String>,
}

/// A hand-in's result.
pub struct HandIn<'a> {
    pub name: &'a str,
    pub lab_title: &'a str,
    pub id: i64,
    pub uploaded_by: &'a str,
    pub succeeded: bool,
    pub late: bool,
    /// The first problems (at most a few).
    pub issues: &'a [IssueLine],
    /// How many problems there were in all.
    pub issue_count: usize,
    /// The hand-in's page.
    pub url: &'a str,
}

#[derive(Template)]
#[template(path = "mail/hand_in.txt")]
struct HandInText<'a> {
    h: &'a HandIn<'a>,
}

#[derive(Template)]
#[template(path = "mail/hand_in.html")]
struct HandInHtml<'a> {
    h: &'a HandIn<'a>,
}

pub fn hand_in_subject(lab_title: &str, id: i64, succeeded: bool) -> String {
    if succeeded {
        format!("{lab_title}: hand-in {id} restored")
    } else {
        format!("{lab_title}: hand-in {id} failed")
    }
}

pub fn hand_in(h: &HandIn<'_>) -> Result<Rendered, askama::Error> {
    Ok(Rendered {
        subject: hand_in_subject(h.lab_title, h.id, h.succeeded),
        text: HandInText { h }.render()?,
        html: HandInHtml { h }.render()?,
    })
}

/// A participant who needs help, for a lab master's digest.
pub struct HelpLine {
    pub name: String,
    pub username: String,
    /// Minutes without progress while connected.
    pub minutes: i64,
    pub points: u32,
    /// The first task not passed, and why.
    pub open_task: Option<String>,
    /// The participant's page in the web app.
    pub url: String,
}

/// The lab master's digest of the participants who need help now.
pub struct Digest<'a> {
    pub lab_title: &'a str,
    pub max_points: u32,
    pub people: &'a [HelpLine],
    /// Minutes without progress after which a connected participant needs help.
    pub stuck_minutes: i64,
    /// `30 minutes`: how often the digest comes.
    pub every: &'a str,
    pub board_url: &'a str,
}

#[derive(Template)]
#[template(path = "mail/digest.txt")]
struct DigestText<'a> {
    d: &'a Digest<'a>,
}

#[derive(Template)]
#[template(path = "mail/digest.html")]
struct DigestHtml<'a> {
    d: &'a Digest<'a>,
}

pub fn digest_subject(lab_title: &str, count: usize) -> String {
    match count {
        0 => format!("{lab_title}: nobody needs help now"),
        1 => format!("{lab_title}: 1 participant needs help"),
        n => format!("{lab_title}: {n} participants need help"),
    }
}

pub fn digest(d: &Digest<'_>) -> Result<Rendered, askama::Error> {
    Ok(Rendered {
        subject: digest_subject(d.lab_title, d.people.len()),
        text: DigestText { d }.render()?,
        html: DigestHtml { d }.render()?,
    })
}

/// `text` with each `{name}` of `values` filled in (`escape`d for HTML);
/// other braces stay as they are.
fn fill(text: &str, values: &[(&str, String)], escape: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let hit = after.find('}').and_then(|close| {
            values
                .iter()
                .find(|(k, _)| *k == &after[..close])
                .map(|(_, v)| (close, v))
        });
        match hit {
            Some((close, value)) => {
                if escape {
                    out.push_str(&html_escape(value));
                } else {
                    out.push_str(value);
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A message from a lab's own template: the values fill its
/// `{placeholders}` (escaped in the HTML part); without an HTML version,
/// the text goes in `<pre>`.
pub fn from_template(
    t: &crate::lab::mail::MailTemplate,
    language: Option<&str>,
    values: &[(&str, String)],
) -> Rendered {
    let lang = html_escape(language.unwrap_or("en"));
    let text = fill(&t.text, values, false);
    let body = match &t.html {
        Some(html) => fill(html, values, true),
        None => format!(
            "<pre style=\"font-family: sans-serif; white-space: pre-wrap\">{}</pre>",
            html_escape(&text)
        ),
    };
    Rendered {
        subject: fill(&t.subject, values, false).replace(['\r', '\n'], " "),
        text,
        html: format!(
            "<!doctype html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\"></head>\n<body>\n{body}\n</body></html>\n"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_labs_template_is_filled_and_escaped_in_html() {
        let t = crate::lab::mail::MailTemplate {
            subject: "Zugang zu {lab}".into(),
            text: "Hallo {name}, Passwort {password}; {unknown} {".into(),
            html: Some("<p>Hallo {name}</p>".into()),
        };
        let values = [
            ("lab", "Shop".to_string()),
            ("name", "Ann <b>".to_string()),
            ("password", "pw-1".to_string()),
        ];
        let m = from_template(&t, Some("de"), &values);
        assert_eq!(m.subject, "Zugang zu Shop");
        assert_eq!(m.text, "Hallo Ann <b>, Passwort pw-1; {unknown} {");
        assert!(
            m.html.contains("<p>Hallo Ann &lt;b&gt;</p>") && m.html.contains("lang=\"de\""),
            "{}",
            m.html
        );
        let plain = crate::lab::mail::MailTemplate { html: None, ..t };
        assert!(
            from_template(&plain, None, &values).html.contains("<pre"),
            "the text, escaped"
        );
    }

    #[test]
    fn credentials_carry_the_password_and_escape_names_in_html() {
        let c = Credentials {
            name: "Ann <b>O'Neil</b>",
            username: "ann",
            password: "pw-1234-abcd",
            lab_title: "Shop",
            psql: "psql -h db -U ann shop_ann",
            login_url: "https://lab.example.org/login",
        };
        let m = credentials(&c).unwrap();
        assert_eq!(m.subject, "Your account for Shop");
        assert!(m.text.contains("pw-1234-abcd") && m.text.contains("psql -h db -U ann shop_ann"));
        assert!(m.text.contains("Ann <b>O'Neil</b>"), "plain text as it is");
        assert!(m.html.contains("pw-1234-abcd"));
        assert!(!m.html.contains("<b>O"), "escaped in HTML: {}", m.html);
    }
}
