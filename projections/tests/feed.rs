//! The shared log reader of a projector process, against a real nats-server: every
//! follower gets every position once, in order, wherever it starts and however slowly it
//! reads, and those caught up share one reader.

use std::sync::Arc;
use std::time::Duration;

use chronicle_events::domain::job::JobSubmitted;
use chronicle_events::{
    Actor, AppendRequest, Domain, EventLog, Expected, JetStreamLog, PendingEvent, StreamId,
};
use chronicle_projections::feed::SharedFeed;
use chronicle_testkit::isolated_log;
use futures::StreamExt;
use uuid::Uuid;

async fn append(log: &JetStreamLog, n: usize) {
    for _ in 0..n {
        let job = StreamId::new(Domain::Job, Uuid::new_v4().simple().to_string()).unwrap();
        log.append(AppendRequest::single(
            Uuid::new_v4(),
            job.clone(),
            Expected::NO_STREAM,
            vec![PendingEvent::new(
                JobSubmitted {
                    job_id: job.id().into(),
                    agent_id: "a".into(),
                    kind: "k".into(),
                    input: serde_json::json!({}),
                },
                Actor::user("feed"),
                Uuid::new_v4(),
            )],
        ))
        .await
        .unwrap();
    }
}

/// Takes positions from `feed` until `end`; they must be `from..=end`, each once, in order.
async fn take_to(feed: &mut chronicle_events::LogStream, from: u64, end: u64) {
    let mut expected = from;
    while expected <= end {
        let item = tokio::time::timeout(Duration::from_secs(10), feed.next())
            .await
            .unwrap_or_else(|_| panic!("no position {expected} within 10 s"))
            .unwrap()
            .unwrap();
        assert_eq!(item.position(), expected, "positions in order, once each");
        expected += 1;
    }
}

#[tokio::test]
async fn followers_from_anywhere_get_every_position_once_and_share_one_reader_once_caught_up() {
    let log = isolated_log().await;
    append(&log, 30).await;
    // A ring of 8: a follower more than 8 events behind reads on its own.
    let feed = SharedFeed::with_ring(Arc::new(log.clone()) as Arc<dyn EventLog>, 8);
    let mut followers = Vec::new();
    for from in [1u64, 10, 25, 31] {
        followers.push((from, feed.follow(from).await.unwrap()));
    }
    // Appends meanwhile, while some followers are still reading history.
    let writer = {
        let log = log.clone();
        tokio::spawn(async move { append(&log, 40).await })
    };
    for (from, f) in followers.iter_mut() {
        take_to(f, *from, 35).await;
    }
    writer.await.unwrap();
    let end = log.last_position().await.unwrap();
    assert_eq!(end, 70);
    for (_, f) in followers.iter_mut() {
        take_to(f, 36, end).await;
    }
    // Caught up: nobody reads on their own; more events, written while they read, come
    // through the one reader, however far into the ring each follower is.
    assert_eq!(feed.own_readers(), 0);
    let started = feed.own_reads();
    let writer = {
        let log = log.clone();
        tokio::spawn(async move { append(&log, 5).await })
    };
    for (_, f) in followers.iter_mut() {
        take_to(f, end + 1, end + 5).await;
    }
    writer.await.unwrap();
    assert_eq!(feed.own_readers(), 0);
    assert_eq!(
        feed.own_reads(),
        started,
        "no follower read on its own once caught up"
    );

    // A follower that stops reading while 50 events pass (more than the ring holds) is
    // told it lagged, reads on its own from where it was, and misses nothing.
    let mut slow = feed.follow(end + 6).await.unwrap();
    let mut fast = feed.follow(end + 6).await.unwrap();
    append(&log, 50).await;
    take_to(&mut fast, end + 6, end + 55).await;
    take_to(&mut slow, end + 6, end + 55).await;
    append(&log, 3).await;
    take_to(&mut slow, end + 56, end + 58).await;
    take_to(&mut fast, end + 56, end + 58).await;
    assert_eq!(feed.own_readers(), 0);
    // The slow one (and the other, read only after the 50 were written) lagged past the
    // ring of 8 and read on their own, then came back to the one reader.
    assert!(feed.own_reads() > started);
    assert!(feed.own_reads() <= started + 2);
}
