//! Starting pglab's server side (the same for `pglab serve` and `pglab up`):
//! control store, the servers' baseline roles, the scoring loop, web state.

use crate::control::Store;
use crate::metrics::Metrics;
use crate::scoring::{Board, Engine, Health};
use crate::settings::Settings;
use crate::web::session::SessionKey;
use crate::web::AppState;
use std::sync::Arc;

pub async fn start(settings: Settings) -> anyhow::Result<AppState> {
    crate::private_files::secure_data_dir(&settings.data_dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot make the data directory {} private: {e}",
            settings.data_dir.display()
        )
    })?;
    let store = Store::open_migrated(&settings).await?;
    for server in &settings.postgres {
        // pglab's roles exist, and those of older versions are gone.
        match crate::pgconn::connect(server, "postgres").await {
            Ok(admin) => crate::provision::postgres::ensure_baseline(server, &admin).await?,
            Err(e) => {
                tracing::warn!(server = %server.name, error = %e, "server unreachable at start")
            }
        }
    }
    let settings = Arc::new(settings);
    let board = Board::default();
    let health = Arc::new(Health::new());
    // One replica among any number that share the control database.
    let engine = Engine::new(
        Arc::clone(&settings),
        store.clone(),
        board.clone(),
        Arc::clone(&health),
    )
    .shared();
    let mut tasks = vec![tokio::spawn(engine.run()).abort_handle()];
    let sessions = SessionKey::new(&store.secret("session_key").await?);
    let queue = crate::app::Queue::default();
    tasks.extend(crate::app::jobs::start(
        Arc::clone(&settings),
        store.clone(),
        queue.clone(),
    ));
    tasks.push(crate::app::evidence::start(
        Arc::clone(&settings),
        store.clone(),
        queue.clone(),
    ));
    Ok(AppState {
        settings,
        store,
        metrics: Arc::new(Metrics::new(health, board.clone())),
        board,
        sessions,
        limiter: Default::default(),
        queue,
        background: crate::web::Background::new(tasks),
        api: Default::default(),
    })
}
