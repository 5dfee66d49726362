//! Aggregate snapshots against real NATS: written every N events, used by a process that
//! has not cached the aggregate, and ignored when they are not Chronicle's own, not the
//! log's, or of another schema.

mod support;

use bytes::Bytes;
use chronicle_events::{Domain, Keyring, StreamId};
use serde_json::{Value, json};
use support::{App, database_url};

/// An app that snapshots every 5 events.
async fn app() -> App {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let mut settings = support::settings_for(
        &format!("T{tag}"),
        &format!("t{}.ev", &tag[..12]),
        &database_url(),
    );
    settings.snapshot_every = 5;
    App::start_with(settings).await
}

/// Submit, then `cycles` × (start, fail, retry): 1 + 3 × cycles events.
async fn cycle(app: &App, job: &str, cycles: usize) {
    let a = app
        .post(
            "/v1/commands/jobs",
            &app.admin,
            json!({"job_id": job, "agent_id": "a", "kind": "k"}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    for _ in 0..cycles {
        for (step, body) in [
            ("start", json!({})),
            ("fail", json!({"error": "e"})),
            ("retry", json!({})),
        ] {
            let a = app
                .post(&format!("/v1/commands/jobs/{job}/{step}"), &app.admin, body)
                .await;
            assert_eq!(a.status, 200, "{step}: {}", a.body);
        }
    }
}

async fn bucket(app: &App) -> async_nats::jetstream::kv::Store {
    app.state
        .log
        .jetstream()
        .get_key_value(format!("{}_SNAPSHOTS", app.stream))
        .await
        .unwrap()
}

/// The stored snapshot of `job`: its JSON record.
async fn snapshot(app: &App, job: &str) -> Option<Value> {
    let key = chronicle_commands::handler::snapshot::key(&StreamId::new(Domain::Job, job).unwrap());
    for _ in 0..100 {
        if let Some(v) = bucket(app).await.get(&key).await.unwrap() {
            let split = v.iter().position(|b| *b == b'\n').unwrap();
            return Some(serde_json::from_slice(&v[split + 1..]).unwrap());
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    None
}

/// Puts `record` as `job`'s snapshot, tagged with `key`.
async fn put(app: &App, job: &str, record: &Value, key: &Keyring) {
    let k = chronicle_commands::handler::snapshot::key(&StreamId::new(Domain::Job, job).unwrap());
    let data = serde_json::to_vec(record).unwrap();
    let tag = key.tag(&chronicle_events::snapshots::context(&k), &data);
    let mut v = tag.into_bytes();
    v.push(b'\n');
    v.extend_from_slice(&data);
    bucket(app).await.put(&k, Bytes::from(v)).await.unwrap();
}

/// What a probe does to a snapshot record.
type Spoil = Box<dyn Fn(&mut Value)>;

/// Waits for `job`'s snapshot at `version`.
async fn snapshot_at(app: &App, job: &str, version: u64) -> Value {
    for _ in 0..200 {
        if let Some(r) = snapshot(app, job).await
            && r["version"] == version
        {
            return r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no snapshot of {job} at version {version}");
}

#[tokio::test]
async fn a_process_without_the_aggregate_starts_from_its_snapshot_and_only_if_it_is_sound() {
    let app = app().await;
    let keyring = chronicle_testkit::keyring();
    // 1 + 3 × 3 = 10 events: snapshots at versions 5 and 10; the job is PENDING.
    cycle(&app, "s-0", 3).await;
    let record = snapshot_at(&app, "s-0", 10).await;
    assert_eq!(record["state"]["status"], "PENDING", "{record}");

    // A snapshot is used: one saying (tagged by the event key, at the true head) that the
    // job is RUNNING makes a process that has not cached it refuse to start it.
    let mut running = record.clone();
    running["state"]["status"] = json!("RUNNING");
    put(&app, "s-0", &running, &keyring).await;
    let peer = app.peer().await;
    let a = peer
        .post("/v1/commands/jobs/s-0/start", &peer.admin, json!({}))
        .await;
    assert_eq!(a.status, 409, "{}", a.body);
    assert_eq!(a.body["code"], "INVALID_TRANSITION");

    // Not Chronicle's (another key's tag), not the log's (another hash at its position), or
    // of another schema: each is ignored, the stream is read whole, and the start is
    // accepted at the log's version.
    let other = Keyring::new(&[9; 32], &[]);
    let probes: [(&str, Spoil, &Keyring); 3] = [
        ("s-1", Box::new(|_| {}), &other),
        (
            "s-2",
            Box::new(|r| r["hash"] = json!("00".repeat(32))),
            &keyring,
        ),
        ("s-3", Box::new(|r| r["schema"] = json!(999)), &keyring),
    ];
    for (job, spoil, key) in probes {
        cycle(&app, job, 3).await;
        let mut bad = snapshot_at(&app, job, 10).await;
        bad["state"]["status"] = json!("RUNNING");
        spoil(&mut bad);
        put(&app, job, &bad, key).await;
        let fresh = app.peer().await;
        let a = fresh
            .post(
                &format!("/v1/commands/jobs/{job}/start"),
                &fresh.admin,
                json!({}),
            )
            .await;
        assert_eq!(a.status, 200, "{job}: {}", a.body);
        assert_eq!(a.body["version"], 11, "{job}: {}", a.body);
    }
}
