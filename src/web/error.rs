//! One error type for every handler: users get a friendly page with a short
//! message and no internals, the log gets the cause chain.

use askama::Template;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("This page does not exist.")]
    NotFound,
    #[error("You are logged in, but this page is not for your role.")]
    Forbidden,
    /// No session: go to the login page, then back to this path.
    #[error("login required")]
    LoginRequired(String),
    #[error(
        "The form was sent without a valid security token. Reload the page and send it again."
    )]
    Csrf,
    #[error("Too many failed logins. Try again in {0} seconds.")]
    TooManyAttempts(u64),
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("This address takes a form, not a visit: go back to the page the form was on.")]
    MethodNotAllowed,
    #[error(transparent)]
    Generate(#[from] crate::generate::GenerateError),
    #[error(transparent)]
    Store(#[from] crate::control::StoreError),
    #[error(transparent)]
    Provision(Box<crate::provision::ProvisionError>),
    #[error(transparent)]
    Ldap(Box<crate::provision::ldap::LdapError>),
    #[error(transparent)]
    Upload(#[from] crate::app::UploadError),
    #[error("template: {0}")]
    Template(#[from] askama::Error),
    #[error("{0}")]
    Internal(String),
}

// Boxed: both are large, and every handler returns a `WebError`.
impl From<crate::provision::ProvisionError> for WebError {
    fn from(e: crate::provision::ProvisionError) -> Self {
        WebError::Provision(Box::new(e))
    }
}

impl From<crate::app::participants::ResetError> for WebError {
    fn from(e: crate::app::participants::ResetError) -> Self {
        match e {
            crate::app::participants::ResetError::Store(e) => e.into(),
            crate::app::participants::ResetError::Ldap(e) => e.into(),
        }
    }
}

impl From<crate::provision::ldap::LdapError> for WebError {
    fn from(e: crate::provision::ldap::LdapError) -> Self {
        WebError::Ldap(Box::new(e))
    }
}

impl WebError {
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::NotFound
            | WebError::Generate(crate::generate::GenerateError::NotApplied(_)) => {
                StatusCode::NOT_FOUND
            }
            WebError::Forbidden | WebError::Csrf => StatusCode::FORBIDDEN,
            WebError::LoginRequired(_) | WebError::Unauthorized => StatusCode::UNAUTHORIZED,
            WebError::TooManyAttempts(_) => StatusCode::TOO_MANY_REQUESTS,
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::Conflict(_) => StatusCode::CONFLICT,
            WebError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            WebError::Upload(e) => e.status(),
            WebError::Ldap(e) if e.is_unreachable() => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the user is told: never internals for a server error.
    pub fn message(&self) -> String {
        if matches!(self, WebError::Ldap(e) if e.is_unreachable()) {
            "The LDAP directory that holds the passwords does not answer: logging in with an LDAP password is not possible until it is back. Try again in a few minutes.".to_string()
        } else if self.status().is_server_error() {
            "Something went wrong on the server. It has been logged; tell the operator the time it happened.".to_string()
        } else {
            self.to_string()
        }
    }

    fn log(&self) {
        if self.status().is_server_error() {
            // The whole chain: what failed, and each cause below it.
            let mut chain = self.to_string();
            let mut cause = std::error::Error::source(self);
            while let Some(c) = cause {
                chain.push_str(": ");
                chain.push_str(&c.to_string());
                cause = c.source();
            }
            tracing::error!(error = %chain, "request failed");
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub nav: Option<super::Nav>,
    pub code: u16,
    pub title: &'static str,
    pub message: String,
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        if let WebError::LoginRequired(next) = &self {
            let next: String = next
                .bytes()
                .map(|b| match b {
                    b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            return Redirect::to(&format!("/login?next={next}")).into_response();
        }
        self.log();
        let status = self.status();
        let page = ErrorPage {
            nav: None,
            code: status.as_u16(),
            title: status.canonical_reason().unwrap_or("Error"),
            message: self.message(),
        };
        match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => (status, page.message).into_response(),
        }
    }
}

/// The JSON API's face of the same errors: `{"error": "..."}`.
pub struct ApiError(pub WebError);

impl<E: Into<WebError>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.0.log();
        let status = self.0.status();
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({ "error": self.0.message() }).to_string(),
        )
            .into_response()
    }
}

/// Fallback for paths no route knows.
pub async fn not_found() -> WebError {
    WebError::NotFound
}

/// A known address asked with the wrong method (a bookmark of a form's
/// target): a pglab page saying so, not the browser's blank one.
pub async fn method_not_allowed() -> WebError {
    WebError::MethodNotAllowed
}
