//! The event log on NATS JetStream.
//!
//! One stream (`CHRONICLE` by default) holds every event under `chronicle.ev.<domain>.<id>`;
//! the stream sequence is an event's position, the count of messages on its subject its
//! version. What this relies on, and why it is done this way (see `docs/JETSTREAM.md`):
//!
//! - **Concurrency**: the first message of each stream written carries
//!   `Nats-Expected-Last-Subject-Sequence` (the position of the stream's last event, 0 for
//!   none). A mismatch is error 10071 (10164 inside batches and on clusters).
//! - **Idempotency**: every message carries `Nats-Msg-Id: <command id>:<n>`. Within the
//!   stream's duplicate window a repeat is answered as a duplicate; after it, the
//!   expected-sequence check fails, and the append looks at what follows the head it
//!   expected: if that is its own command, the first append had landed and is returned.
//! - **Atomicity**: a command with several events is one atomic batch (nats-server 2.12+),
//!   built on the core client because async-nats has no API for it: all messages but the
//!   last are plain publishes, the last carries `Nats-Batch-Commit: 1` and is a request
//!   whose answer is the batch's ack. The server stores the batch whole or not at all.
//! - **Reads** of one stream use batched direct gets (`next_by_subj`), which cost time in
//!   proportion to the stream, not the log. Following the log live uses an ordered
//!   consumer, which keeps no state on the server.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use async_nats::{HeaderMap, Message, ServerAddr};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, SubsecRound, Utc};
use futures::StreamExt;
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::{AUTH_HEADER, Keyring, PREV_HEADER, PREV_IN_BATCH};
use crate::chain::{EnvelopeParts, encode_envelope};
use crate::envelope::{Envelope, RecordedEvent};
use crate::log::{
    AppendOutcome, AppendRequest, AppendedEvent, EventLog, Expected, ForeignMessage, ForeignReason,
    LogError, LogStream, Stored, StreamHead, StreamRead,
};
use crate::stream_id::StreamId;
use crate::upcast::current_schema;

/// Header carrying an event's version in its stream, so a stream's head can be read from
/// its last message alone.
pub const VERSION_HEADER: &str = "Chronicle-Version";
const MSG_ID: &str = "Nats-Msg-Id";
const EXPECTED_LAST_SUBJECT_SEQ: &str = "Nats-Expected-Last-Subject-Sequence";
const BATCH_ID: &str = "Nats-Batch-Id";
const BATCH_SEQ: &str = "Nats-Batch-Sequence";
const BATCH_COMMIT: &str = "Nats-Batch-Commit";

/// JetStream error codes the log tells apart.
const ERR_WRONG_LAST_SEQUENCE: u32 = 10071;
const ERR_WRONG_LAST_SEQUENCE_IN_BATCH: u32 = 10164;
/// A batch re-sent after it was committed: its message ids are in the duplicate window.
const ERR_BATCH_DUPLICATE_MSG_ID: u32 = 10201;
/// The server holds too many open atomic batches: nothing was stored, try again shortly.
const ERR_BATCH_TOO_MANY_INFLIGHT: u32 = 10210;
/// JetStream is temporarily unavailable, or this node is not the stream's leader.
const ERR_CLUSTER_NOT_AVAILABLE: u32 = 10008;
const ERR_NOT_LEADER: u32 = 10009;
/// Atomic batches one process keeps open at once, below the server's own limit (so that
/// several processes rarely meet it; when they do, the batch is sent again).
const MAX_BATCHES_IN_FLIGHT: usize = 16;

/// The most events one command may append: the server's atomic batch limit.
pub const MAX_EVENTS_PER_APPEND: usize = 1000;
/// How many times an append re-reads moved `Expected::Any` heads before giving up.
const MAX_CONFLICT_RETRIES: usize = 32;
/// How long a live follow may be quiet before it checks that nothing is waiting for it.
const STALL_CHECK: Duration = Duration::from_secs(2);
/// How long a live follow's pull requests last (its idle heartbeat is half of it).
const FOLLOW_EXPIRES: Duration = Duration::from_secs(2);
/// How many times an append whose outcome is unknown is sent again.
const MAX_UNAVAILABLE_RETRIES: usize = 3;
/// Messages per direct-get batch request.
const READ_BATCH: usize = 512;
/// At most this many events left to read after a head: read one direct get each.
const SHORT_READ: u64 = 32;

/// Where and how the log lives.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// The event keys (`CHRONICLE_EVENT_KEY`): appends are authenticated with the current
    /// one; reads step past anything no key authenticates.
    pub keyring: Keyring,
    /// The JetStream stream's name (`CHRONICLE_STREAM`).
    pub stream_name: String,
    /// Subjects are `<subject_prefix>.<domain>.<id>`.
    pub subject_prefix: String,
    /// Replicas of the stream (`CHRONICLE_REPLICAS`): 1 on one node, 3 on a cluster.
    pub replicas: usize,
    /// JetStream's de-duplication window for message ids.
    pub duplicate_window: Duration,
    /// How long to wait for any one answer from NATS.
    pub request_timeout: Duration,
    /// A CA certificate (PEM) to trust for NATS's TLS; set, the connection requires TLS.
    pub ca_file: Option<std::path::PathBuf>,
}

impl LogConfig {
    /// The defaults (stream `CHRONICLE`, subjects `chronicle.ev.>`, one replica) with
    /// these event keys.
    pub fn new(keyring: Keyring) -> Self {
        LogConfig {
            keyring,
            stream_name: "CHRONICLE".into(),
            subject_prefix: "chronicle.ev".into(),
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
            request_timeout: Duration::from_secs(5),
            ca_file: None,
        }
    }

    /// The stream configuration Chronicle creates.
    pub fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.stream_name.clone(),
            description: Some("Chronicle event log: append-only, never edited".into()),
            subjects: vec![format!("{}.>", self.subject_prefix)],
            storage: stream::StorageType::File,
            num_replicas: self.replicas,
            retention: stream::RetentionPolicy::Limits,
            max_messages: -1,
            max_bytes: -1,
            max_messages_per_subject: -1,
            max_age: Duration::ZERO,
            discard: stream::DiscardPolicy::New,
            duplicate_window: self.duplicate_window,
            deny_delete: true,
            deny_purge: true,
            allow_rollup: false,
            allow_direct: true,
            allow_atomic_publish: true,
            ..Default::default()
        }
    }

    /// What in an existing stream's configuration weakens Chronicle's guarantees.
    pub fn weaknesses(&self, c: &stream::Config) -> Vec<String> {
        let mut w = Vec::new();
        let wanted_subject = format!("{}.>", self.subject_prefix);
        if !c.subjects.contains(&wanted_subject) {
            w.push(format!(
                "subjects {:?} do not include {wanted_subject}",
                c.subjects
            ));
        }
        if c.storage != stream::StorageType::File {
            w.push("storage is not file".into());
        }
        if !c.deny_delete {
            w.push("deny_delete is off: events could be deleted".into());
        }
        if !c.deny_purge {
            w.push("deny_purge is off: the log could be purged".into());
        }
        if c.allow_rollup {
            w.push("rollups are allowed: a rollup deletes history".into());
        }
        if c.max_messages > 0 || c.max_bytes > 0 || c.max_messages_per_subject > 0 {
            w.push("message or byte limits are set: limits delete history".into());
        }
        if !c.max_age.is_zero() {
            w.push("max_age is set: old events would expire".into());
        }
        if c.allow_message_ttl {
            w.push("per-message TTLs are allowed: events could expire".into());
        }
        if c.retention != stream::RetentionPolicy::Limits {
            w.push("retention is not limits: consumed events could be removed".into());
        }
        if c.sealed {
            w.push("the stream is sealed: nothing can be appended".into());
        }
        if c.mirror.is_some() {
            w.push("the stream is a mirror".into());
        }
        if c.subject_transform.is_some() {
            w.push("a subject transform is set".into());
        }
        if !c.allow_direct {
            w.push("allow_direct is off: streams cannot be loaded efficiently".into());
        }
        if !c.allow_atomic_publish {
            w.push("allow_atomic_publish is off: multi-event commands cannot be atomic".into());
        }
        if c.duplicate_window.is_zero() {
            w.push("the duplicate window is zero: retried appends could double".into());
        }
        if c.num_replicas < self.replicas {
            w.push(format!(
                "{} replica(s), fewer than the {} configured",
                c.num_replicas, self.replicas
            ));
        }
        w
    }
}

/// The log on a JetStream stream. Cheap to clone: clones share one connection.
#[derive(Clone)]
pub struct JetStreamLog {
    client: async_nats::Client,
    js: jetstream::Context,
    cfg: Arc<LogConfig>,
    batches: Arc<tokio::sync::Semaphore>,
    /// The server's message size limit, once known (0 before): `server_info()` copies every
    /// field of the server's INFO, which is too much to do on every append.
    max_payload: Arc<std::sync::atomic::AtomicUsize>,
}

/// A message of the log as stored, before it is decoded.
#[derive(Debug, Clone)]
pub struct RawEvent {
    pub position: u64,
    pub subject: String,
    pub version_header: Option<u64>,
    pub msg_id: Option<String>,
    /// The `Chronicle-Auth` header.
    pub auth: Option<String>,
    /// The `Chronicle-Prev` header.
    pub prev: Option<String>,
    pub payload: Bytes,
}

impl RawEvent {
    /// A message a consumer delivered, at `position`.
    pub fn of_message(m: &async_nats::jetstream::Message, position: u64) -> RawEvent {
        let headers = m.headers.as_ref();
        RawEvent {
            position,
            subject: m.subject.to_string(),
            version_header: headers.and_then(|h| header_u64(h, VERSION_HEADER)),
            msg_id: headers
                .and_then(|h| h.get(MSG_ID))
                .map(|v| v.as_str().to_owned()),
            auth: headers
                .and_then(|h| h.get(AUTH_HEADER))
                .map(|v| v.as_str().to_owned()),
            prev: headers
                .and_then(|h| h.get(PREV_HEADER))
                .map(|v| v.as_str().to_owned()),
            payload: m.payload.clone(),
        }
    }
}

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn credentials_come_from_the_urls_and_must_agree() {
        let addrs = parse_server_addrs("nats://u%40x:p%3Aw@a:1,tls://u%40x:p%3Aw@b:2").unwrap();
        assert_eq!(
            credentials(&addrs).unwrap(),
            Some(("u@x".to_owned(), "p:w".to_owned()))
        );
        let none = parse_server_addrs("nats://a:1").unwrap();
        assert_eq!(credentials(&none).unwrap(), None);
        let mixed = parse_server_addrs("nats://u:p@a:1,nats://a:2").unwrap();
        assert!(credentials(&mixed).is_err());
    }
}

#[derive(Debug, Deserialize)]
struct ApiError {
    /// HTTP-like: 503 means "try again", whatever the specific code.
    #[serde(default)]
    code: u16,
    #[serde(default)]
    err_code: u32,
    #[serde(default)]
    description: String,
}

#[derive(Debug, Deserialize)]
struct PubAck {
    #[serde(default)]
    error: Option<ApiError>,
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    duplicate: bool,
    #[serde(default)]
    count: Option<u64>,
}

/// Why one attempt at an append did not land.
enum AttemptError {
    WrongLastSequence,
    DuplicateBatch,
    /// The server's limit of open batches: back off and send again.
    Busy,
    Unavailable(String),
    Rejected(String),
}

/// One message of an append, ready to send.
struct OutMessage {
    subject: String,
    headers: HeaderMap,
    payload: Bytes,
    appended: AppendedEvent,
}

fn unavailable(e: impl std::fmt::Display) -> LogError {
    LogError::Unavailable(e.to_string())
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name).and_then(|v| v.as_str().parse().ok())
}

/// A key-value bucket beside the log (idempotency records, aggregate snapshots): opened when
/// it exists, otherwise created with `config`; `what` names it in the error.
pub async fn key_value_bucket(
    js: &jetstream::Context,
    config: jetstream::kv::Config,
    what: &str,
) -> Result<jetstream::kv::Store, String> {
    if let Ok(store) = js.get_key_value(&config.bucket).await {
        return Ok(store);
    }
    let bucket = config.bucket.clone();
    js.create_key_value(config)
        .await
        .map_err(|e| format!("cannot create the {what} bucket {bucket}: {e}"))
}

/// Splits `nats://a:4222,nats://b:4222` into server addresses.
pub fn parse_server_addrs(urls: &str) -> Result<Vec<ServerAddr>, String> {
    let addrs: Result<Vec<ServerAddr>, String> = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| u.parse::<ServerAddr>().map_err(|e| format!("`{u}`: {e}")))
        .collect();
    let addrs = addrs?;
    if addrs.is_empty() {
        return Err("no NATS URL given".into());
    }
    Ok(addrs)
}

/// The user and password written in the URLs (`nats://user:password@host`), the same in
/// every one of them; percent-escapes decoded.
fn credentials(addrs: &[ServerAddr]) -> Result<Option<(String, String)>, LogError> {
    let of = |a: &ServerAddr| {
        a.username().map(|u| {
            let decode = |s: &str| {
                percent_decode(s)
                    .ok_or_else(|| LogError::Misconfigured("NATS_URL: a bad %-escape".into()))
            };
            Ok::<_, LogError>((decode(u)?, decode(a.password().unwrap_or(""))?))
        })
    };
    let first = of(&addrs[0]).transpose()?;
    for a in &addrs[1..] {
        if of(a).transpose()? != first {
            return Err(LogError::Misconfigured(
                "NATS_URL: every URL must carry the same user and password".into(),
            ));
        }
    }
    Ok(first)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl JetStreamLog {
    /// The server's message size limit (from its INFO, read once it is known).
    fn max_payload(&self) -> usize {
        use std::sync::atomic::Ordering;
        match self.max_payload.load(Ordering::Relaxed) {
            0 => {
                let known = self.client.server_info().max_payload;
                self.max_payload.store(known, Ordering::Relaxed);
                known
            }
            known => known,
        }
    }

    /// Connects to NATS (one URL or several, comma-separated) and creates or checks the
    /// stream. Refuses a stream whose settings weaken the log's guarantees.
    pub async fn connect(urls: &str, cfg: LogConfig) -> Result<JetStreamLog, LogError> {
        let client = Self::connect_client(urls, &cfg).await?;
        let log = JetStreamLog::from_client(client, cfg);
        log.ensure_stream().await?;
        Ok(log)
    }

    /// A connection to NATS as [`JetStreamLog::connect`] makes it (TLS, credentials,
    /// time-outs), without touching the stream.
    pub async fn connect_client(
        urls: &str,
        cfg: &LogConfig,
    ) -> Result<async_nats::Client, LogError> {
        let addrs = parse_server_addrs(urls).map_err(LogError::Misconfigured)?;
        let mut options = async_nats::ConnectOptions::new()
            .name("chronicle")
            .connection_timeout(cfg.request_timeout)
            .request_timeout(Some(cfg.request_timeout))
            .max_reconnects(None);
        if let Some(ca) = &cfg.ca_file {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        // async-nats takes credentials from its options only, never from the URL.
        if let Some((user, password)) = credentials(&addrs)? {
            options = options.user_and_password(user, password);
        }
        options.connect(addrs).await.map_err(unavailable)
    }

    /// Wraps an existing connection without touching the stream.
    pub fn from_client(client: async_nats::Client, cfg: LogConfig) -> JetStreamLog {
        let js = jetstream::ContextBuilder::new()
            .timeout(cfg.request_timeout)
            .build(client.clone());
        JetStreamLog {
            client,
            js,
            cfg: Arc::new(cfg),
            batches: Arc::new(tokio::sync::Semaphore::new(MAX_BATCHES_IN_FLIGHT)),
            max_payload: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        }
    }

    pub fn config(&self) -> &LogConfig {
        &self.cfg
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// Creates the stream, or checks that the existing one keeps every guarantee.
    pub async fn ensure_stream(&self) -> Result<(), LogError> {
        match self.js.get_stream(&self.cfg.stream_name).await {
            Ok(mut s) => {
                let info = s.info().await.map_err(unavailable)?;
                let weak = self.cfg.weaknesses(&info.config);
                if weak.is_empty() {
                    Ok(())
                } else {
                    Err(LogError::Misconfigured(format!(
                        "stream {} {}",
                        self.cfg.stream_name,
                        weak.join("; ")
                    )))
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    jetstream::context::GetStreamErrorKind::JetStream(ref api)
                        if api.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                ) =>
            {
                // A concurrent creator with the same configuration is fine: creating an
                // identical stream again succeeds.
                self.js
                    .create_stream(self.cfg.stream_config())
                    .await
                    .map_err(|e| LogError::Misconfigured(format!("cannot create stream: {e}")))?;
                Ok(())
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Whether NATS is connected and the stream answers.
    pub async fn ping(&self) -> Result<(), LogError> {
        self.last_position().await.map(|_| ())
    }

    /// Fails fast when the connection is down (after a short grace for a reconnect in
    /// progress), rather than letting each request wait out its time-out.
    async fn ensure_connected(&self) -> Result<(), LogError> {
        use async_nats::connection::State;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        while self.client.connection_state() != State::Connected {
            if tokio::time::Instant::now() >= deadline {
                return Err(unavailable("not connected to NATS"));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Ok(())
    }

    fn subject_of(&self, stream: &StreamId) -> String {
        stream.subject(&self.cfg.subject_prefix)
    }

    /// `job.*` → `chronicle.ev.job.*`; no filter → everything.
    pub fn subject_filter(&self, filter: Option<&str>) -> String {
        match filter {
            Some(f) if !f.is_empty() && f != ">" => format!("{}.{f}", self.cfg.subject_prefix),
            _ => format!("{}.>", self.cfg.subject_prefix),
        }
    }

    fn direct_get_subject(&self) -> String {
        format!("$JS.API.DIRECT.GET.{}", self.cfg.stream_name)
    }

    fn raw_from_message(&self, msg: Message) -> Result<Option<RawEvent>, LogError> {
        if let Some(status) = msg.status {
            return match status.as_u16() {
                404 | 204 => Ok(None),
                408 | 413 => Err(LogError::Invalid(format!(
                    "direct get refused: {}",
                    msg.description.unwrap_or_default()
                ))),
                503 => Err(unavailable("no responders for direct get")),
                other => Err(unavailable(format!("direct get answered status {other}"))),
            };
        }
        let headers = msg
            .headers
            .ok_or_else(|| unavailable("direct get answer without headers"))?;
        let position = header_u64(&headers, "Nats-Sequence")
            .ok_or_else(|| unavailable("direct get answer without Nats-Sequence"))?;
        let subject = headers
            .get("Nats-Subject")
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        Ok(Some(RawEvent {
            position,
            subject,
            version_header: header_u64(&headers, VERSION_HEADER),
            msg_id: headers.get(MSG_ID).map(|v| v.as_str().to_owned()),
            auth: headers.get(AUTH_HEADER).map(|v| v.as_str().to_owned()),
            prev: headers.get(PREV_HEADER).map(|v| v.as_str().to_owned()),
            payload: msg.payload,
        }))
    }

    /// Up to `batch` stored messages from `from_seq` whose subject matches `filter`, in log
    /// order, and whether more match after them.
    pub async fn read_raw_batch(
        &self,
        from_seq: u64,
        filter: &str,
        batch: usize,
    ) -> Result<(Vec<RawEvent>, bool), LogError> {
        self.ensure_connected().await?;
        let inbox = self.client.new_inbox();
        let mut sub = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(unavailable)?;
        let body = serde_json::json!({
            "seq": from_seq.max(1),
            "batch": batch,
            "next_by_subj": filter,
        });
        self.client
            .publish_with_reply(
                self.direct_get_subject(),
                inbox,
                Bytes::from(body.to_string()),
            )
            .await
            .map_err(unavailable)?;
        let mut out = Vec::new();
        let mut more = false;
        loop {
            let msg = tokio::time::timeout(self.cfg.request_timeout, sub.next())
                .await
                .map_err(|_| unavailable("direct get timed out"))?
                .ok_or_else(|| unavailable("connection closed during direct get"))?;
            let pending = msg
                .headers
                .as_ref()
                .and_then(|h| header_u64(h, "Nats-Num-Pending"));
            match self.raw_from_message(msg)? {
                Some(raw) => {
                    // Nats-Num-Pending counts matching messages after this one.
                    more = pending.unwrap_or(0) > 0;
                    out.push(raw);
                    if out.len() >= batch {
                        break;
                    }
                }
                None => break,
            }
        }
        let _ = sub.unsubscribe().await;
        Ok((out, more))
    }

    /// Every stored message from `from_position` on whose domain is in `filters` (all
    /// when empty), in log order, as stored, then each new one as it lands: an ordered
    /// consumer, the server pushing messages without a request per batch.
    ///
    /// An ordered consumer has one replica: when the cluster node holding it dies, it may
    /// go quiet for good. So after [`STALL_CHECK`] without a message the feed asks the log
    /// whether anything it should have delivered is stored; if so it recreates the
    /// consumer from the next position (nothing is skipped or repeated).
    pub async fn follow_raw(
        &self,
        from_position: u64,
        filters: &[&str],
    ) -> Result<futures::stream::BoxStream<'static, Result<RawEvent, LogError>>, LogError> {
        struct Watched {
            log: JetStreamLog,
            subjects: Vec<String>,
            next: u64,
            feed: Option<futures::stream::BoxStream<'static, Result<RawEvent, LogError>>>,
        }
        let subjects: Vec<String> = if filters.is_empty() {
            vec![self.subject_filter(None)]
        } else {
            filters
                .iter()
                .map(|f| self.subject_filter(Some(f)))
                .collect()
        };
        let first = self.ordered_feed(from_position, &subjects).await?;
        let state = Watched {
            log: self.clone(),
            subjects,
            next: from_position.max(1),
            feed: Some(first),
        };
        Ok(futures::stream::unfold(state, |mut w| async move {
            loop {
                let Some(feed) = w.feed.as_mut() else {
                    // Not the request time-out (5 s): while a cluster settles, a creation
                    // that hangs is better abandoned and tried again.
                    let created = tokio::time::timeout(
                        STALL_CHECK,
                        w.log.ordered_feed(w.next, &w.subjects),
                    )
                    .await
                    .unwrap_or_else(|_| Err(unavailable("creating the feed's consumer timed out")));
                    match created {
                        Ok(feed) => {
                            w.feed = Some(feed);
                            continue;
                        }
                        Err(e) => {
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            return Some((Err(e), w));
                        }
                    }
                };
                match tokio::time::timeout(STALL_CHECK, feed.next()).await {
                    Ok(Some(Ok(raw))) => {
                        w.next = raw.position + 1;
                        return Some((Ok(raw), w));
                    }
                    Ok(Some(Err(e))) => {
                        w.feed = None;
                        return Some((Err(e), w));
                    }
                    Ok(None) => w.feed = None,
                    Err(_) => {
                        // The end first: whatever matches at or before it is stored by
                        // the time we look, so finding nothing lets the next look start
                        // after it.
                        let end = w.log.last_position().await.ok();
                        if !w.log.stored_from(w.next, &w.subjects).await {
                            if let Some(end) = end {
                                w.next = w.next.max(end + 1);
                            }
                        } else {
                            tracing::warn!(
                                next = w.next,
                                "the log feed went quiet with messages waiting; recreating its consumer"
                            );
                            w.feed = None;
                        }
                    }
                }
            }
        })
        .boxed())
    }

    /// The events from `from_position` (or later) matching `filter`, up to the log's end as
    /// of the call, read through one ordered consumer: for long ranges several times the
    /// rate of [`EventLog::read_from`]'s batched direct gets, for the price of creating a
    /// consumer (one direct get decides first whether there is anything to read at all).
    pub async fn read_ordered(
        &self,
        from_position: u64,
        filter: Option<&str>,
    ) -> Result<LogStream, LogError> {
        let end = self.last_position().await?;
        let subject = self.subject_filter(filter);
        let start = from_position.max(1);
        if start > end {
            return Ok(futures::stream::empty().boxed());
        }
        let (first, _) = self.read_raw_batch(start, &subject, 1).await?;
        let Some(first) = first.into_iter().next().filter(|r| r.position <= end) else {
            return Ok(futures::stream::empty().boxed());
        };
        let log = self.clone();
        Ok(self
            .read_messages(first.position, end, vec![subject])
            .await?
            .map(move |m| m.map(|(m, position)| log.stored(&RawEvent::of_message(&m, position))))
            .boxed())
    }

    /// The stored messages `from..=to` over `subjects` (every subject when empty), in
    /// order, each with its position, through one ordered consumer. Ends after `to`, or as
    /// soon as nothing more is pending: the last position at or before `to` may hold no
    /// matching message, or none at all.
    pub async fn read_messages(
        &self,
        from: u64,
        to: u64,
        subjects: Vec<String>,
    ) -> Result<
        futures::stream::BoxStream<'static, Result<(jetstream::Message, u64), LogError>>,
        LogError,
    > {
        if from.max(1) > to {
            return Ok(futures::stream::empty().boxed());
        }
        let messages = self.ordered_messages(from, subjects).await?;
        Ok(
            futures::stream::unfold((messages, false), move |(mut messages, done)| async move {
                if done {
                    return None;
                }
                let m = match messages.next().await? {
                    Ok(m) => m,
                    Err(e) => return Some((Err(unavailable(e)), (messages, true))),
                };
                let info = match m.info() {
                    Ok(info) => info,
                    Err(e) => return Some((Err(unavailable(e)), (messages, true))),
                };
                let (position, pending) = (info.stream_sequence, info.pending);
                if position > to {
                    return None;
                }
                let done = position >= to || pending == 0;
                Some((Ok((m, position)), (messages, done)))
            })
            .boxed(),
        )
    }

    /// Whether a message at `from` or later matches one of `subjects`. `false` when the log
    /// cannot say.
    async fn stored_from(&self, from: u64, subjects: &[String]) -> bool {
        for subject in subjects {
            if let Ok((found, _)) = self.read_raw_batch(from, subject, 1).await
                && !found.is_empty()
            {
                return true;
            }
        }
        false
    }

    /// One ordered consumer from `from_position` over `subjects`, as
    /// [`JetStreamLog::follow_raw`] uses.
    async fn ordered_feed(
        &self,
        from_position: u64,
        subjects: &[String],
    ) -> Result<futures::stream::BoxStream<'static, Result<RawEvent, LogError>>, LogError> {
        let messages = self
            .ordered_messages(from_position, subjects.to_vec())
            .await?;
        Ok(messages
            .map(|m| {
                let m = m.map_err(unavailable)?;
                let position = m.info().map_err(unavailable)?.stream_sequence;
                Ok(RawEvent::of_message(&m, position))
            })
            .boxed())
    }

    /// The messages of one ordered consumer from `from_position` over `subjects` (every
    /// subject when empty).
    async fn ordered_messages(
        &self,
        from_position: u64,
        subjects: Vec<String>,
    ) -> Result<consumer::pull::Ordered, LogError> {
        let stream = self
            .js
            .get_stream_no_info(&self.cfg.stream_name)
            .await
            .map_err(unavailable)?;
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subjects: subjects,
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: from_position.max(1),
                },
                // Pull requests expire after 2 s, so the idle heartbeat is 1 s: a consumer
                // lost with a cluster node (ordered consumers have one replica) is noticed
                // and recreated within seconds, not the client's default 15 s.
                max_expires: FOLLOW_EXPIRES,
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        consumer.messages().await.map_err(unavailable)
    }

    /// Where a stream stands, and its last event. One direct get, unless the last message
    /// on its subject is not an event (someone published there): then the head is the last
    /// event before it, at that message's position, and the stream is read whole.
    pub async fn last_event(
        &self,
        stream: &StreamId,
    ) -> Result<(StreamHead, Option<RecordedEvent>), LogError> {
        let Some(raw) = self.last_raw(&self.subject_of(stream)).await? else {
            return Ok((StreamHead::EMPTY, None));
        };
        if let Ok(e) = self.classify(&raw)
            && self.in_place(&raw).await?
        {
            return Ok((StreamHead::of(&e), Some(e)));
        }
        let read = self.read_stream_after(stream, &StreamHead::EMPTY).await?;
        Ok((read.head, read.events.into_iter().last()))
    }

    /// Whether an authenticated message stands where its append put it: the message its
    /// (authenticated) `Chronicle-Prev` names is really the one before it on its subject.
    /// A genuine message published again elsewhere fails this. Usually one direct get;
    /// for a message inside a batch, one per earlier message of its stream in the batch.
    async fn in_place(&self, raw: &RawEvent) -> Result<bool, LogError> {
        let mut cur = raw.clone();
        loop {
            match cur.prev.as_deref() {
                Some(PREV_IN_BATCH) => {
                    let (before, _) = self
                        .read_raw_batch(cur.position - 1, &cur.subject, 1)
                        .await?;
                    match before.into_iter().next() {
                        Some(b)
                            if b.position == cur.position - 1
                                && self.authentic(&b)
                                && b.version_header.map(|v| v + 1) == cur.version_header =>
                        {
                            cur = b
                        }
                        _ => return Ok(false),
                    }
                }
                Some(at) => {
                    let Ok(at) = at.parse::<u64>() else {
                        return Ok(false);
                    };
                    let (next, _) = self.read_raw_batch(at + 1, &cur.subject, 1).await?;
                    return Ok(next.first().map(|n| n.position) == Some(cur.position));
                }
                None => return Ok(false),
            }
        }
    }

    /// The first stored message of `subject` at or after `seq`: a single direct get (no
    /// pending count).
    async fn next_raw(&self, seq: u64, subject: &str) -> Result<Option<RawEvent>, LogError> {
        self.direct_get(serde_json::json!({ "seq": seq.max(1), "next_by_subj": subject }))
            .await
    }

    /// One direct get (a single message: no batch, so no pending count).
    async fn direct_get(&self, request: serde_json::Value) -> Result<Option<RawEvent>, LogError> {
        self.ensure_connected().await?;
        let msg = self
            .client
            .request(self.direct_get_subject(), Bytes::from(request.to_string()))
            .await
            .map_err(unavailable)?;
        self.raw_from_message(msg)
    }

    /// The events after `head` up to `last`, found from `last` backwards: each message's
    /// authenticated `Chronicle-Prev` names where the one before it is, so each step is one
    /// direct get by position, which asks the server to search nothing. `None` when the
    /// walk does not give exactly the events between (a foreign last message, a link that
    /// does not hold): the caller then reads forward.
    async fn walk_back(
        &self,
        last: &RawEvent,
        head: &StreamHead,
        subject: &str,
    ) -> Result<Option<StreamRead>, LogError> {
        let Some(last_version) = last.version_header else {
            return Ok(None);
        };
        // The last message must stand where its append put it: a genuine event published
        // again later carries a valid chain back to the stream's start, and only a read
        // that sees the events after its original tells the copy apart.
        if !self.authentic(last) || !self.in_place(last).await? {
            return Ok(None);
        }
        let mut chain = vec![last.clone()];
        let mut cur = last.clone();
        // Each message is authenticated before its `Chronicle-Prev` is followed: the last one
        // above, every earlier one as it is fetched.
        while cur.version_header.unwrap_or(0) > head.version + 1 {
            let at = match cur.prev.as_deref() {
                Some(PREV_IN_BATCH) => cur.position - 1,
                Some(p) => match p.parse::<u64>() {
                    Ok(p) => p,
                    Err(_) => return Ok(None),
                },
                None => return Ok(None),
            };
            if at <= head.position || at >= cur.position {
                return Ok(None);
            }
            match self.raw_at(at).await? {
                Some(prev) if prev.subject == subject && self.authentic(&prev) => {
                    chain.push(prev.clone());
                    cur = prev;
                }
                _ => return Ok(None),
            }
            if chain.len() as u64 > SHORT_READ + 1 {
                return Ok(None);
            }
        }
        chain.reverse();
        let mut tip = head.clone();
        let mut out = Vec::with_capacity(chain.len());
        for raw in chain {
            self.place(raw, &mut tip, &mut out);
        }
        // Every version after the head, each placed (authenticated, linked): else forward.
        if out.len() as u64 != last_version.saturating_sub(head.version)
            || tip.version != last_version
        {
            return Ok(None);
        }
        Ok(Some(StreamRead {
            events: out,
            head: tip,
        }))
    }

    /// The stored message at `position`, whatever its subject.
    async fn raw_at(&self, position: u64) -> Result<Option<RawEvent>, LogError> {
        self.direct_get(serde_json::json!({ "seq": position }))
            .await
    }

    /// Takes `raw` as the stream's next event if it is one: authenticated and following the
    /// one before it (the next version, linked by its prev_hash). Anything else is stepped
    /// over, so that nobody can change an aggregate's state by publishing (or
    /// re-publishing) a message on its subject.
    fn place(&self, raw: RawEvent, tip: &mut StreamHead, out: &mut Vec<RecordedEvent>) {
        tip.position = raw.position;
        let placed = self.classify(&raw).and_then(|e| {
            if e.version != tip.version + 1 {
                Err(format!(
                    "version {} after version {}",
                    e.version, tip.version
                ))
            } else if e.envelope.prev_hash != tip.hash {
                Err("its prev_hash is not the previous event's hash".to_owned())
            } else {
                return Ok(e);
            }
            .map_err(|why| ForeignMessage {
                position: raw.position,
                subject: raw.subject.clone(),
                reason: ForeignReason::OutOfPlace(why),
                leaf: crate::merkle::leaf_of_payload(&raw.payload),
            })
        });
        match placed {
            Ok(e) => {
                tip.version = e.version;
                tip.hash = Some(e.envelope.hash.clone());
                out.push(e);
            }
            Err(foreign) => foreign.record("stream"),
        }
    }

    /// The last stored message of one subject.
    async fn last_raw(&self, subject: &str) -> Result<Option<RawEvent>, LogError> {
        self.direct_get(serde_json::json!({ "last_by_subj": subject }))
            .await
    }

    /// Whether a stored message is authenticated by one of the event keys.
    pub fn authentic(&self, raw: &RawEvent) -> bool {
        self.cfg.keyring.verify(
            &raw.subject,
            raw.version_header,
            raw.prev.as_deref(),
            &raw.payload,
            raw.auth.as_deref(),
        )
    }

    /// One stored message as an event, or why it is not one of Chronicle's: it must be
    /// authenticated by an event key and be a well-formed envelope of the stream its
    /// subject names. (Whether it is in its place in its stream takes the stream's history:
    /// [`EventLog::read_stream_after`] checks that too.)
    pub fn classify(&self, raw: &RawEvent) -> Result<RecordedEvent, ForeignMessage> {
        let foreign = |reason| ForeignMessage {
            position: raw.position,
            subject: raw.subject.clone(),
            reason,
            leaf: crate::merkle::leaf_of_payload(&raw.payload),
        };
        if !self.authentic(raw) {
            return Err(foreign(ForeignReason::Unauthenticated));
        }
        let version = raw.version_header.unwrap_or_default();
        self.decode_raw(raw, version).map_err(|e| {
            foreign(ForeignReason::Malformed(match e {
                LogError::Corrupt { message, .. } => message,
                other => other.to_string(),
            }))
        })
    }

    fn stored(&self, raw: &RawEvent) -> Stored {
        match self.classify(raw) {
            Ok(e) => Stored::Event(e),
            Err(f) => Stored::Foreign(f),
        }
    }

    /// Decodes a stored message, checking that it is a well-formed envelope of the stream
    /// its subject names (but not who wrote it: see [`JetStreamLog::classify`]).
    pub fn decode_raw(&self, raw: &RawEvent, version: u64) -> Result<RecordedEvent, LogError> {
        let corrupt = |message: String| LogError::Corrupt {
            position: raw.position,
            message,
        };
        let envelope: Envelope = serde_json::from_slice(&raw.payload)
            .map_err(|e| corrupt(format!("not an envelope: {e}")))?;
        let stream = StreamId::from_subject(&self.cfg.subject_prefix, &raw.subject)
            .map_err(|e| corrupt(format!("subject {}: {e}", raw.subject)))?;
        if envelope.stream != stream {
            return Err(corrupt(format!(
                "envelope names stream {} but sits on {}",
                envelope.stream, raw.subject
            )));
        }
        // The chain hash is also the message's Merkle leaf (`Stored::leaf`).
        if envelope.hash.len() != 64
            || hex::decode_to_slice(&envelope.hash, &mut [0u8; 32]).is_err()
        {
            return Err(corrupt("its hash is not 32 bytes of hex".to_owned()));
        }
        Ok(RecordedEvent {
            position: raw.position,
            version,
            envelope,
        })
    }

    /// Builds the messages of one attempt from the streams' current heads.
    fn build_messages(
        &self,
        request: &AppendRequest,
        heads: &[StreamHead],
        ids: &[Uuid],
        occurred_at: DateTime<Utc>,
    ) -> Result<Vec<OutMessage>, LogError> {
        let mut out = Vec::with_capacity(ids.len());
        let mut n = 0usize;
        // Leave room for the headers within the server's message limit.
        let max = self.max_payload().saturating_sub(1024);
        for (write, head) in request.writes.iter().zip(heads) {
            let subject = self.subject_of(&write.stream);
            let mut prev = head.hash.clone();
            for (i, pending) in write.events.iter().enumerate() {
                let event_type = pending.event.event_type();
                let version = head.version + 1 + i as u64;
                let data = pending.event.canonical_data();
                // Every append in the test suite checks the direct writer against the
                // canonical form of the event as a `Value`, which readers hash.
                debug_assert_eq!(
                    data,
                    crate::chain::canonical_json(&pending.event.data()),
                    "canonical data of {event_type}"
                );
                let (hash, payload) = encode_envelope(&EnvelopeParts {
                    id: &ids[n],
                    stream: &write.stream,
                    event_type,
                    schema: current_schema(event_type),
                    occurred_at: &occurred_at,
                    actor: &pending.actor,
                    command_id: &request.command_id,
                    correlation_id: &pending.correlation_id,
                    causation_id: pending.causation_id.as_ref(),
                    data: &data,
                    prev_hash: prev.as_deref(),
                });
                let payload = Bytes::from(payload);
                if payload.len() > max {
                    return Err(LogError::TooLarge {
                        size: payload.len(),
                        max,
                    });
                }
                let mut headers = HeaderMap::new();
                headers.insert(MSG_ID, format!("{}:{n}", request.command_id).as_str());
                headers.insert(VERSION_HEADER, version.to_string().as_str());
                // Where the previous message of the subject is: as the append expects it,
                // or right before this one in the batch.
                let prev_at = if i == 0 {
                    head.position.to_string()
                } else {
                    PREV_IN_BATCH.to_owned()
                };
                headers.insert(
                    AUTH_HEADER,
                    self.cfg
                        .keyring
                        .sign(&subject, version, &prev_at, &payload)
                        .as_str(),
                );
                headers.insert(PREV_HEADER, prev_at.as_str());
                if i == 0 {
                    headers.insert(
                        EXPECTED_LAST_SUBJECT_SEQ,
                        head.position.to_string().as_str(),
                    );
                }
                out.push(OutMessage {
                    subject: subject.clone(),
                    headers,
                    payload,
                    appended: AppendedEvent {
                        id: ids[n],
                        stream: write.stream.clone(),
                        event_type: event_type.to_owned(),
                        version,
                        position: 0,
                        hash: hash.clone(),
                    },
                });
                prev = Some(hash);
                n += 1;
            }
        }
        Ok(out)
    }

    /// Sends one attempt: a plain JetStream publish for one message, an atomic batch for
    /// more. Answers the ack.
    async fn send(&self, messages: &[OutMessage]) -> Result<PubAck, AttemptError> {
        self.ensure_connected()
            .await
            .map_err(|e| AttemptError::Unavailable(e.to_string()))?;
        let last = messages.len() - 1;
        let _permit = if messages.len() > 1 {
            Some(
                self.batches
                    .acquire()
                    .await
                    .map_err(|e| AttemptError::Unavailable(e.to_string()))?,
            )
        } else {
            None
        };
        let batch_id = Uuid::new_v4().simple().to_string();
        for (i, m) in messages.iter().enumerate() {
            let mut headers = m.headers.clone();
            if messages.len() > 1 {
                headers.insert(BATCH_ID, batch_id.as_str());
                headers.insert(BATCH_SEQ, (i + 1).to_string().as_str());
                if i == last {
                    headers.insert(BATCH_COMMIT, "1");
                }
            }
            if i == 0 && i < last {
                // The server answers a batch's first message (empty, or an error), and
                // takes the rest of the batch at once only after that answer.
                let reply = self
                    .client
                    .request_with_headers(m.subject.clone(), headers, m.payload.clone())
                    .await
                    .map_err(|e| AttemptError::Unavailable(e.to_string()))?;
                if !reply.payload.is_empty() {
                    let ack: PubAck = serde_json::from_slice(&reply.payload).map_err(|e| {
                        AttemptError::Unavailable(format!("unreadable answer: {e}"))
                    })?;
                    if let Some(err) = ack.error {
                        return Err(Self::attempt_error(&err));
                    }
                }
                continue;
            }
            if i < last {
                self.client
                    .publish_with_headers(m.subject.clone(), headers, m.payload.clone())
                    .await
                    .map_err(|e| AttemptError::Unavailable(e.to_string()))?;
                continue;
            }
            let reply = self
                .client
                .request_with_headers(m.subject.clone(), headers, m.payload.clone())
                .await
                .map_err(|e| AttemptError::Unavailable(e.to_string()))?;
            if reply.status.is_some_and(|s| s.as_u16() == 503) {
                return Err(AttemptError::Unavailable("no responders".into()));
            }
            let ack: PubAck = serde_json::from_slice(&reply.payload)
                .map_err(|e| AttemptError::Unavailable(format!("unreadable ack: {e}")))?;
            if let Some(err) = &ack.error {
                return Err(Self::attempt_error(err));
            }
            return Ok(ack);
        }
        unreachable!("an append has at least one message")
    }

    fn attempt_error(err: &ApiError) -> AttemptError {
        if err.code == 503 || matches!(err.err_code, ERR_CLUSTER_NOT_AVAILABLE | ERR_NOT_LEADER) {
            // JetStream starting up, recovering, or electing a leader: nothing stored.
            return AttemptError::Unavailable(format!(
                "JetStream error {}: {}",
                err.err_code, err.description
            ));
        }
        match err.err_code {
            ERR_WRONG_LAST_SEQUENCE | ERR_WRONG_LAST_SEQUENCE_IN_BATCH => {
                AttemptError::WrongLastSequence
            }
            ERR_BATCH_DUPLICATE_MSG_ID => AttemptError::DuplicateBatch,
            ERR_BATCH_TOO_MANY_INFLIGHT => AttemptError::Busy,
            code => AttemptError::Rejected(format!("JetStream error {code}: {}", err.description)),
        }
    }

    /// The events of `command_id` stored from `first_position` on, `count` of them, as
    /// an outcome. `None` when what is there is not that command's.
    async fn landed_at(
        &self,
        command_id: Uuid,
        first_position: u64,
        count: usize,
    ) -> Result<Option<AppendOutcome>, LogError> {
        let filter = self.subject_filter(None);
        let (raws, _) = self.read_raw_batch(first_position, &filter, count).await?;
        if raws.len() != count || raws[0].position != first_position {
            return Ok(None);
        }
        let mut events = Vec::with_capacity(count);
        for raw in &raws {
            let Ok(e) = self.classify(raw) else {
                return Ok(None);
            };
            if e.envelope.command_id != command_id {
                return Ok(None);
            }
            events.push(AppendedEvent {
                id: e.envelope.id,
                stream: e.envelope.stream.clone(),
                event_type: e.envelope.event_type.clone(),
                version: e.version,
                position: e.position,
                hash: e.envelope.hash.clone(),
            });
        }
        Ok(Some(AppendOutcome {
            command_id,
            events,
            duplicate: true,
        }))
    }

    /// After a wrong-last-sequence answer: did this very command land already (an earlier
    /// attempt whose answer was lost, or the same command sent before)? Its first event
    /// would follow the head the first stream was expected at.
    async fn find_landed(
        &self,
        request: &AppendRequest,
        heads: &[StreamHead],
    ) -> Result<Option<AppendOutcome>, LogError> {
        let subject = self.subject_of(&request.writes[0].stream);
        let (next, _) = self
            .read_raw_batch(heads[0].position + 1, &subject, 1)
            .await?;
        let Some(first) = next.first() else {
            return Ok(None);
        };
        let Ok(e) = self.classify(first) else {
            return Ok(None);
        };
        if e.envelope.command_id != request.command_id {
            return Ok(None);
        }
        // An atomic append is stored contiguously from its first event.
        match self
            .landed_at(request.command_id, first.position, request.event_count())
            .await?
        {
            Some(outcome) => Ok(Some(outcome)),
            None => Err(LogError::Corrupt {
                position: first.position,
                message: "an earlier append of this command is not whole".into(),
            }),
        }
    }

    /// Where this command's events are, wherever they landed: right after the expected
    /// head (the usual case), or anywhere in its first stream (an `Expected::Any` stream
    /// that moved on since).
    async fn find_command(
        &self,
        request: &AppendRequest,
        heads: &[StreamHead],
    ) -> Result<Option<AppendOutcome>, LogError> {
        if let Some(outcome) = self.find_landed(request, heads).await? {
            return Ok(Some(outcome));
        }
        let events = self.read_stream(&request.writes[0].stream, 1).await?;
        match events
            .iter()
            .find(|e| e.envelope.command_id == request.command_id)
        {
            Some(first) => {
                self.landed_at(request.command_id, first.position, request.event_count())
                    .await
            }
            None => Ok(None),
        }
    }

    fn validate(request: &AppendRequest) -> Result<(), LogError> {
        if request.writes.is_empty() || request.writes.iter().any(|w| w.events.is_empty()) {
            return Err(LogError::Invalid(
                "an append needs at least one event".into(),
            ));
        }
        if request.event_count() > MAX_EVENTS_PER_APPEND {
            return Err(LogError::Invalid(format!(
                "at most {MAX_EVENTS_PER_APPEND} events in one append"
            )));
        }
        for (i, w) in request.writes.iter().enumerate() {
            if request.writes[..i].iter().any(|o| o.stream == w.stream) {
                return Err(LogError::Invalid(format!(
                    "stream {} written twice in one append",
                    w.stream
                )));
            }
            if let Some(e) = w
                .events
                .iter()
                .find(|e| e.event.domain() != w.stream.domain())
            {
                return Err(LogError::Invalid(format!(
                    "{} is not an event of stream {}",
                    e.event.event_type(),
                    w.stream
                )));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl EventLog for JetStreamLog {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, LogError> {
        Self::validate(&request)?;
        let mut heads = Vec::with_capacity(request.writes.len());
        for w in &request.writes {
            heads.push(match &w.expected {
                Expected::Head(h) => h.clone(),
                Expected::Any => self.stream_head(&w.stream).await?,
            });
        }
        // Ids and time are fixed once, so every retry sends the same events.
        let ids: Vec<Uuid> = (0..request.event_count()).map(|_| Uuid::now_v7()).collect();
        let occurred_at = Utc::now().trunc_subsecs(6);
        let mut conflicts = 0;
        let mut unavailable_tries = 0;
        let mut busy_tries = 0u64;
        loop {
            let messages = self.build_messages(&request, &heads, &ids, occurred_at)?;
            match self.send(&messages).await {
                Ok(ack) => {
                    let n = messages.len() as u64;
                    if ack.duplicate {
                        // The message id was seen in the window: the first append's
                        // events end at `ack.seq` (for a batch) or are at it (one event).
                        let first = ack.seq + 1 - n;
                        return self
                            .landed_at(request.command_id, first, messages.len())
                            .await?
                            .ok_or_else(|| LogError::Corrupt {
                                position: ack.seq,
                                message: "duplicate ack does not point at this command".into(),
                            });
                    }
                    if let Some(count) = ack.count
                        && count != n
                    {
                        return Err(LogError::Corrupt {
                            position: ack.seq,
                            message: format!("batch of {n} acknowledged with count {count}"),
                        });
                    }
                    // An atomic batch is stored contiguously, ending at the ack's sequence.
                    let first = ack.seq + 1 - n;
                    let events = messages
                        .into_iter()
                        .enumerate()
                        .map(|(i, m)| AppendedEvent {
                            position: first + i as u64,
                            ..m.appended
                        })
                        .collect();
                    return Ok(AppendOutcome {
                        command_id: request.command_id,
                        events,
                        duplicate: false,
                    });
                }
                Err(AttemptError::WrongLastSequence) => {
                    if let Some(outcome) = self.find_landed(&request, &heads).await? {
                        return Ok(outcome);
                    }
                    conflicts += 1;
                    let mut moved_any = false;
                    for (i, w) in request.writes.iter().enumerate() {
                        let actual = self.stream_head(&w.stream).await?;
                        if actual == heads[i] {
                            continue;
                        }
                        match &w.expected {
                            Expected::Head(expected) => {
                                return Err(LogError::VersionConflict {
                                    stream: w.stream.clone(),
                                    expected: expected.version,
                                    actual: actual.version,
                                });
                            }
                            Expected::Any => {
                                heads[i] = actual;
                                moved_any = true;
                            }
                        }
                    }
                    if conflicts > MAX_CONFLICT_RETRIES {
                        return Err(unavailable(
                            "too many concurrent appends to the same streams",
                        ));
                    }
                    if !moved_any {
                        // The heads read back equal to what was expected: the competing
                        // append was seen by a stale replica. Try again after a moment.
                        tokio::time::sleep(Duration::from_millis(5 * conflicts as u64)).await;
                    }
                }
                Err(AttemptError::DuplicateBatch) => {
                    return self.find_command(&request, &heads).await?.ok_or_else(|| {
                        LogError::Corrupt {
                            position: heads[0].position,
                            message: "a batch of this command was seen but is not in the log"
                                .into(),
                        }
                    });
                }
                Err(AttemptError::Busy) => {
                    busy_tries += 1;
                    if busy_tries > 200 {
                        return Err(unavailable("the log holds too many open batches"));
                    }
                    tokio::time::sleep(Duration::from_millis(2 + busy_tries.min(20))).await;
                }
                Err(AttemptError::Unavailable(why)) => {
                    unavailable_tries += 1;
                    if unavailable_tries > MAX_UNAVAILABLE_RETRIES {
                        return Err(LogError::Unavailable(why));
                    }
                    tracing::warn!(command_id = %request.command_id, %why, "append outcome unknown; sending it again");
                    tokio::time::sleep(Duration::from_millis(200 * unavailable_tries as u64)).await;
                }
                Err(AttemptError::Rejected(why)) => return Err(LogError::Invalid(why)),
            }
        }
    }

    async fn read_stream_after(
        &self,
        stream: &StreamId,
        head: &StreamHead,
    ) -> Result<StreamRead, LogError> {
        let subject = self.subject_of(stream);
        // Most reads after a known head find nothing new (an aggregate only consulted, a
        // cache checked after a lost race elsewhere): one direct get of the subject's last
        // message says so. For an unknown head it says whether the stream exists, and how
        // long it is.
        let last = self.last_raw(&subject).await?;
        match &last {
            Some(l) if l.position > head.position => {}
            _ => {
                return Ok(StreamRead {
                    events: Vec::new(),
                    head: head.clone(),
                });
            }
        }
        let last = last.expect("matched above");
        let mut out = Vec::new();
        let mut tip = head.clone();
        let mut seq = head.position + 1;
        // A few events to read: one direct get each, walking back from the last message
        // by position (no search at all), or else forward by subject. A batch get would
        // have the server count the subject's messages pending to the end of the log,
        // which walks (and loads) every block after `seq`: ~25–50 ms for a 10-event stream
        // among a million others. (The version header only chooses the way of reading;
        // every message is checked as always.)
        let remaining = last.version_header.map(|v| v.saturating_sub(head.version));
        if remaining.is_some_and(|r| r <= SHORT_READ) {
            if let Some(read) = self.walk_back(&last, head, &subject).await? {
                return Ok(read);
            }
            while let Some(raw) = self.next_raw(seq, &subject).await? {
                let at = raw.position;
                self.place(raw, &mut tip, &mut out);
                if at >= last.position {
                    break;
                }
                seq = at + 1;
            }
            return Ok(StreamRead {
                events: out,
                head: tip,
            });
        }
        loop {
            let (raws, more) = self.read_raw_batch(seq, &subject, READ_BATCH).await?;
            let next = raws.last().map(|r| r.position + 1);
            for raw in raws {
                self.place(raw, &mut tip, &mut out);
            }
            match next {
                Some(n) if more => seq = n,
                _ => break,
            }
        }
        Ok(StreamRead {
            events: out,
            head: tip,
        })
    }

    /// One direct get by position (no search, no count).
    async fn stored_at(&self, position: u64) -> Result<Option<Stored>, LogError> {
        Ok(self.raw_at(position).await?.map(|raw| self.stored(&raw)))
    }

    async fn stream_head(&self, stream: &StreamId) -> Result<StreamHead, LogError> {
        Ok(self.last_event(stream).await?.0)
    }

    async fn last_position(&self) -> Result<u64, LogError> {
        let s = self
            .js
            .get_stream_no_info(&self.cfg.stream_name)
            .await
            .map_err(unavailable)?;
        let info = s.get_info().await.map_err(unavailable)?;
        Ok(info.state.last_sequence)
    }

    async fn read_from(
        &self,
        from_position: u64,
        filter: Option<&str>,
    ) -> Result<LogStream, LogError> {
        let end = self.last_position().await?;
        let subject = self.subject_filter(filter);
        let log = self.clone();
        let start = from_position.max(1);
        // Batched direct gets, one batch ahead of the reader; ends at the log's end as of
        // the call.
        let batches = futures::stream::try_unfold(Some(start), move |next| {
            let log = log.clone();
            let subject = subject.clone();
            async move {
                let Some(seq) = next.filter(|s| *s <= end) else {
                    return Ok(None);
                };
                let (raws, more) = log.read_raw_batch(seq, &subject, READ_BATCH).await?;
                let raws: Vec<RawEvent> = raws.into_iter().filter(|r| r.position <= end).collect();
                let next = match raws.last() {
                    Some(last) if more && last.position < end => Some(last.position + 1),
                    _ => None,
                };
                let events: Vec<Result<Stored, LogError>> =
                    raws.iter().map(|r| Ok(log.stored(r))).collect();
                Ok::<_, LogError>(Some((futures::stream::iter(events), next)))
            }
        });
        Ok(batches
            .map(|r| match r {
                Ok(s) => s.left_stream(),
                Err(e) => futures::stream::iter(vec![Err(e)]).right_stream(),
            })
            .flatten()
            .boxed())
    }

    async fn follow(&self, from_position: u64, filters: &[&str]) -> Result<LogStream, LogError> {
        let log = self.clone();
        Ok(self
            .follow_raw(from_position, filters)
            .await?
            .map(move |raw| Ok(log.stored(&raw?)))
            .boxed())
    }
}
