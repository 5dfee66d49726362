//! Faults under load: Postgres stopped and started again while commands keep coming.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chronicle_api::dev;
use serde_json::json;
use support::App;
use uuid::Uuid;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn postgres_restarted_under_load_loses_nothing() {
    // A Postgres of this test's own, so that stopping it disturbs no other test.
    let dir = tempfile::tempdir().unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let port = free_port();
    let mut pg = dev::start_postgres(dir.path(), port).unwrap();
    let db = dev::ensure_database(port).await.unwrap();

    let tag = Uuid::new_v4().simple().to_string();
    let settings = support::settings_for(&format!("T{tag}"), &format!("t{}.ev", &tag[..12]), &db);
    chronicle_api::server::migrate(&settings).await.unwrap();
    let mut app = App::start_with(settings).await;
    app.start_projectors().await;
    let app = Arc::new(app);

    let accepted = Arc::new(AtomicU64::new(0));
    let unavailable = Arc::new(AtomicU64::new(0));
    let kind = Uuid::new_v4().simple().to_string();
    let load = {
        let (app, accepted, unavailable, kind) = (
            app.clone(),
            accepted.clone(),
            unavailable.clone(),
            kind.clone(),
        );
        tokio::spawn(async move {
            let mut last = 0;
            for i in 0..300 {
                let a = app
                    .post(
                        "/v1/commands/jobs",
                        &app.admin,
                        json!({"agent_id": "a", "kind": kind, "input": i}),
                    )
                    .await;
                assert_eq!(a.status, 201, "commands do not need Postgres: {}", a.body);
                accepted.fetch_add(1, Ordering::SeqCst);
                last = a.body["position"].as_u64().unwrap();
                let q = app.get("/v1/queries/jobs?limit=1", &app.admin, None).await;
                match q.status.as_u16() {
                    200 => {}
                    503 => {
                        assert_eq!(q.body["code"], "READ_STORE_UNAVAILABLE");
                        unavailable.fetch_add(1, Ordering::SeqCst);
                    }
                    other => panic!("query answered {other}: {}", q.body),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            last
        })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    pg.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _pg = dev::start_postgres(dir.path(), port).unwrap();
    let last = load.await.unwrap();

    assert!(
        unavailable.load(Ordering::SeqCst) > 0,
        "queries saw Postgres away"
    );
    // The projectors resume from their checkpoints and catch up exactly.
    let q = app
        .get(
            &format!("/v1/queries/jobs?kind={kind}&limit=1000"),
            &app.admin,
            Some(last),
        )
        .await;
    assert_eq!(q.status, 200, "{}", q.body);
    let items = q.body["items"].as_array().unwrap();
    assert_eq!(items.len() as u64, accepted.load(Ordering::SeqCst));
    let inputs: std::collections::BTreeSet<i64> =
        items.iter().map(|j| j["input"].as_i64().unwrap()).collect();
    assert_eq!(
        inputs.len(),
        300,
        "every accepted command is in the read model once"
    );
}

#[tokio::test]
async fn nats_restarted_under_load_loses_no_acknowledged_command() {
    // A nats-server of this test's own, so that stopping it disturbs no other test.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut nats = dev::start_nats(dir.path(), port).unwrap();
    let tag = Uuid::new_v4().simple().to_string();
    let mut settings = support::settings_for(
        &format!("T{tag}"),
        &format!("t{}.ev", &tag[..12]),
        &support::database_url(),
    );
    settings.nats_url = Some(format!("nats://127.0.0.1:{port}"));
    let app = Arc::new(App::start_with(settings).await);

    let kind = Uuid::new_v4().simple().to_string();
    let load = {
        let (app, kind) = (app.clone(), kind.clone());
        tokio::spawn(async move {
            let mut accepted = Vec::new();
            let mut unavailable = 0;
            let started = std::time::Instant::now();
            let mut i = 0;
            while started.elapsed() < Duration::from_secs(10) {
                i += 1;
                let a = app
                    .post(
                        "/v1/commands/jobs",
                        &app.admin,
                        json!({"agent_id": "a", "kind": kind, "input": i}),
                    )
                    .await;
                match a.status.as_u16() {
                    201 => accepted.push(a.body["stream"].as_str().unwrap().to_owned()),
                    503 => {
                        assert_eq!(a.body["code"], "LOG_UNAVAILABLE", "{}", a.body);
                        assert!(a.headers.contains_key("retry-after"));
                        unavailable += 1;
                    }
                    other => panic!("{other}: {}", a.body),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (accepted, unavailable)
        })
    };
    tokio::time::sleep(Duration::from_millis(1000)).await;
    nats.stop();
    tokio::time::sleep(Duration::from_millis(4000)).await;
    let _nats = dev::start_nats(dir.path(), port).unwrap();
    let (accepted, unavailable) = load.await.unwrap();
    assert!(unavailable > 0, "commands saw the log away");
    let after = accepted.len();
    assert!(after > 0);

    // Every acknowledged command is in the log, once.
    use chronicle_events::EventLog;
    let mut seen = std::collections::HashMap::new();
    let mut events = app.state.log.read_from(1, Some("job.*")).await.unwrap();
    use futures::StreamExt;
    while let Some(e) = events.next().await {
        let Some(e) = e.unwrap().event() else {
            continue;
        };
        if e.envelope.data["kind"] == kind.as_str() {
            *seen.entry(e.envelope.stream.to_string()).or_insert(0) += 1;
        }
    }
    for stream in &accepted {
        assert_eq!(
            seen.get(stream),
            Some(&1),
            "{stream} acknowledged but not in the log once"
        );
    }
    // And the client reconnected: the last commands were accepted after the restart.
    let a = app
        .post(
            "/v1/commands/jobs",
            &app.admin,
            json!({"agent_id": "a", "kind": kind}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
}

#[tokio::test]
async fn sigterm_under_load_loses_no_acknowledged_command_and_exits_0() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    let tag = Uuid::new_v4().simple().to_string();
    let (stream, prefix) = (format!("T{tag}"), format!("t{}.ev", &tag[..12]));
    let settings = support::settings_for(&stream, &prefix, &support::database_url());
    let state = chronicle_api::server::connect(&settings).await.unwrap();
    let admin = chronicle_api::server::issue_token(
        &state,
        "root",
        chronicle_events::domain::user::Role::Admin,
        None,
    )
    .await
    .unwrap();
    let port = free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .arg("serve")
        .env("NATS_URL", settings.nats_url.clone().unwrap())
        .env("DATABASE_URL", support::database_url())
        .env("CHRONICLE_STREAM", &stream)
        .env("CHRONICLE_SUBJECT_PREFIX", &prefix)
        .env("CHRONICLE_SIGNING_KEY", support::SIGNING_KEY)
        .env("CHRONICLE_EVENT_KEY", support::EVENT_KEY)
        .env("CHRONICLE_LISTEN", format!("127.0.0.1:{port}"))
        .env("CHRONICLE_RATE_LIMIT", "100000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if http.get(format!("{base}/health/live")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let kind = Uuid::new_v4().simple().to_string();
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (http, base, admin, kind) =
                (http.clone(), base.clone(), admin.clone(), kind.clone());
            tokio::spawn(async move {
                let mut accepted = Vec::new();
                for i in 0..1000 {
                    let r = http
                        .post(format!("{base}/v1/commands/jobs"))
                        .bearer_auth(&admin)
                        .json(&json!({"agent_id": "a", "kind": kind, "input": [w, i]}))
                        .send()
                        .await;
                    let Ok(r) = r else { break }; // the server has stopped listening
                    if r.status() == 201 {
                        let body: serde_json::Value = r.json().await.unwrap();
                        accepted.push(body["stream"].as_str().unwrap().to_owned());
                    } else {
                        assert!(
                            r.status().is_server_error() || r.status() == 503,
                            "{}",
                            r.status()
                        );
                    }
                }
                accepted
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let mut accepted = Vec::new();
    for w in workers {
        accepted.extend(w.await.unwrap());
    }
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(
        status.success(),
        "chronicle serve exits 0 on SIGTERM: {status}"
    );
    assert!(!accepted.is_empty());

    use chronicle_events::EventLog;
    for stream in &accepted {
        let id: chronicle_events::StreamId = stream.parse().unwrap();
        assert_eq!(
            state.log.read_stream(&id, 1).await.unwrap().len(),
            1,
            "{stream} was acknowledged: it is in the log once"
        );
    }
}
