//! Running the API: connect to the log and the read store, serve until told to stop,
//! then finish the requests in flight.

use std::future::Future;

use anyhow::{Context, Result};
use chronicle_events::JetStreamLog;
use tokio::net::TcpListener;

use crate::config::Settings;
use crate::state::AppState;

/// Connects to NATS (creating or checking the stream) and builds the Postgres pool.
pub async fn connect(settings: &Settings) -> Result<AppState> {
    let log = JetStreamLog::connect(settings.nats_url()?, settings.log_config())
        .await
        .context("NATS_URL")?;
    let db =
        chronicle_projections::db::pool(settings.database_url()?, 32).context("DATABASE_URL")?;
    Ok(AppState { log, db })
}

/// Applies the read-model migrations.
pub async fn migrate(settings: &Settings) -> Result<Vec<i64>> {
    let (mut client, conn) =
        tokio_postgres::connect(settings.database_url()?, tokio_postgres::NoTls)
            .await
            .context("DATABASE_URL: cannot connect to Postgres")?;
    let conn = tokio::spawn(conn);
    let applied = chronicle_projections::migrate::run(&mut client).await?;
    drop(client);
    let _ = conn.await;
    Ok(applied)
}

/// Serves the API on `listener` until `shutdown` resolves; requests in flight finish.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let app = crate::http::app(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("the HTTP server failed")
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down");
}
