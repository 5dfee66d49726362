//! The JetStream event log against a real nats-server: the log's contract (run against the
//! in-memory log too), and what only JetStream can show — the stored bytes and their
//! chain, concurrency under real load, the duplicate window, immutability, the stream's
//! settings, upcasting of what an older build wrote, forgeries by anyone who can publish.

use chronicle_testkit as common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chronicle_events::chain::check_link;
use chronicle_events::domain::job::{JobCompleted, JobStarted};
use chronicle_events::domain::user::{Role, TokenIssued};
use chronicle_events::domain::{Event, JobEvent, UserEvent};
use chronicle_events::jetstream::VERSION_HEADER;
use chronicle_events::{
    AppendRequest, EventLog, Expected, JetStreamLog, LogError, StreamHead, StreamId,
};
use futures::StreamExt;
use serde_json::json;
use uuid::Uuid;

use chronicle_testkit::contract::{job as job_stream, pending, submitted};

/// Checks every link of a stream's chain from the stored bytes.
async fn assert_chain_whole(log: &JetStreamLog, stream: &StreamId) -> usize {
    let subject = stream.subject(&log.config().subject_prefix);
    let (raws, _) = log.read_raw_batch(1, &subject, 1000).await.unwrap();
    let mut prev: Option<String> = None;
    for raw in &raws {
        let v: serde_json::Value = serde_json::from_slice(&raw.payload).unwrap();
        check_link(&v, prev.as_deref()).unwrap();
        prev = v["hash"].as_str().map(str::to_owned);
    }
    raws.len()
}

#[tokio::test]
async fn what_is_stored_is_the_chained_envelopes_with_uuid_v7_ids() {
    // The contract (`appends_and_reads_back`) checks what reads answer; this checks the
    // bytes JetStream holds.
    let log = common::isolated_log().await;
    let job = job_stream();
    log.append(AppendRequest::single(
        Uuid::new_v4(),
        job.clone(),
        Expected::NO_STREAM,
        vec![
            submitted(&job),
            pending(JobStarted {}),
            pending(JobCompleted {
                result: json!({"ok": true}),
            }),
        ],
    ))
    .await
    .unwrap();
    assert_eq!(assert_chain_whole(&log, &job).await, 3);
    let events = log.read_stream(&job, 1).await.unwrap();
    assert!(events.iter().all(|e| e.envelope.id.get_version_num() == 7));
    assert_eq!(
        events[1].decode().unwrap(),
        Event::Job(JobEvent::JobStarted(JobStarted {}))
    );
    assert_eq!(
        log.stream_head(&job_stream()).await.unwrap(),
        StreamHead::EMPTY
    );
}

#[tokio::test]
async fn of_one_hundred_concurrent_appends_at_one_version_exactly_one_lands() {
    let log = Arc::new(common::isolated_log().await);
    let job = job_stream();
    let first = log
        .append(AppendRequest::single(
            Uuid::new_v4(),
            job.clone(),
            Expected::NO_STREAM,
            vec![submitted(&job)],
        ))
        .await
        .unwrap();
    let head = first.head_of(&job).unwrap();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (log, job, head) = (log.clone(), job.clone(), head.clone());
            tokio::spawn(async move {
                log.append(AppendRequest::single(
                    Uuid::new_v4(),
                    job,
                    Expected::Head(head),
                    vec![pending(JobStarted {})],
                ))
                .await
            })
        })
        .collect();
    let mut ok = 0;
    let mut conflicts = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(LogError::VersionConflict {
                expected, actual, ..
            }) => {
                assert_eq!((expected, actual), (1, 2));
                conflicts += 1;
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!((ok, conflicts), (1, 99));
    assert_eq!(log.read_stream(&job, 1).await.unwrap().len(), 2);
    assert_eq!(log.last_position().await.unwrap(), 2);
}

#[tokio::test]
async fn a_command_repeated_after_the_duplicate_window_is_still_found() {
    let log = common::isolated_log_with(|c| c.duplicate_window = Duration::from_millis(500)).await;
    let job = job_stream();
    let request = AppendRequest::single(
        Uuid::new_v4(),
        job.clone(),
        Expected::NO_STREAM,
        vec![submitted(&job), pending(JobStarted {})],
    );
    let first = log.append(request.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let again = log.append(request).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.events, first.events);
    assert_eq!(log.last_position().await.unwrap(), 2);
}

#[tokio::test]
async fn a_changed_payload_breaks_the_chain() {
    let log = common::isolated_log().await;
    let job = job_stream();
    log.append(AppendRequest::single(
        Uuid::new_v4(),
        job.clone(),
        Expected::NO_STREAM,
        vec![submitted(&job), pending(JobStarted {})],
    ))
    .await
    .unwrap();
    let subject = job.subject(&log.config().subject_prefix);
    let (raws, _) = log.read_raw_batch(1, &subject, 10).await.unwrap();
    let mut first: serde_json::Value = serde_json::from_slice(&raws[0].payload).unwrap();
    check_link(&first, None).unwrap();
    first["data"]["kind"] = json!("exfiltrate");
    assert!(check_link(&first, None).is_err());
    // Re-hashing the forged event does not help: the next link no longer matches.
    first["hash"] = json!(chronicle_events::compute_hash(&first));
    let second: serde_json::Value = serde_json::from_slice(&raws[1].payload).unwrap();
    assert!(check_link(&second, first["hash"].as_str()).is_err());
}

#[tokio::test]
async fn deleting_or_purging_the_log_is_refused() {
    let log = common::isolated_log().await;
    let job = job_stream();
    log.append(AppendRequest::single(
        Uuid::new_v4(),
        job.clone(),
        Expected::NO_STREAM,
        vec![submitted(&job)],
    ))
    .await
    .unwrap();
    let stream = log
        .jetstream()
        .get_stream(&log.config().stream_name)
        .await
        .unwrap();
    assert!(
        stream.delete_message(1).await.is_err(),
        "delete must be refused"
    );
    assert!(stream.purge().await.is_err(), "purge must be refused");
    assert_eq!(log.read_stream(&job, 1).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_stream_with_weaker_settings_is_refused() {
    let cfg = common::isolated_config();
    let client = async_nats::connect(common::nats_url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.create_stream(async_nats::jetstream::stream::Config {
        deny_delete: false,
        max_messages_per_subject: 10,
        ..cfg.stream_config()
    })
    .await
    .unwrap();
    match JetStreamLog::connect(&common::nats_url(), cfg).await {
        Err(LogError::Misconfigured(why)) => {
            assert!(why.contains("deny_delete"), "{why}");
            assert!(why.contains("limits"), "{why}");
        }
        Err(e) => panic!("expected Misconfigured, got {e}"),
        Ok(_) => panic!("a weakened stream was accepted"),
    }
}

#[tokio::test]
async fn an_old_schema_is_upcast_when_read() {
    let log = common::isolated_log().await;
    let user = StreamId::new(chronicle_events::Domain::User, "bob").unwrap();
    // A TokenIssued written by an older build: schema 1, scopes as one string.
    let mut v1 = json!({
        "id": Uuid::now_v7(),
        "stream": "user.bob",
        "type": "TokenIssued",
        "schema": 1,
        "occurred_at": "2025-01-02T03:04:05Z",
        "actor": {"kind": "system", "id": "bootstrap"},
        "command_id": Uuid::new_v4(),
        "correlation_id": Uuid::new_v4(),
        "causation_id": null,
        "data": {
            "jti": "0193d2a0-0000-7000-8000-000000000001",
            "role": "writer",
            "scope": "jobs:write ledger:read",
            "issued_at": "2025-01-02T03:04:05Z",
            "expires_at": "2025-01-03T03:04:05Z"
        },
        "prev_hash": null,
    });
    v1["hash"] = json!(chronicle_events::compute_hash(&v1));
    let payload = chronicle_events::canonical_json(&v1);
    let subject = user.subject(&log.config().subject_prefix);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(VERSION_HEADER, "1");
    // Written by Chronicle, so authenticated by its event key.
    headers.insert(chronicle_events::auth::PREV_HEADER, "0");
    headers.insert(
        chronicle_events::auth::AUTH_HEADER,
        common::keyring().sign(&subject, 1, "0", &payload).as_str(),
    );
    let ack = log
        .jetstream()
        .publish_with_headers(subject, headers, Bytes::from(payload))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(ack.sequence, 1);

    let events = log.read_stream(&user, 1).await.unwrap();
    assert_eq!(events[0].envelope.schema, 1, "the log is not rewritten");
    match events[0].decode().unwrap() {
        Event::User(UserEvent::TokenIssued(TokenIssued { role, scopes, .. })) => {
            assert_eq!(role, Role::Writer);
            assert_eq!(scopes, vec!["jobs:write", "ledger:read"]);
        }
        other => panic!("decoded as {other:?}"),
    }
}

#[tokio::test]
async fn many_concurrent_multi_event_appends_all_land() {
    // More open atomic batches than the server allows at once, from eight processes'
    // worth of connections: each log paces its own, and sends again what the server
    // turned away, so every one lands.
    let log = Arc::new(common::isolated_log().await);
    let mut logs = vec![log.clone()];
    for _ in 0..7 {
        logs.push(Arc::new(
            JetStreamLog::connect(&common::nats_url(), log.config().clone())
                .await
                .unwrap(),
        ));
    }
    let tasks: Vec<_> = (0..240)
        .map(|i| {
            let log = logs[i % logs.len()].clone();
            tokio::spawn(async move {
                let job = job_stream();
                log.append(AppendRequest::single(
                    Uuid::new_v4(),
                    job.clone(),
                    Expected::NO_STREAM,
                    vec![submitted(&job), pending(JobStarted {})],
                ))
                .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(log.last_position().await.unwrap(), 480);
}

/// Publishes `payload` on `stream`'s subject as anyone with publishing rights could:
/// with a version header and whatever `Chronicle-Auth` they have (none, or one copied).
async fn publish_raw(
    log: &JetStreamLog,
    stream: &StreamId,
    version: u64,
    auth: Option<(&str, &str)>,
    payload: Vec<u8>,
) -> u64 {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(VERSION_HEADER, version.to_string().as_str());
    if let Some((auth, prev)) = auth {
        headers.insert(chronicle_events::auth::AUTH_HEADER, auth);
        headers.insert(chronicle_events::auth::PREV_HEADER, prev);
    }
    log.jetstream()
        .publish_with_headers(
            stream.subject(&log.config().subject_prefix),
            headers,
            Bytes::from(payload),
        )
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence
}

#[tokio::test]
async fn messages_chronicle_did_not_write_are_stepped_over_by_every_reader() {
    let log = common::isolated_log().await;
    let job = job_stream();
    let first = log
        .append(AppendRequest::single(
            Uuid::new_v4(),
            job.clone(),
            Expected::NO_STREAM,
            vec![submitted(&job)],
        ))
        .await
        .unwrap();
    let genuine = log.read_stream(&job, 1).await.unwrap().remove(0);

    // Junk; a well-formed forgery with a correct chain and version but no key; and a
    // genuine message published again (its authentication copied along).
    let junk = publish_raw(&log, &job, 2, None, b"not an event".to_vec()).await;
    let mut forged = serde_json::to_value(&genuine.envelope).unwrap();
    forged["type"] = json!("JobStarted");
    forged["data"] = json!({});
    forged["prev_hash"] = json!(genuine.envelope.hash);
    forged["id"] = json!(Uuid::now_v7());
    forged.as_object_mut().unwrap().remove("hash");
    forged["hash"] = json!(chronicle_events::compute_hash(&forged));
    let forged_at = publish_raw(
        &log,
        &job,
        2,
        Some((
            &format!("{}:{}", common::keyring().current_id(), "ab".repeat(32)),
            "1",
        )),
        chronicle_events::canonical_json(&forged),
    )
    .await;
    let subject = job.subject(&log.config().subject_prefix);
    let (raws, _) = log.read_raw_batch(1, &subject, 10).await.unwrap();
    let copied_at = publish_raw(
        &log,
        &job,
        1,
        Some((
            raws[0].auth.as_deref().unwrap(),
            raws[0].prev.as_deref().unwrap(),
        )),
        raws[0].payload.to_vec(),
    )
    .await;
    assert!(
        log.authentic(&raws[0]),
        "Chronicle's own message is authenticated"
    );

    // Reading the stream: one event, its head past the foreign messages.
    let read = log
        .read_stream_after(&job, &StreamHead::EMPTY)
        .await
        .unwrap();
    assert_eq!(read.events.len(), 1);
    assert_eq!(read.head.version, 1);
    assert_eq!(read.head.position, copied_at);
    assert_eq!(
        read.head.hash.as_deref(),
        Some(genuine.envelope.hash.as_str())
    );
    assert_eq!(log.stream_head(&job).await.unwrap(), read.head);

    // The whole log: the foreign messages are told apart, in place.
    let all: Vec<_> = log
        .read_from(1, None)
        .await
        .unwrap()
        .map(|s| s.unwrap())
        .collect()
        .await;
    let foreign: Vec<u64> = all
        .iter()
        .filter(|s| matches!(s, chronicle_events::Stored::Foreign(_)))
        .map(|s| s.position())
        .collect();
    // The copy is authenticated: only reading its stream shows it out of place.
    assert_eq!(foreign, vec![junk, forged_at]);

    // An append goes on from the last event, at the last message's position.
    let started = log
        .append(AppendRequest::single(
            Uuid::new_v4(),
            job.clone(),
            Expected::Head(read.head.clone()),
            vec![pending(JobStarted {})],
        ))
        .await
        .unwrap();
    assert_eq!(started.events[0].version, 2);
    let events = log.read_stream(&job, 1).await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[1].envelope.prev_hash.as_deref(),
        Some(genuine.envelope.hash.as_str())
    );
    assert_eq!(first.events[0].position, 1);
}

/// The log's contract (`chronicle_testkit::contract`), against JetStream and against the
/// in-memory log the command handler's tests use: the same tests, so the fake stays honest.
mod contract {
    use chronicle_testkit::{MemoryLog, contract, isolated_log};

    macro_rules! both {
        ($($name:ident),* $(,)?) => {
            $(
                mod $name {
                    use super::*;

                    #[tokio::test]
                    async fn jetstream() {
                        contract::$name(&isolated_log().await).await;
                    }

                    #[tokio::test]
                    async fn memory() {
                        contract::$name(&MemoryLog::new()).await;
                    }
                }
            )*
        };
    }

    both!(
        appends_and_reads_back,
        a_stale_head_is_a_version_conflict,
        a_repeated_command_appends_nothing,
        a_multi_stream_append_is_all_or_nothing,
        appends_expecting_any_head_never_conflict,
        reads_and_follows_the_whole_log,
        foreign_messages_are_stepped_over,
        streams_read_the_same_at_every_length,
        bad_appends_are_refused,
    );
}
