//! Applies the numbered SQL files of `migrations/` (embedded at build time), each in its
//! own transaction, recording a checksum so that an edited applied migration is refused.

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

/// One embedded migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

impl Migration {
    pub fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.sql.as_bytes()))
    }
}

/// Every migration in `migrations/`, in order.
pub const MIGRATIONS: &[Migration] = include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// Serializes concurrent migrators (any constant; this one spells "chron").
const LOCK_KEY: i64 = 0x0063_6872_6f6e;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(
        "migration {version} ({name}) was changed after it was applied; add a new migration instead"
    )]
    Edited { version: i64, name: String },
    #[error(
        "the database has migration {0}, which this build does not know: is it older than the database?"
    )]
    Unknown(i64),
    #[error("migration {version} ({name}) failed: {source}")]
    Failed {
        version: i64,
        name: String,
        source: tokio_postgres::Error,
    },
    #[error("database error while migrating: {0}")]
    Db(#[from] tokio_postgres::Error),
}

/// Applies what is missing and returns the versions applied now.
pub async fn run(client: &mut Client) -> Result<Vec<i64>, MigrateError> {
    run_these(client, MIGRATIONS).await
}

pub async fn run_these(
    client: &mut Client,
    migrations: &[Migration],
) -> Result<Vec<i64>, MigrateError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS public.chronicle_migrations (
                version    bigint PRIMARY KEY,
                name       text NOT NULL,
                checksum   text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await?;
    let result = apply(client, migrations).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await?;
    result
}

async fn apply(client: &mut Client, migrations: &[Migration]) -> Result<Vec<i64>, MigrateError> {
    let rows = client
        .query(
            "SELECT version, name, checksum FROM public.chronicle_migrations ORDER BY version",
            &[],
        )
        .await?;
    for row in &rows {
        let version: i64 = row.get(0);
        let checksum: String = row.get(2);
        match migrations.iter().find(|m| m.version == version) {
            None => return Err(MigrateError::Unknown(version)),
            Some(m) if m.checksum() != checksum => {
                return Err(MigrateError::Edited {
                    version,
                    name: row.get(1),
                });
            }
            Some(_) => {}
        }
    }
    let mut applied = Vec::new();
    for m in migrations {
        if rows.iter().any(|r| r.get::<_, i64>(0) == m.version) {
            continue;
        }
        let tx = client.transaction().await?;
        tx.batch_execute(m.sql)
            .await
            .map_err(|source| MigrateError::Failed {
                version: m.version,
                name: m.name.to_owned(),
                source,
            })?;
        tx.execute(
            "INSERT INTO public.chronicle_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &m.checksum()],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version = m.version, name = m.name, "migration applied");
        applied.push(m.version);
    }
    Ok(applied)
}
