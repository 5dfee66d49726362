//! What Chronicle's tests share, in one place: the servers `scripts/test` starts, a log and
//! a database of a test's own (so that tests run in parallel without seeing each other),
//! the test keys, ids, an in-memory [`EventLog`](chronicle_events::EventLog) for tests that
//! need no server ([`memory::MemoryLog`]), and the contract both logs are held to
//! ([`contract`]), so that the in-memory one stays honest.

pub mod contract;
pub mod memory;

use chronicle_events::{JetStreamLog, Keyring, LogConfig};
use uuid::Uuid;

pub use memory::MemoryLog;

/// The test keys, as hex (what the CLI and the environment take).
pub const SIGNING_KEY: &str = "6b1f0e3c5d7a9b2c4e6f8a0b1c3d5e7f9a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d";
pub const SEAL_KEY: &str = "1f2e3d4c5b6a79880f1e2d3c4b5a69780e1d2c3b4a5968770d1c2b3a49586766";
pub const EVENT_KEY: &str = "3c915e07a26df418b942ce751a83e05b962fd14c68b30efa279d54c6118ae370";

/// 32 bytes from 64 hex characters (a test constant).
pub fn key(hex_text: &str) -> [u8; 32] {
    hex::decode(hex_text)
        .expect("a hex constant")
        .try_into()
        .expect("32 bytes")
}

/// The event keys of the tests.
pub fn keyring() -> Keyring {
    Keyring::new(&key(EVENT_KEY), &[])
}

/// A fresh id, for aggregates no other test names.
pub fn id() -> String {
    Uuid::new_v4().simple().to_string()
}

pub fn nats_url() -> String {
    std::env::var("NATS_URL")
        .expect("NATS_URL is not set: run the suite with scripts/test, which starts nats-server")
}

pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .expect("DATABASE_URL is not set: run the suite with scripts/test, which starts Postgres")
}

/// A log configuration with a stream and subject prefix of its own.
pub fn isolated_config() -> LogConfig {
    let tag = id();
    LogConfig {
        stream_name: format!("T{tag}"),
        subject_prefix: format!("t{}.ev", &tag[..12]),
        ..LogConfig::new(keyring())
    }
}

/// A JetStream log of its own on the test server.
pub async fn isolated_log() -> JetStreamLog {
    isolated_log_with(|_| {}).await
}

/// A JetStream log of its own, its configuration changed by `edit` first.
pub async fn isolated_log_with(edit: impl FnOnce(&mut LogConfig)) -> JetStreamLog {
    let mut cfg = isolated_config();
    edit(&mut cfg);
    JetStreamLog::connect(&nats_url(), cfg)
        .await
        .expect("connect to NATS and create the stream")
}

/// A database of its own on the test server (not migrated); its URL.
pub async fn fresh_database() -> String {
    let url = database_url();
    let (admin, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test Postgres");
    tokio::spawn(conn);
    let name = format!("t_{}", id());
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create a database");
    let (base, _) = url.rsplit_once('/').expect("DATABASE_URL names a database");
    format!("{base}/{name}")
}

/// A client on the database at `url` (its connection runs on the test's runtime).
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test database");
    tokio::spawn(conn);
    client
}
