//! pglab: hands-on PostgreSQL labs. See README.md and docs/.

#![deny(clippy::unwrap_used)]

pub mod cli;
pub mod control;
pub mod demo;
pub mod ident;
pub mod lab;
pub mod metrics;
pub mod pgconn;
pub mod provision;
pub mod settings;
pub mod stack;
pub mod web;

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
