//! Task descriptions: Markdown from the lab file, rendered for a page.
//! Raw HTML in the text is shown as text, and links keep only `http`,
//! `https` and `mailto` targets, so that a description can format but
//! never script a page.

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag};

/// The HTML of `text`, safe to put into a page as is.
pub fn to_html(text: &str) -> String {
    let events = Parser::new_ext(text, Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH).map(
        |event| match event {
            // Shown as the text it is.
            Event::Html(html) | Event::InlineHtml(html) => Event::Text(html),
            Event::Start(Tag::Link {
                link_type,
                dest_url,
                title,
                id,
            }) => Event::Start(Tag::Link {
                link_type,
                dest_url: safe_url(dest_url),
                title,
                id,
            }),
            Event::Start(Tag::Image {
                link_type,
                dest_url,
                title,
                id,
            }) => Event::Start(Tag::Image {
                link_type,
                dest_url: safe_url(dest_url),
                title,
                id,
            }),
            other => other,
        },
    );
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, events);
    html
}

fn safe_url(url: CowStr<'_>) -> CowStr<'_> {
    let lower = url.trim().to_ascii_lowercase();
    let allowed = ["http://", "https://", "mailto:", "/", "#"]
        .iter()
        .any(|p| lower.starts_with(p));
    if allowed {
        url
    } else {
        CowStr::Borrowed("#")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_formats_but_never_scripts() {
        let html = to_html("Create **shop.reviews** with `stars`:\n\n- one\n- two\n");
        assert!(
            html.contains("<strong>shop.reviews</strong>") && html.contains("<code>stars</code>")
        );
        assert!(html.contains("<li>one</li>"));
        for hostile in [
            "<script>alert(1)</script>",
            "text <img src=x onerror=alert(1)> more",
            "[click](javascript:alert(1))",
            "![x](JavaScript:alert(1))",
            "[x](data:text/html,<script>alert(1)</script>)",
        ] {
            let html = to_html(hostile);
            assert!(
                !html.contains("<script") && !html.contains("<img src=\"x\" onerror"),
                "{html}"
            );
            assert!(
                !html.to_ascii_lowercase().contains("javascript:") && !html.contains("data:text"),
                "{html}"
            );
        }
        assert!(to_html("[docs](https://www.postgresql.org/docs/)")
            .contains("href=\"https://www.postgresql.org/docs/\""));
    }
}
