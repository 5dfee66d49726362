//! Aggregate snapshots in JetStream key-value (`<stream>_SNAPSHOTS`), for the command
//! handler (`chronicle_commands::handler::snapshot` decides when to take and use them). Each value is tagged with the event
//! key over its key and bytes: anyone who can write to the bucket can delete a snapshot
//! (the stream is then read whole), but not put one in that Chronicle would use.

use futures::future::BoxFuture;

use crate::Keyring;

/// Where snapshots are kept. `put` must not wait (a store writes in the background);
/// `get` answers `None` for anything missing, unreadable or not its own.
pub trait SnapshotStore: Send + Sync {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<Vec<u8>>>;
    fn put(&self, key: String, value: Vec<u8>);
}

/// The tag's context: what the data is, and under which key it was written.
pub fn context(key: &str) -> String {
    format!("chronicle.snapshot.aggregate {key}")
}

pub struct KvSnapshots {
    store: async_nats::jetstream::kv::Store,
    keyring: Keyring,
}

impl KvSnapshots {
    pub async fn open(
        js: &async_nats::jetstream::Context,
        stream_name: &str,
        replicas: usize,
        keyring: Keyring,
    ) -> Result<KvSnapshots, String> {
        let bucket = format!("{stream_name}_SNAPSHOTS");
        let store = crate::jetstream::key_value_bucket(
            js,
            async_nats::jetstream::kv::Config {
                bucket,
                description: "Chronicle aggregate snapshots (derived from the log)".into(),
                history: 1,
                storage: async_nats::jetstream::stream::StorageType::File,
                num_replicas: replicas,
                ..Default::default()
            },
            "snapshot",
        )
        .await?;
        Ok(KvSnapshots { store, keyring })
    }
}

impl SnapshotStore for KvSnapshots {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            let value = self.store.get(key).await.ok()??;
            let split = value.iter().position(|b| *b == b'\n')?;
            let (tag, data) = (&value[..split], &value[split + 1..]);
            let tag = std::str::from_utf8(tag).ok()?;
            if !self.keyring.verify_tag(&context(key), data, tag) {
                tracing::warn!(key, "a snapshot no event key tagged; ignored");
                metrics::counter!("chronicle_foreign_messages_total", "reader" => "snapshots")
                    .increment(1);
                return None;
            }
            Some(data.to_vec())
        })
    }

    fn put(&self, key: String, value: Vec<u8>) {
        let tag = self.keyring.tag(&context(&key), &value);
        let mut stored = Vec::with_capacity(tag.len() + 1 + value.len());
        stored.extend_from_slice(tag.as_bytes());
        stored.push(b'\n');
        stored.extend_from_slice(&value);
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.put(&key, stored.into()).await {
                tracing::warn!(key, error = %e, "cannot write a snapshot");
            }
        });
    }
}
