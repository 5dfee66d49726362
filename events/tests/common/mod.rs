//! Shared set-up for tests against a real nats-server: each test gets its own stream and
//! subject prefix on the server `scripts/test` started (`NATS_URL`), so tests run in
//! parallel without seeing each other's events.

#![allow(dead_code)]

use std::time::Duration;

use chronicle_events::{JetStreamLog, LogConfig};
use uuid::Uuid;

pub fn nats_url() -> String {
    std::env::var("NATS_URL")
        .expect("NATS_URL is not set: run the suite with scripts/test, which starts nats-server")
}

pub fn isolated_config() -> LogConfig {
    let tag = Uuid::new_v4().simple().to_string();
    LogConfig {
        stream_name: format!("T{tag}"),
        subject_prefix: format!("t{tag}.ev"),
        ..LogConfig::default()
    }
}

pub async fn isolated_log() -> JetStreamLog {
    JetStreamLog::connect(&nats_url(), isolated_config())
        .await
        .expect("connect to NATS and create the stream")
}

pub async fn isolated_log_with_window(window: Duration) -> JetStreamLog {
    let cfg = LogConfig {
        duplicate_window: window,
        ..isolated_config()
    };
    JetStreamLog::connect(&nats_url(), cfg)
        .await
        .expect("connect to NATS and create the stream")
}
