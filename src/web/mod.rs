//! The web app: pages, `/healthz` and `/metrics`.

mod api;
mod error;
mod health;
mod pages;

pub use error::WebError;

use crate::control::Store;
use crate::settings::Settings;
use axum::Router;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub store: Store,
    pub metrics: Arc<crate::metrics::Metrics>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(pages::router())
        .merge(health::router())
        .merge(api::router())
        .with_state(state)
}

/// Serves on an already bound listener (tests bind port 0) until `shutdown`.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "web app listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
