//! What every request handler shares: the log, the command handler, the read-store pool,
//! the token signer, the revoked-token set, the idempotency records and the live hub.

use std::sync::Arc;

use chronicle_commands::CommandHandler;
use chronicle_events::JetStreamLog;
use deadpool_postgres::Pool;

use crate::auth::{Revocations, TokenSigner};
use crate::idempotency::Idempotency;
use crate::positions::Positions;

/// Cloned for every request (axum's `State`, each middleware): one `Arc`, so a clone is a
/// reference count, not a copy of the NATS client, the key ring and the stream configs
/// (which were ~8 % of the API's CPU under load when the fields were cloned one by one).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] shares.
pub struct Shared {
    pub log: JetStreamLog,
    pub handler: Arc<CommandHandler>,
    pub db: Pool,
    pub signer: Arc<TokenSigner>,
    pub revocations: Arc<Revocations>,
    pub idempotency: Idempotency,
    pub positions: Positions,
    /// The public half of `CHRONICLE_SEAL_KEY`, when configured.
    pub seal_public: Option<chronicle_replay::seal::PublicSealKey>,
    pub policy: crate::http::hardening::HttpPolicy,
    /// Live subscriptions: the one log reader of this process and its subscribers.
    pub live: crate::live::Hub,
    /// The single-command routes, for the commands of a batch (built on first use).
    pub batch_router: std::sync::OnceLock<axum::Router>,
}
