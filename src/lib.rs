//! pglab: hands-on PostgreSQL labs. See README.md and docs/.

#![deny(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod app;
pub mod binaries;
pub mod cli;
pub mod control;
pub mod demo;
pub mod evidence;
pub mod export;
pub mod generate;
pub mod ident;
pub mod lab;
pub mod mail;
pub mod metrics;
pub mod mutants;
pub mod pgconn;
pub mod private_files;
pub mod provision;
pub mod random;
pub mod scoring;
pub mod server;
pub mod settings;
pub mod sqlscript;
pub mod stack;
pub mod submissions;
pub mod web;

#[cfg(test)]
mod layers_tests;

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled, so a signal that arrives
/// while pglab is still starting is not lost (nor fatal).
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    async move {
        let wait = |s: Option<tokio::signal::unix::Signal>| async move {
            match s {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = wait(term.take()) => {},
            _ = wait(int.take()) => {},
        }
        tracing::info!("shutting down");
    }
}
