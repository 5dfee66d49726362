//! The Postgres connection pool, from a `postgres://` URL.

use std::str::FromStr;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("DATABASE_URL is not a valid Postgres URL: {0}")]
    BadUrl(String),
    #[error("cannot build the Postgres pool: {0}")]
    Pool(String),
}

/// A pool of at most `max_size` connections to `url`. Connects lazily.
pub fn pool(url: &str, max_size: usize) -> Result<Pool, DbError> {
    let mut cfg =
        tokio_postgres::Config::from_str(url).map_err(|e| DbError::BadUrl(e.to_string()))?;
    if cfg.get_application_name().is_none() {
        cfg.application_name("chronicle");
    }
    cfg.connect_timeout(std::time::Duration::from_secs(5));
    let manager = Manager::from_config(
        cfg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max_size)
        .wait_timeout(Some(std::time::Duration::from_secs(5)))
        .create_timeout(Some(std::time::Duration::from_secs(5)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| DbError::Pool(e.to_string()))
}
