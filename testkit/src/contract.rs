//! The contract of an [`EventLog`], as tests any implementation must pass: `events/tests/
//! log.rs` runs every one against `JetStreamLog` on a real nats-server and against
//! [`crate::MemoryLog`], so that the in-memory log the handler's tests use behaves as the
//! real one does.

use async_trait::async_trait;
use bytes::Bytes;
use chronicle_events::auth::{AUTH_HEADER, PREV_HEADER};
use chronicle_events::domain::Event;
use chronicle_events::domain::agent::{Complexity, GovernanceDecisionRecorded, Maturity, Outcome};
use chronicle_events::domain::job::{JobCompleted, JobStarted, JobSubmitted};
use chronicle_events::jetstream::VERSION_HEADER;
use chronicle_events::{
    Actor, AppendOutcome, AppendRequest, Domain, EventLog, Expected, JetStreamLog, LogError,
    PendingEvent, Stored, StreamHead, StreamId, StreamWrite,
};
use futures::StreamExt;
use serde_json::json;
use uuid::Uuid;

/// What anyone with publishing rights can do to a log, bypassing Chronicle.
#[async_trait]
pub trait Tamper: EventLog {
    /// Publishes a message that is not an event on `stream`'s subject. Its position.
    async fn publish_junk(&self, stream: &StreamId) -> u64;
    /// Publishes the stored message at `position` again, its headers copied. Its position.
    async fn republish(&self, position: u64) -> u64;
}

#[async_trait]
impl Tamper for JetStreamLog {
    async fn publish_junk(&self, stream: &StreamId) -> u64 {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(VERSION_HEADER, "1");
        self.jetstream()
            .publish_with_headers(
                stream.subject(&self.config().subject_prefix),
                headers,
                Bytes::from_static(b"not an event"),
            )
            .await
            .expect("publish")
            .await
            .expect("ack")
            .sequence
    }

    async fn republish(&self, position: u64) -> u64 {
        let (raws, _) = self
            .read_raw_batch(position, &self.subject_filter(None), 1)
            .await
            .expect("read");
        let raw = &raws[0];
        let mut headers = async_nats::HeaderMap::new();
        if let Some(v) = raw.version_header {
            headers.insert(VERSION_HEADER, v.to_string().as_str());
        }
        if let Some(a) = &raw.auth {
            headers.insert(AUTH_HEADER, a.as_str());
        }
        if let Some(p) = &raw.prev {
            headers.insert(PREV_HEADER, p.as_str());
        }
        self.jetstream()
            .publish_with_headers(raw.subject.clone(), headers, raw.payload.clone())
            .await
            .expect("publish")
            .await
            .expect("ack")
            .sequence
    }
}

pub fn job() -> StreamId {
    StreamId::new(Domain::Job, Uuid::new_v4().simple().to_string()).expect("a uuid is an id")
}

pub fn pending(event: impl Into<Event>) -> PendingEvent {
    PendingEvent::new(event, Actor::user("alice"), Uuid::new_v4())
}

pub fn submitted(stream: &StreamId) -> PendingEvent {
    pending(JobSubmitted {
        job_id: stream.id().to_owned(),
        agent_id: "agent-1".into(),
        kind: "summarise".into(),
        input: json!({"doc": "q3.pdf"}),
    })
}

pub fn decision(agent: &str, n: usize) -> PendingEvent {
    pending(GovernanceDecisionRecorded {
        agent_id: agent.into(),
        action: format!("job.start#{n}"),
        complexity: Complexity::Low,
        maturity: Maturity::Intern,
        outcome: Outcome::Allowed,
        reason: "maturity suffices".into(),
        command_id: Uuid::new_v4(),
        approval_id: None,
    })
}

/// Submits the job `stream` (a new stream), as a command would.
pub async fn submit(log: &impl EventLog, stream: &StreamId) -> AppendOutcome {
    log.append(AppendRequest::single(
        Uuid::new_v4(),
        stream.clone(),
        Expected::NO_STREAM,
        vec![submitted(stream)],
    ))
    .await
    .expect("submitting a new job")
}

/// Several events to one stream: versions, contiguous positions, the chain, the head.
pub async fn appends_and_reads_back(log: &impl EventLog) {
    let job = job();
    let command_id = Uuid::new_v4();
    let before = log.last_position().await.unwrap();
    let outcome = log
        .append(AppendRequest::single(
            command_id,
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
    assert!(!outcome.duplicate);
    let positions: Vec<u64> = outcome.events.iter().map(|e| e.position).collect();
    assert_eq!(positions, vec![before + 1, before + 2, before + 3]);
    let events = log.read_stream(&job, 1).await.unwrap();
    assert_eq!(events.len(), 3);
    let mut prev = None;
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.version, i as u64 + 1);
        assert_eq!(e.position, positions[i]);
        assert_eq!(e.envelope.command_id, command_id);
        assert_eq!(e.envelope.id, outcome.events[i].id);
        assert_eq!(e.envelope.hash, outcome.events[i].hash);
        assert_eq!(e.envelope.prev_hash, prev);
        prev = Some(e.envelope.hash.clone());
    }
    assert_eq!(log.read_stream(&job, 3).await.unwrap().len(), 1);
    assert_eq!(
        log.stream_head(&job).await.unwrap(),
        StreamHead::of(&events[2])
    );
    let after = log
        .read_stream_after(&job, &StreamHead::of(&events[0]))
        .await
        .unwrap();
    assert_eq!(after.events.len(), 2);
    assert_eq!(after.head, StreamHead::of(&events[2]));
    assert_eq!(log.last_position().await.unwrap(), before + 3);
}

/// An append against a head that moved writes nothing and says where the stream is.
pub async fn a_stale_head_is_a_version_conflict(log: &impl EventLog) {
    let job = job();
    let first = submit(log, &job).await;
    let end = log.last_position().await.unwrap();
    let err = log
        .append(AppendRequest::single(
            Uuid::new_v4(),
            job.clone(),
            Expected::NO_STREAM,
            vec![submitted(&job)],
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            LogError::VersionConflict {
                expected: 0,
                actual: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(log.last_position().await.unwrap(), end);
    let head = first.head_of(&job).unwrap();
    log.append(AppendRequest::single(
        Uuid::new_v4(),
        job.clone(),
        Expected::Head(head),
        vec![pending(JobStarted {})],
    ))
    .await
    .unwrap();
}

/// The same command id again appends nothing and answers the first append.
pub async fn a_repeated_command_appends_nothing(log: &impl EventLog) {
    let job = job();
    let command_id = Uuid::new_v4();
    let request = AppendRequest::single(
        command_id,
        job.clone(),
        Expected::NO_STREAM,
        vec![submitted(&job), pending(JobStarted {})],
    );
    let first = log.append(request.clone()).await.unwrap();
    let end = log.last_position().await.unwrap();
    let again = log.append(request).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.events, first.events);
    assert_eq!(log.last_position().await.unwrap(), end);
}

/// A command that writes several streams lands whole or not at all.
pub async fn a_multi_stream_append_is_all_or_nothing(log: &impl EventLog) {
    let (a, b) = (job(), job());
    submit(log, &b).await;
    let end = log.last_position().await.unwrap();
    let both = |expected_b| AppendRequest {
        command_id: Uuid::new_v4(),
        writes: vec![
            StreamWrite {
                stream: a.clone(),
                expected: Expected::NO_STREAM,
                events: vec![submitted(&a)],
            },
            StreamWrite {
                stream: b.clone(),
                expected: expected_b,
                events: vec![pending(JobStarted {})],
            },
        ],
    };
    let err = log.append(both(Expected::NO_STREAM)).await.unwrap_err();
    assert!(matches!(err, LogError::VersionConflict { .. }), "{err:?}");
    assert_eq!(log.last_position().await.unwrap(), end);
    assert!(log.read_stream(&a, 1).await.unwrap().is_empty());
    let head = log.stream_head(&b).await.unwrap();
    let outcome = log.append(both(Expected::Head(head))).await.unwrap();
    assert_eq!(outcome.events.len(), 2);
    assert_eq!(outcome.events[1].position, outcome.events[0].position + 1);
}

/// Appends expecting nothing of a stream never conflict, and keep its chain whole.
pub async fn appends_expecting_any_head_never_conflict(log: &(impl EventLog + Clone + 'static)) {
    let agent = StreamId::new(Domain::Agent, Uuid::new_v4().simple().to_string()).unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|n| {
            let (log, agent) = (log.clone(), agent.clone());
            tokio::spawn(async move {
                log.append(AppendRequest::single(
                    Uuid::new_v4(),
                    agent.clone(),
                    Expected::Any,
                    vec![decision(agent.id(), n)],
                ))
                .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let events = log.read_stream(&agent, 1).await.unwrap();
    assert_eq!(events.len(), 20);
    for w in events.windows(2) {
        assert_eq!(
            w[1].envelope.prev_hash.as_deref(),
            Some(w[0].envelope.hash.as_str())
        );
    }
}

/// The whole log from a position, filtered, then live.
pub async fn reads_and_follows_the_whole_log(log: &impl EventLog) {
    let start = log.last_position().await.unwrap() + 1;
    let jobs: Vec<StreamId> = (0..3).map(|_| job()).collect();
    for j in &jobs {
        submit(log, j).await;
    }
    let positions = |items: Vec<Result<Stored, LogError>>| -> Vec<u64> {
        items.into_iter().map(|s| s.unwrap().position()).collect()
    };
    let all = positions(log.read_from(start, None).await.unwrap().collect().await);
    assert_eq!(all, vec![start, start + 1, start + 2]);
    let one = positions(
        log.read_from(start, Some(&jobs[1].to_string()))
            .await
            .unwrap()
            .collect()
            .await,
    );
    assert_eq!(one, vec![start + 1]);
    let mut live = log.follow(start + 1, &["job.*"]).await.unwrap();
    assert_eq!(live.next().await.unwrap().unwrap().position(), start + 1);
    assert_eq!(live.next().await.unwrap().unwrap().position(), start + 2);
    let late = job();
    submit(log, &late).await;
    let next = tokio::time::timeout(std::time::Duration::from_secs(5), live.next())
        .await
        .expect("a live follower sees a new event")
        .unwrap()
        .unwrap()
        .event()
        .unwrap();
    assert_eq!((next.position, next.envelope.stream), (start + 3, late));
}

/// Junk and a genuine message published again are stepped over by every reader; the
/// stream goes on from its last event, at the last message's position.
pub async fn foreign_messages_are_stepped_over(log: &impl Tamper) {
    let job = job();
    let first = submit(log, &job).await;
    let junk = log.publish_junk(&job).await;
    let copy = log.republish(first.events[0].position).await;
    let read = log
        .read_stream_after(&job, &StreamHead::EMPTY)
        .await
        .unwrap();
    assert_eq!(read.events.len(), 1);
    assert_eq!(read.head.version, 1);
    assert_eq!(read.head.position, copy);
    assert_eq!(
        read.head.hash.as_deref(),
        Some(first.events[0].hash.as_str())
    );
    assert_eq!(log.stream_head(&job).await.unwrap(), read.head);
    let whole: Vec<Stored> = log
        .read_from(first.events[0].position, None)
        .await
        .unwrap()
        .map(|s| s.unwrap())
        .collect()
        .await;
    assert!(matches!(&whole[1], Stored::Foreign(f) if f.position == junk));
    let started = log
        .append(AppendRequest::single(
            Uuid::new_v4(),
            job.clone(),
            Expected::Head(read.head),
            vec![pending(JobStarted {})],
        ))
        .await
        .unwrap();
    assert_eq!(started.events[0].version, 2);
    let events = log.read_stream(&job, 1).await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[1].envelope.prev_hash.as_deref(),
        Some(first.events[0].hash.as_str())
    );
}

/// Streams of every length around the reader's short-read limit (32), written by single
/// appends, atomic batches and appends at any head, with other streams between and junk
/// and genuine events published again after them: read cold (and after a head in the
/// middle), each gives exactly its events, whichever way the log reads them.
pub async fn streams_read_the_same_at_every_length(log: &impl Tamper) {
    for len in [1usize, 2, 7, 31, 32, 33, 34, 40] {
        let agent = StreamId::new(Domain::Agent, Uuid::new_v4().simple().to_string()).unwrap();
        let other = job();
        submit(log, &other).await;
        let mut written = 0;
        let mut head = StreamHead::EMPTY;
        while written < len {
            // By turns: one event at the known head, a batch of three, one at any head.
            let (n, expected) = match written % 3 {
                0 => (1, Expected::Head(head.clone())),
                1 => ((len - written).min(3), Expected::Head(head.clone())),
                _ => (1, Expected::Any),
            };
            let expected = if written == 0 {
                Expected::NO_STREAM
            } else {
                expected
            };
            let events = (0..n).map(|i| decision(agent.id(), written + i)).collect();
            let outcome = log
                .append(AppendRequest::single(
                    Uuid::new_v4(),
                    agent.clone(),
                    expected,
                    events,
                ))
                .await
                .unwrap();
            head = outcome.head_of(&agent).unwrap();
            written += n;
            // Another stream's event between.
            log.append(AppendRequest::single(
                Uuid::new_v4(),
                other.clone(),
                Expected::Any,
                vec![pending(JobStarted {})],
            ))
            .await
            .unwrap();
        }
        let truth = log.read_stream(&agent, 1).await.unwrap();
        assert_eq!(truth.len(), len);
        // One message by its position: this stream's event, or nothing past the end.
        match log.stored_at(truth[len - 1].position).await.unwrap() {
            Some(Stored::Event(e)) => assert_eq!(e.envelope.hash, truth[len - 1].envelope.hash),
            other => panic!("{other:?}"),
        }
        let end = log.last_position().await.unwrap();
        assert!(log.stored_at(end + 1).await.unwrap().is_none());
        // Untouched, read cold (back from its last message when short enough).
        let clean = log
            .read_stream_after(&agent, &StreamHead::EMPTY)
            .await
            .unwrap();
        assert_eq!(clean.head, StreamHead::of(&truth[len - 1]), "length {len}");
        assert_eq!(clean.events.len(), len);
        // Published after it: junk, a genuine middle event again, the last one again.
        log.publish_junk(&agent).await;
        log.republish(truth[len / 2].position).await;
        let copy = log.republish(truth[len - 1].position).await;
        let read = log
            .read_stream_after(&agent, &StreamHead::EMPTY)
            .await
            .unwrap();
        assert_eq!(read.events.len(), len, "length {len}");
        for (a, b) in read.events.iter().zip(&truth) {
            assert_eq!(
                (a.position, a.version),
                (b.position, b.version),
                "length {len}"
            );
            assert_eq!(a.envelope.hash, b.envelope.hash);
        }
        assert_eq!(read.head.version, len as u64);
        assert_eq!(
            read.head.position, copy,
            "the head stands past what was stepped over"
        );
        let middle = StreamHead::of(&truth[len / 2]);
        let rest = log.read_stream_after(&agent, &middle).await.unwrap();
        assert_eq!(
            rest.events.len(),
            len - len / 2 - 1,
            "after the middle, length {len}"
        );
        assert_eq!(rest.head.version, len as u64);
    }
}

/// Malformed appends are refused before anything is written.
pub async fn bad_appends_are_refused(log: &impl EventLog) {
    let job = job();
    let user = StreamId::new(Domain::User, "u").unwrap();
    let end = log.last_position().await.unwrap();
    for request in [
        AppendRequest {
            command_id: Uuid::new_v4(),
            writes: vec![],
        },
        AppendRequest::single(Uuid::new_v4(), job.clone(), Expected::NO_STREAM, vec![]),
        AppendRequest::single(
            Uuid::new_v4(),
            user.clone(),
            Expected::NO_STREAM,
            vec![submitted(&job)],
        ),
        AppendRequest {
            command_id: Uuid::new_v4(),
            writes: vec![
                StreamWrite {
                    stream: job.clone(),
                    expected: Expected::NO_STREAM,
                    events: vec![submitted(&job)],
                },
                StreamWrite {
                    stream: job.clone(),
                    expected: Expected::NO_STREAM,
                    events: vec![submitted(&job)],
                },
            ],
        },
    ] {
        let err = log.append(request).await.unwrap_err();
        assert!(matches!(err, LogError::Invalid(_)), "{err:?}");
    }
    assert_eq!(log.last_position().await.unwrap(), end);
}
