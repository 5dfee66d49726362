//! What every request handler shares: the log, the read-store pool.

use chronicle_events::JetStreamLog;
use deadpool_postgres::Pool;

#[derive(Clone)]
pub struct AppState {
    pub log: JetStreamLog,
    pub db: Pool,
}
