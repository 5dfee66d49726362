//! Shared set-up for tests against a real nats-server: each test gets its own stream and
//! subject prefix on the server `scripts/test` started (`NATS_URL`), so tests run in
//! parallel without seeing each other's events.

#![allow(dead_code)]

use std::time::Duration;

use chronicle_events::{JetStreamLog, Keyring, LogConfig};
use uuid::Uuid;

pub fn nats_url() -> String {
    std::env::var("NATS_URL")
        .expect("NATS_URL is not set: run the suite with scripts/test, which starts nats-server")
}

/// The event key of these tests.
pub const TEST_EVENT_KEY: [u8; 32] = [
    0x3c, 0x91, 0x5e, 0x07, 0xa2, 0x6d, 0xf4, 0x18, 0xb9, 0x42, 0xce, 0x75, 0x1a, 0x83, 0xe0, 0x5b,
    0x96, 0x2f, 0xd1, 0x4c, 0x68, 0xb3, 0x0e, 0xfa, 0x27, 0x9d, 0x54, 0xc6, 0x11, 0x8a, 0xe3, 0x70,
];

pub fn test_keyring() -> Keyring {
    Keyring::new(&TEST_EVENT_KEY, &[])
}

pub fn isolated_config() -> LogConfig {
    let tag = Uuid::new_v4().simple().to_string();
    LogConfig {
        stream_name: format!("T{tag}"),
        subject_prefix: format!("t{tag}.ev"),
        ..LogConfig::new(test_keyring())
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
