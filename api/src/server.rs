//! Running the API: connect to the log and the read store, serve until told to stop,
//! then finish the requests in flight.

use std::future::Future;

use std::sync::Arc;

use anyhow::{Context, Result};
use chronicle_commands::{Answer, Command, CommandHandler, Ctx, Executed};
use chronicle_events::Actor;
use chronicle_events::JetStreamLog;
use chronicle_events::domain::user::Role;
use chronicle_projections::models::Projection;
use chronicle_projections::runtime::RunnerConfig;
use tokio::net::TcpListener;
use uuid::Uuid;

use crate::auth::{Revocations, TokenSigner};
use crate::config::Settings;
use crate::idempotency::Idempotency;
use crate::positions::Positions;
use crate::state::AppState;

/// Connects to the log alone (projectors need nothing else).
pub async fn connect_log(settings: &Settings) -> Result<JetStreamLog> {
    JetStreamLog::connect(settings.nats_url()?, settings.log_config()?)
        .await
        .context("NATS_URL")
}

/// The projections named by `--only` (all when empty).
pub fn select_projections(only: &[String]) -> Result<Vec<Arc<dyn Projection>>> {
    let all = chronicle_projections::models::all();
    if let Some(unknown) = only
        .iter()
        .find(|n| !all.iter().any(|p| p.name() == n.as_str()))
    {
        anyhow::bail!(
            "--only: no projection `{unknown}`; there are {}",
            chronicle_projections::models::NAMES.join(", ")
        );
    }
    Ok(all
        .into_iter()
        .filter(|p| only.is_empty() || only.iter().any(|n| n == p.name()))
        .map(Arc::from)
        .collect())
}

/// Runs projectors until `stop` turns true; each finishes its batch first.
pub async fn run_projectors(
    settings: &Settings,
    log: JetStreamLog,
    projections: Vec<Arc<dyn Projection>>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let cfg = RunnerConfig::new(settings.database_url()?);
    tracing::info!(count = projections.len(), "projectors starting");
    // One reader of the log for the process: its projections and the sealer's tree.
    let feed = chronicle_projections::feed::SharedFeed::new(Arc::new(log.clone()));
    // The sealer runs beside the projectors wherever a seal key is configured; one is
    // active across all processes.
    let sealer = settings.seal_key.as_ref().map(|k| {
        let sealer_cfg = chronicle_replay::sealer::SealerConfig {
            database_url: cfg.database_url.clone(),
            every_events: settings.seal_every_events,
            every: std::time::Duration::from_secs(settings.seal_every_seconds),
        };
        tokio::spawn(chronicle_replay::sealer::run(
            log.clone(),
            sealer_cfg,
            chronicle_replay::seal::SealKey::from_seed(&k.0),
            Some(feed.clone()),
            stop.clone(),
        ))
    });
    chronicle_projections::runtime::run_all(feed, cfg, projections, stop).await;
    if let Some(s) = sealer {
        let _ = s.await;
    }
    Ok(())
}

/// One Postgres connection (for the command line's one-off work), its connection driven
/// on the runtime.
pub async fn connect_db(settings: &Settings) -> Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(settings.database_url()?, tokio_postgres::NoTls)
        .await
        .context("DATABASE_URL")?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!(error = %e, "Postgres connection ended");
        }
    });
    Ok(client)
}

/// Connects to NATS (creating or checking the stream), reads the revoked tokens, opens
/// the idempotency records and builds the Postgres pool.
pub async fn connect(settings: &Settings) -> Result<AppState> {
    let key = settings.signing_key()?;
    if crate::metrics::handle().is_some() {
        crate::metrics::describe();
    }
    let log = JetStreamLog::connect(settings.nats_url()?, settings.log_config()?)
        .await
        .context("NATS_URL")?;
    let db =
        chronicle_projections::db::pool(settings.database_url()?, 32).context("DATABASE_URL")?;
    let revocations = Revocations::start(log.clone())
        .await
        .context("reading the revoked tokens from the log")?;
    let idempotency = Idempotency::open(
        log.jetstream(),
        &settings.stream,
        settings.replicas as usize,
    )
    .await
    .map_err(anyhow::Error::msg)?;
    // Whatever this process appends takes effect here at once: a revocation, whether a
    // command revoked directly or an approval ran an escalated one.
    let local = revocations.clone();
    let snapshots = chronicle_events::snapshots::KvSnapshots::open(
        log.jetstream(),
        &settings.stream,
        settings.replicas as usize,
        log.config().keyring.clone(),
    )
    .await
    .map_err(anyhow::Error::msg)?;
    let handler = CommandHandler::new(Arc::new(log.clone()))
        .with_snapshots(chronicle_commands::handler::snapshot::Snapshots {
            store: Arc::new(snapshots),
            every: settings.snapshot_every,
        })
        .observe(Arc::new(
            move |events: &[chronicle_events::PendingEvent]| {
                let now = chrono::Utc::now();
                for e in events {
                    local.apply_event(&e.event, now);
                }
            },
        ));
    let live = crate::live::Hub::new(
        log.clone(),
        settings.subscriber_lag as usize,
        settings.subscriptions_per_token as usize,
    );
    Ok(AppState::new(crate::state::Shared {
        handler: Arc::new(handler),
        live,
        batch_router: Default::default(),
        log,
        db,
        signer: Arc::new(TokenSigner::new(
            &key.0,
            &settings.token_issuer,
            &settings.token_audience,
        )),
        revocations,
        idempotency,
        positions: Positions::start(settings.database_url()?.to_owned()),
        seal_public: settings
            .seal_key
            .as_ref()
            .map(|k| chronicle_replay::seal::SealKey::from_seed(&k.0).public()),
        policy: crate::http::hardening::HttpPolicy {
            rate_limit: settings.rate_limit,
            cors_origins: settings.cors_origins.clone(),
            hsts: settings.hsts,
            verify_answer_within: std::time::Duration::from_millis(
                settings.verify_answer_within_ms,
            ),
        },
    }))
}

/// Mints a token through the normal command path, as the system: how the first admin
/// gets a token (`chronicle token issue`, and `chronicle dev` at start-up).
pub async fn issue_token(
    state: &AppState,
    user_id: &str,
    role: Role,
    ttl_seconds: Option<i64>,
) -> Result<String> {
    let ctx = Ctx {
        command_id: Uuid::now_v7(),
        correlation_id: Uuid::now_v7(),
        causation_id: None,
        actor: Actor::system("chronicle-cli"),
        principal: chronicle_commands::Principal::system("chronicle-cli"),
        if_match: None,
        now: chrono::Utc::now(),
    };
    let command = Command::IssueToken {
        user_id: user_id.to_owned(),
        role,
        scopes: vec![],
        ttl_seconds,
    };
    match state.handler.execute(&ctx, &command).await {
        Ok(Answer::Done(Executed {
            issued: Some((user, issued)),
            ..
        })) => state
            .signer
            .mint(&user, &issued)
            .map_err(|e| anyhow::anyhow!(e.detail)),
        Ok(_) => anyhow::bail!("the token was not issued"),
        Err(e) => anyhow::bail!("{e}"),
    }
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

/// Serves the routes of `role` on `listener` until `shutdown` resolves; requests in
/// flight finish.
pub async fn serve(
    state: AppState,
    role: crate::http::ServeRole,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    // Live subscriptions never end by themselves: they are ended when the server stops,
    // or the graceful shutdown would wait on them for ever.
    let hub = state.live.clone();
    let shutdown = async move {
        shutdown.await;
        hub.close();
    };
    let app = crate::http::app(state, role);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
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
