//! `Idempotency-Key`: the same key on the same request (method, path and body) within 24 h
//! returns the first answer and appends nothing; the same key on anything else — another
//! body, or another target — is `409 IDEMPOTENCY_KEY_REUSED`. A key belongs to its caller.
//!
//! Records live in a JetStream key-value bucket whose entries expire after 24 h, so the
//! write side does not depend on Postgres. A request claims its key before it runs (an
//! atomic create), and runs under a command id derived from the caller and the key, so
//! that even two racing requests with the same key append once (the log de-duplicates by
//! command id). Records hold no secret: an issued token is kept as its claims and signed
//! again on a replay.

use std::time::Duration;

use async_nats::jetstream::kv;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::{ApiError, Code};

pub const KEY_TTL: Duration = Duration::from_secs(24 * 3600);
/// A claim older than this whose owner never answered is taken over.
const STALE_CLAIM: chrono::TimeDelta = chrono::TimeDelta::seconds(30);
const MAX_KEY_LEN: usize = 255;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredAnswer {
    pub status: u16,
    pub etag: Option<String>,
    /// The body as sent, without any token.
    pub body: Box<serde_json::value::RawValue>,
    /// The claims of a token the command issued: the token is signed from them when the
    /// answer is sent, so that no bearer credential is ever stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<crate::auth::Claims>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    /// SHA-256 of the method, the path and the body the key was first used with.
    fingerprint: String,
    claimed_at: DateTime<Utc>,
    answer: Option<StoredAnswer>,
}

#[derive(Clone)]
pub struct Idempotency {
    store: kv::Store,
}

/// What to do with a request that carries a key.
pub enum Claim {
    /// Run it (under [`Idempotency::command_id`]), then [`Idempotency::finish`].
    Run { kv_key: String },
    /// It ran before: answer this.
    Replay(StoredAnswer),
}

fn scope(caller: &str, key: &str) -> String {
    format!("{caller}\n{key}")
}

fn fingerprint(method: &str, path: &str, body: &[u8]) -> String {
    let mut d = Sha256::new();
    d.update(method.as_bytes());
    d.update(b"\n");
    d.update(path.as_bytes());
    d.update(b"\n");
    d.update(body);
    hex::encode(d.finalize())
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "idempotency store unavailable");
    ApiError::new(
        Code::LogUnavailable,
        "the event log cannot be reached; retry shortly",
    )
}

impl Idempotency {
    pub async fn open(
        js: &async_nats::jetstream::Context,
        stream_name: &str,
        replicas: usize,
    ) -> Result<Idempotency, String> {
        let bucket = format!("{stream_name}_IDEMPOTENCY");
        let store = chronicle_events::jetstream::key_value_bucket(
            js,
            kv::Config {
                bucket,
                description: "Chronicle Idempotency-Key records (24 h)".into(),
                history: 1,
                max_age: KEY_TTL,
                storage: async_nats::jetstream::stream::StorageType::File,
                num_replicas: replicas,
                ..Default::default()
            },
            "idempotency",
        )
        .await?;
        Ok(Idempotency { store })
    }

    /// Validates a key header's value.
    pub fn check_key(key: &str) -> Result<(), ApiError> {
        if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiError::new(
                Code::MalformedRequest,
                format!("Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"),
            )
            .with_field("Idempotency-Key", "invalid"));
        }
        Ok(())
    }

    /// The command id a request with `key` runs under: the same for every use of the key
    /// by this caller, so that the log appends it once.
    pub fn command_id(caller: &str, key: &str) -> Uuid {
        Uuid::new_v5(&Uuid::NAMESPACE_OID, scope(caller, key).as_bytes())
    }

    /// Claims `key` for this caller and request, or finds its earlier answer.
    pub async fn claim(
        &self,
        caller: &str,
        key: &str,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<Claim, ApiError> {
        let kv_key = hex::encode(Sha256::digest(scope(caller, key).as_bytes()));
        let fingerprint = fingerprint(method, path, body);
        let claim = Record {
            fingerprint: fingerprint.clone(),
            claimed_at: Utc::now(),
            answer: None,
        };
        let encoded = serde_json::to_vec(&claim).unwrap_or_default();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match self.store.create(&kv_key, encoded.clone().into()).await {
                Ok(_) => return Ok(Claim::Run { kv_key }),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(e) => return Err(unavailable(e)),
            }
            let Some(entry) = self.store.entry(&kv_key).await.map_err(unavailable)? else {
                continue; // Expired or deleted between the two calls: claim again.
            };
            let Ok(record) = serde_json::from_slice::<Record>(&entry.value) else {
                self.store.delete(&kv_key).await.map_err(unavailable)?;
                continue;
            };
            if record.fingerprint != fingerprint {
                return Err(ApiError::new(
                    Code::IdempotencyKeyReused,
                    "this Idempotency-Key was used for another request (another target or body)",
                ));
            }
            if let Some(answer) = record.answer {
                return Ok(Claim::Replay(answer));
            }
            if Utc::now() - record.claimed_at > STALE_CLAIM {
                // Its owner died before answering: take the claim over. The command id is
                // the same, so what it had appended is not appended twice.
                if self
                    .store
                    .update(&kv_key, encoded.clone().into(), entry.revision)
                    .await
                    .is_ok()
                {
                    return Ok(Claim::Run { kv_key });
                }
                continue;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(ApiError::new(
                    Code::IdempotencyKeyReused,
                    "a request with this Idempotency-Key is still in progress",
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Records the answer of a claimed request, or releases the key when there is none.
    pub async fn finish(&self, kv_key: &str, answer: Option<StoredAnswer>) {
        let result = match answer {
            Some(a) => {
                let Ok(Some(entry)) = self.store.entry(kv_key).await else {
                    tracing::warn!("the idempotency claim vanished before its answer");
                    return;
                };
                let Ok(claimed) = serde_json::from_slice::<Record>(&entry.value) else {
                    return;
                };
                let record = Record {
                    fingerprint: claimed.fingerprint,
                    claimed_at: Utc::now(),
                    answer: Some(a),
                };
                self.store
                    .put(
                        kv_key,
                        serde_json::to_vec(&record).unwrap_or_default().into(),
                    )
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            _ => self.store.delete(kv_key).await.map_err(|e| e.to_string()),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot record an idempotent answer");
        }
    }
}
