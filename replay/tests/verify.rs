//! Verify against a real nats-server: a clean log passes; a message published straight
//! onto a job's subject, bypassing Chronicle, is found and located.

use bytes::Bytes;
use chronicle_events::domain::job::{JobStarted, JobSubmitted};
use chronicle_events::jetstream::VERSION_HEADER;
use chronicle_events::{
    Actor, AppendRequest, Domain, EventLog, Expected, JetStreamLog, LogConfig, PendingEvent,
    StreamId,
};
use chronicle_replay::{BreakKind, verify_log};
use uuid::Uuid;

async fn isolated_log() -> JetStreamLog {
    let url = std::env::var("NATS_URL").expect("NATS_URL is not set: run scripts/test");
    let tag = Uuid::new_v4().simple().to_string();
    JetStreamLog::connect(
        &url,
        LogConfig {
            stream_name: format!("V{tag}"),
            subject_prefix: format!("v{tag}.ev"),
            ..LogConfig::default()
        },
    )
    .await
    .unwrap()
}

async fn some_jobs(log: &JetStreamLog, n: usize) -> Vec<StreamId> {
    let mut jobs = Vec::new();
    for i in 0..n {
        let job = StreamId::new(Domain::Job, format!("job-{i}")).unwrap();
        let actor = Actor::user("alice");
        log.append(AppendRequest::single(
            Uuid::new_v4(),
            job.clone(),
            Expected::NO_STREAM,
            vec![
                PendingEvent::new(
                    JobSubmitted {
                        job_id: job.id().into(),
                        agent_id: "a".into(),
                        kind: "k".into(),
                        input: serde_json::json!({}),
                    },
                    actor.clone(),
                    Uuid::new_v4(),
                ),
                PendingEvent::new(JobStarted {}, actor, Uuid::new_v4()),
            ],
        ))
        .await
        .unwrap();
        jobs.push(job);
    }
    jobs
}

#[tokio::test]
async fn a_clean_log_verifies() {
    let log = isolated_log().await;
    some_jobs(&log, 5).await;
    let report = verify_log(&log, 1, None, None, &|_, _| {}).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.checked, 10);
    assert_eq!(
        (report.first_position, report.last_position),
        (Some(1), Some(10))
    );
    // A range in the middle checks what it can: hashes, and links within the range.
    let report = verify_log(&log, 4, Some(8), None, &|_, _| {})
        .await
        .unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.checked, 5);
}

#[tokio::test]
async fn a_message_published_straight_to_a_subject_is_found() {
    let log = isolated_log().await;
    let jobs = some_jobs(&log, 3).await;
    let target = &jobs[1];
    let subject = target.subject(&log.config().subject_prefix);
    let events = log.read_stream(target, 1).await.unwrap();

    // A forger copies the last event, marks the job completed and even recomputes the
    // hash, but over a made-up previous hash: the link does not hold.
    let mut forged = serde_json::to_value(&events[1].envelope).unwrap();
    forged["type"] = "JobCompleted".into();
    forged["data"] = serde_json::json!({"result": "paid"});
    forged["prev_hash"] = "00".repeat(32).into();
    forged["hash"] = chronicle_events::compute_hash(&forged).into();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(VERSION_HEADER, "3");
    let client = log.client().clone();
    let js = async_nats::jetstream::new(client.clone());
    let ack = js
        .publish_with_headers(
            subject.clone(),
            headers,
            Bytes::from(chronicle_events::canonical_json(&forged)),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    // And a message that is not an event at all.
    let junk = js
        .publish(subject.clone(), Bytes::from_static(b"not json"))
        .await
        .unwrap()
        .await
        .unwrap();

    let report = verify_log(&log, 1, None, None, &|_, _| {}).await.unwrap();
    assert!(!report.ok);
    let found: Vec<(u64, BreakKind)> = report
        .broken_chains
        .iter()
        .map(|b| (b.position, b.kind.clone()))
        .collect();
    assert!(
        found.contains(&(ack.sequence, BreakKind::BrokenLink)),
        "{found:?}"
    );
    assert!(
        found.contains(&(junk.sequence, BreakKind::Undecodable)),
        "{found:?}"
    );
    assert!(report.broken_chains.iter().all(|b| b.subject == subject));
}
