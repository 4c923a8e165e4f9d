//! One error type for every handler: users get a short message, the log gets
//! the cause chain.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("not found")]
    NotFound,
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Generate(#[from] crate::generate::GenerateError),
    #[error(transparent)]
    Store(#[from] crate::control::StoreError),
    #[error("template: {0}")]
    Template(#[from] askama::Error),
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let status = match self {
            WebError::NotFound
            | WebError::Generate(crate::generate::GenerateError::NotApplied(_)) => {
                StatusCode::NOT_FOUND
            }
            WebError::Unauthorized => StatusCode::UNAUTHORIZED,
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!(error = %self, cause = ?std::error::Error::source(&self), "request failed");
        }
        let message = if status.is_server_error() {
            "Something went wrong on the server; the log has the details.".to_string()
        } else {
            self.to_string()
        };
        (status, message).into_response()
    }
}
