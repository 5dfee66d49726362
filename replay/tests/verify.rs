//! Verify against a real nats-server: a clean log passes; a message published straight
//! onto a job's subject, bypassing Chronicle, is found and located.

use bytes::Bytes;
use chronicle_events::domain::job::{JobCompleted, JobStarted, JobSubmitted};
use chronicle_events::jetstream::VERSION_HEADER;
use chronicle_events::{
    Actor, AppendRequest, Domain, EventLog, Expected, JetStreamLog, PendingEvent, StreamId,
};
use chronicle_replay::seal::SealKey;
use chronicle_replay::{BreakKind, verify_log};
use uuid::Uuid;

use chronicle_testkit::isolated_log;

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

async fn rows(db: &tokio_postgres::Client, query: &str) -> Vec<String> {
    db.query(query, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
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
    let js = log.jetstream().clone();
    let publish = |version: u64, auth: Option<(String, String)>, payload: Vec<u8>| {
        let (js, subject) = (js.clone(), subject.clone());
        async move {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(VERSION_HEADER, version.to_string().as_str());
            if let Some((a, p)) = auth {
                headers.insert(chronicle_events::auth::AUTH_HEADER, a.as_str());
                headers.insert(chronicle_events::auth::PREV_HEADER, p.as_str());
            }
            js.publish_with_headers(subject, headers, Bytes::from(payload))
                .await
                .unwrap()
                .await
                .unwrap()
                .sequence
        }
    };

    // A forger who can publish and compute SHA-256: the next event of the job, with the
    // right prev_hash, a correct hash and the next version header. Only the event key,
    // which the forger does not have, tells it apart.
    let mut forged = serde_json::to_value(&events[1].envelope).unwrap();
    forged["id"] = Uuid::now_v7().to_string().into();
    forged["type"] = "JobCompleted".into();
    forged["data"] = serde_json::json!({"result": "paid"});
    forged["prev_hash"] = events[1].envelope.hash.clone().into();
    forged.as_object_mut().unwrap().remove("hash");
    forged["hash"] = chronicle_events::compute_hash(&forged).into();
    let forged_at = publish(3, None, chronicle_events::canonical_json(&forged)).await;
    // A message that is not an event at all.
    let junk = publish(3, None, b"not json".to_vec()).await;
    // A genuine event published again, its authentication copied along.
    let (raws, _) = log.read_raw_batch(1, &subject, 10).await.unwrap();
    let copied = publish(
        1,
        raws[0].auth.clone().zip(raws[0].prev.clone()),
        raws[0].payload.to_vec(),
    )
    .await;
    // Chronicle goes on: the next event links to the last genuine one.
    let head = log.stream_head(target).await.unwrap();
    assert_eq!(head.version, 2);
    log.append(AppendRequest::single(
        Uuid::new_v4(),
        target.clone(),
        Expected::Head(head),
        vec![PendingEvent::new(
            JobCompleted {
                result: serde_json::json!({"pages": 3}),
            },
            Actor::user("alice"),
            Uuid::new_v4(),
        )],
    ))
    .await
    .unwrap();

    let report = verify_log(&log, 1, None, None, &|_, _| {}).await.unwrap();
    assert!(!report.ok);
    assert!(report.authentication.checked);
    assert_eq!(
        report.authentication.unauthenticated, 2,
        "{:?}",
        report.broken_chains
    );
    let found: Vec<(u64, BreakKind)> = report
        .broken_chains
        .iter()
        .map(|b| (b.position, b.kind.clone()))
        .collect();
    assert!(
        found.contains(&(forged_at, BreakKind::Unauthenticated)),
        "{found:?}"
    );
    assert!(
        found.contains(&(junk, BreakKind::Unauthenticated)),
        "{found:?}"
    );
    assert!(
        found.contains(&(copied, BreakKind::BrokenLink)),
        "the copy is authenticated but out of place: {found:?}"
    );
    assert_eq!(found.len(), 4, "and nothing else: {found:?}");
    assert!(report.broken_chains.iter().all(|b| b.subject == subject));

    // The sealer records what it cannot vouch for, in the signed seal.
    let key = SealKey::from_seed(&[0x5a; 32]);
    let mut db = chronicle_testkit::connect(&chronicle_testkit::fresh_database().await).await;
    chronicle_projections::migrate::run(&mut db).await.unwrap();
    chronicle_replay::sealer::seal_now(&log, &mut db, &key)
        .await
        .unwrap()
        .unwrap();
    let tip = chronicle_replay::sealer::seal_tip(&log).await.unwrap();
    let seals = log
        .read_stream(&chronicle_replay::sealer::seal_stream(), 1)
        .await
        .unwrap();
    match seals[0].decode().unwrap() {
        chronicle_events::Event::Seal(chronicle_events::domain::SealEvent::SealRecorded(s)) => {
            assert_eq!(s.unauthenticated, vec![forged_at, junk]);
        }
        other => panic!("{other:?}"),
    }
    let report = verify_log(&log, 1, None, Some(key.public()), &|_, _| {})
        .await
        .unwrap();
    assert!(report.seals.ok, "{:?}", report.broken_chains);
    assert!(!report.ok, "the forgeries are still reported");

    // A seal that hides an unauthenticated message is itself a break.
    publish(4, None, b"more junk".to_vec()).await;
    let end = log.last_position().await.unwrap();
    let mut tree = chronicle_replay::tree::Keeper::load(&log, &mut db, key.public())
        .await
        .unwrap();
    assert_eq!(tree.extend(&log, &mut db).await.unwrap(), end);
    let hiding = key.checkpoint_seal(
        tip.sealed_to + 1,
        end,
        tree.root(),
        tip.prev_seal.clone(),
        vec![],
        &chronicle_replay::tree::origin(&log),
    );
    log.append(AppendRequest::single(
        Uuid::new_v4(),
        chronicle_replay::sealer::seal_stream(),
        Expected::Head(tip.head),
        vec![PendingEvent::new(
            hiding,
            Actor::system("sealer"),
            Uuid::new_v4(),
        )],
    ))
    .await
    .unwrap();
    let report = verify_log(&log, 1, None, Some(key.public()), &|_, _| {})
        .await
        .unwrap();
    assert!(!report.seals.ok);
    assert!(
        report
            .broken_chains
            .iter()
            .any(|b| b.kind == BreakKind::BadSeal && b.detail.contains("unauthenticated")),
        "{:?}",
        report.broken_chains
    );

    // The tree grown from a projector process's shared reader (as the sealer grows it
    // beside the projections) is the tree read on its own: the same root, tiles,
    // unauthenticated positions and checkpoints, over forged, junk and copied messages.
    let end = log.last_position().await.unwrap();
    let mut own = chronicle_replay::tree::Keeper::load(&log, &mut db, key.public())
        .await
        .unwrap();
    own.extend(&log, &mut db).await.unwrap();
    let mut fed_db = chronicle_testkit::connect(&chronicle_testkit::fresh_database().await).await;
    chronicle_projections::migrate::run(&mut fed_db)
        .await
        .unwrap();
    let mut fed = chronicle_replay::tree::Keeper::load(&log, &mut fed_db, key.public())
        .await
        .unwrap();
    let feed = chronicle_projections::feed::SharedFeed::new(std::sync::Arc::new(log.clone()));
    let mut items = feed.follow(1).await.unwrap();
    let wait = std::time::Duration::from_secs(10);
    assert!(
        fed.extend_from(&mut items, end, wait, &mut fed_db)
            .await
            .unwrap()
    );
    assert_eq!((fed.size(), fed.root()), (end, own.root()));
    for query in [
        "SELECT position::text FROM audit.unauthenticated ORDER BY position",
        "SELECT size || encode(root, 'hex') || note FROM audit.checkpoints ORDER BY size",
        "SELECT level || ':' || idx || encode(hashes, 'hex') FROM audit.tree_tiles \
         ORDER BY level, idx",
        "SELECT size || encode(root, 'hex') FROM audit.tree",
    ] {
        let (a, b) = (rows(&db, query).await, rows(&fed_db, query).await);
        assert!(!a.is_empty(), "{query}");
        assert_eq!(a, b, "{query}");
    }
    // A position the reader does not bring (here: not yet written) is waited for only so
    // long; the sealer then reads on its own.
    let short = std::time::Duration::from_millis(200);
    assert!(
        !fed.extend_from(&mut items, end + 1, short, &mut fed_db)
            .await
            .unwrap()
    );
    assert_eq!(fed.size(), end);
}
