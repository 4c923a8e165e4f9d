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

#[cfg(test)]
mod tests {
    use super::*;

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
