//! Audit against real NATS: the history with every filter, state as of a time and a
//! position, verification (HTTP and CLI exit code) finding a forged message and bad
//! seals, and an export verified offline that fails once one byte changes.

mod support;

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use chronicle_events::jetstream::VERSION_HEADER;
use chronicle_events::{EventLog, StreamId};
use chronicle_replay::seal::SealKey;
use serde_json::{Value, json};
use support::{App, assert_problem};
use uuid::Uuid;

use chronicle_testkit::id;

fn ndjson(a: &support::Answer) -> Vec<Value> {
    match &a.body {
        // One line parses as plain JSON.
        Value::Object(_) => vec![a.body.clone()],
        Value::Null => vec![],
        other => other
            .as_str()
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
    }
}

async fn audit(app: &App, query: &str) -> support::Answer {
    app.send(
        app.http
            .get(format!("{}/v1/audit/events{query}", app.base))
            .bearer_auth(&app.admin),
    )
    .await
}

/// Runs `chronicle` against this app's stream, offline when `nats` is false.
fn chronicle(app: &App, args: &[&str], nats: bool) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chronicle"));
    cmd.args(args)
        .env("CHRONICLE_STREAM", &app.stream)
        .env("CHRONICLE_SUBJECT_PREFIX", &app.prefix)
        .env("CHRONICLE_SEAL_KEY", support::SEAL_KEY)
        .env("CHRONICLE_EVENT_KEY", support::EVENT_KEY)
        .env("DATABASE_URL", &app.database_url);
    if !nats {
        cmd.env_remove("NATS_URL").env_remove("DATABASE_URL");
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_history_reads_in_order_with_every_filter() {
    let app = App::start().await;
    let job = id();
    app.post(
        "/v1/commands/jobs",
        &app.admin,
        json!({"job_id": job, "agent_id": "a", "kind": "k"}),
    )
    .await;
    let before_start = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let started = app
        .post(
            &format!("/v1/commands/jobs/{job}/start"),
            &app.admin,
            json!({}),
        )
        .await;
    let other = id();
    app.post(
        "/v1/commands/jobs",
        &app.admin,
        json!({"job_id": other, "agent_id": "a", "kind": "k"}),
    )
    .await;

    let all = audit(&app, "").await;
    assert_eq!(all.status, 200);
    assert_eq!(all.headers["content-type"], "application/x-ndjson");
    let lines = ndjson(&all);
    let positions: Vec<u64> = lines
        .iter()
        .map(|l| l["position"].as_u64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "log order");
    assert!(
        lines
            .iter()
            .all(|l| l["hash"].is_string() && l["version"].is_u64())
    );

    let one = ndjson(&audit(&app, &format!("?stream=job.{job}")).await);
    let types: Vec<&str> = one.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert_eq!(types, vec!["JobSubmitted", "JobStarted"]);
    let jobs = ndjson(&audit(&app, "?stream=job.*&type=JobSubmitted").await);
    assert_eq!(jobs.len(), 2);
    let p = started.body["position"].as_u64().unwrap();
    let range = ndjson(&audit(&app, &format!("?from_position={p}&to_position={p}")).await);
    assert_eq!(range.len(), 1);
    assert_eq!(range[0]["type"], "JobStarted");
    let since = before_start.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let later = ndjson(
        &audit(
            &app,
            &format!("?stream=job.*&since={}", since.replace('+', "%2B")),
        )
        .await,
    );
    let types: Vec<&str> = later.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert_eq!(types, vec!["JobStarted", "JobSubmitted"]);
    let until = ndjson(
        &audit(
            &app,
            &format!("?stream=job.*&until={}", since.replace('+', "%2B")),
        )
        .await,
    );
    assert_eq!(until.len(), 1);

    for bad in [
        "?stream=job",
        "?type=Nope",
        "?from_position=x",
        "?since=monday",
        "?from_position=9&to_position=2",
        "?colour=red",
    ] {
        assert_problem(&audit(&app, bad).await, 400, "MALFORMED_REQUEST");
    }
    let (analyst, _) = app.token(&id(), "analyst").await;
    let a = app
        .send(
            app.http
                .get(format!("{}/v1/audit/events", app.base))
                .bearer_auth(&analyst),
        )
        .await;
    assert_problem(&a, 403, "FORBIDDEN");

    // The CLI reads the same history.
    let (code, out, err) = chronicle(
        &app,
        &[
            "replay",
            "events",
            "--stream",
            &format!("job.{job}"),
            "--format",
            "table",
        ],
        true,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("JobSubmitted") && out.contains("JobStarted"),
        "{out}"
    );
}

#[tokio::test]
async fn state_as_of_a_time_and_a_position() {
    let app = App::start().await;
    let job = id();
    let a = app
        .post(
            "/v1/commands/jobs",
            &app.admin,
            json!({"job_id": job, "agent_id": "a", "kind": "k"}),
        )
        .await;
    let submitted_at = a.body["position"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let between = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    app.post(
        &format!("/v1/commands/jobs/{job}/start"),
        &app.admin,
        json!({}),
    )
    .await;
    app.post(
        &format!("/v1/commands/jobs/{job}/complete"),
        &app.admin,
        json!({"result": 1}),
    )
    .await;

    let get = |q: String| {
        let url = format!("{}/v1/audit/streams/job/{job}/state{q}", app.base);
        app.send(app.http.get(url).bearer_auth(&app.admin))
    };
    let now = get(String::new()).await;
    assert_eq!(now.body["state"]["status"], "COMPLETED", "{}", now.body);
    assert_eq!(now.body["version"], 3);
    let at = get(format!("?at_position={submitted_at}")).await;
    assert_eq!(at.body["state"]["status"], "PENDING");
    assert_eq!(at.body["version"], 1);
    let t = between
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        .replace('+', "%2B");
    let then = get(format!("?as_of={t}")).await;
    assert_eq!(then.body["state"]["status"], "PENDING", "{}", then.body);
    let before = get("?as_of=2000-01-01T00:00:00Z".into()).await;
    assert_eq!(before.body["exists"], false);
    assert_problem(
        &get(format!("?as_of={t}&at_position=1")).await,
        400,
        "MALFORMED_REQUEST",
    );
    let none = app
        .send(
            app.http
                .get(format!("{}/v1/audit/streams/nope/x/state", app.base))
                .bearer_auth(&app.admin),
        )
        .await;
    assert_problem(&none, 404, "NOT_FOUND");

    let (code, out, err) = chronicle(
        &app,
        &[
            "replay",
            "state",
            &format!("job.{job}"),
            "--at-position",
            &submitted_at.to_string(),
        ],
        true,
    );
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["state"]["status"], "PENDING");
}

#[tokio::test]
async fn seals_verify_and_a_forged_message_or_seal_is_found() {
    let app = App::with_database().await;
    for _ in 0..5 {
        app.post(
            "/v1/commands/jobs",
            &app.admin,
            json!({"agent_id": "a", "kind": "k"}),
        )
        .await;
    }
    let key = SealKey::from_seed(&hex::decode(support::SEAL_KEY).unwrap().try_into().unwrap());
    app.seal().await.unwrap();
    app.post(
        "/v1/commands/jobs",
        &app.admin,
        json!({"agent_id": "a", "kind": "k"}),
    )
    .await;
    app.seal().await.unwrap();

    let verify = || {
        app.send(
            app.http
                .get(format!("{}/v1/audit/verify", app.base))
                .bearer_auth(&app.admin),
        )
    };
    let r = verify().await;
    assert_eq!(r.body["ok"], true, "{}", r.body);
    assert_eq!(r.body["seals"]["checked"], 2);
    assert_eq!(r.body["seals"]["ok"], true);
    let k = app
        .send(
            app.http
                .get(format!("{}/v1/audit/seal-key", app.base))
                .bearer_auth(&app.admin),
        )
        .await;
    assert_eq!(k.body["public_key"], key.public_hex());
    let (code, _, err) = chronicle(&app, &["replay", "verify"], true);
    assert_eq!(code, 0, "{err}");
    // Checked against another key, the seals fail.
    let other = SealKey::from_seed(&[9; 32]).public_hex();
    let (code, out, _) = chronicle(&app, &["replay", "verify", "--public-key", &other], true);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("bad_seal"), "{out}");

    // A message published straight onto a job's subject, bypassing Chronicle.
    let events = ndjson(&audit(&app, "?type=JobSubmitted").await);
    let stream: StreamId = events[0]["stream"].as_str().unwrap().parse().unwrap();
    let mut forged = events[0].clone();
    let obj = forged.as_object_mut().unwrap();
    obj.remove("position");
    obj.remove("version");
    forged["type"] = json!("JobCompleted");
    forged["data"] = json!({"result": "paid"});
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(VERSION_HEADER, "2");
    let js = app.state.log.jetstream();
    let forged_at = js
        .publish_with_headers(
            stream.subject(&app.prefix),
            headers,
            Bytes::from(forged.to_string()),
        )
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence;
    let r = verify().await;
    assert_eq!(r.body["ok"], false);
    let breaks = r.body["broken_chains"].as_array().unwrap();
    assert!(
        breaks.iter().any(|b| b["position"] == forged_at),
        "{}",
        r.body
    );
    let (code, _, _) = chronicle(&app, &["replay", "verify"], true);
    assert_eq!(code, 1, "the CLI exits 1 on a break");

    // A seal signed by another key over a wrong range, appended as if by Chronicle.
    let tip = chronicle_replay::sealer::seal_tip(&app.state.log)
        .await
        .unwrap();
    let bad = SealKey::from_seed(&[9; 32]).seal(
        tip.sealed_to + 1,
        forged_at,
        "00".repeat(32),
        tip.prev_seal.clone(),
        vec![],
    );
    app.state
        .log
        .append(chronicle_events::AppendRequest::single(
            Uuid::new_v4(),
            chronicle_replay::sealer::seal_stream(),
            chronicle_events::Expected::Head(tip.head),
            vec![chronicle_events::PendingEvent::new(
                bad,
                chronicle_events::Actor::system("mallory"),
                Uuid::new_v4(),
            )],
        ))
        .await
        .unwrap();
    let r = verify().await;
    assert_eq!(r.body["seals"]["ok"], false, "{}", r.body);
    assert!(
        r.body["broken_chains"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["kind"] == "bad_seal")
    );
    let _ = app.state.log.last_position().await;
}

#[tokio::test]
async fn an_export_verifies_offline_and_fails_once_one_byte_changes() {
    let app = App::with_database().await;
    for i in 0..20 {
        app.post(
            "/v1/commands/jobs",
            &app.admin,
            json!({"agent_id": "a", "kind": "k", "input": i}),
        )
        .await;
    }
    let (code, _, err) = chronicle(&app, &["replay", "seal"], true);
    assert_eq!(code, 0, "{err}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("history.ndjson");
    let (code, _, err) = chronicle(
        &app,
        &["replay", "export", "--out", file.to_str().unwrap()],
        true,
    );
    assert_eq!(code, 0, "{err}");

    let key = SealKey::from_seed(&hex::decode(support::SEAL_KEY).unwrap().try_into().unwrap())
        .public_hex();
    // Offline: no NATS_URL, only the file and the public key.
    let (code, out, err) = chronicle(
        &app,
        &[
            "replay",
            "verify",
            "--file",
            file.to_str().unwrap(),
            "--public-key",
            &key,
        ],
        false,
    );
    assert_eq!(code, 0, "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(
        report["report"]["checked"], 22,
        "the admin token, 20 jobs and the seal"
    );

    // One byte changed anywhere: in an event's data, or in the file's whitespace.
    let original = std::fs::read(&file).unwrap();
    let text = String::from_utf8(original.clone()).unwrap();
    for (what, changed) in [
        (
            "an amount",
            text.replacen("\"input\":7", "\"input\":8", 1).into_bytes(),
        ),
        ("a byte of JSON layout", {
            let mut b = original.clone();
            let i = text.find("\"subject\"").unwrap();
            b.insert(i, b' ');
            b.remove(i + 1);
            b
        }),
    ] {
        assert_ne!(changed, original, "{what}");
        let tampered = dir.path().join("tampered.ndjson");
        std::fs::write(&tampered, &changed).unwrap();
        let (code, out, err) = chronicle(
            &app,
            &[
                "replay",
                "verify",
                "--file",
                tampered.to_str().unwrap(),
                "--public-key",
                &key,
            ],
            false,
        );
        assert_ne!(code, 0, "{what} went unnoticed: {out}{err}");
    }
    // And the right file against the wrong key.
    let wrong = SealKey::from_seed(&[9; 32]).public_hex();
    let (code, _, _) = chronicle(
        &app,
        &[
            "replay",
            "verify",
            "--file",
            file.to_str().unwrap(),
            "--public-key",
            &wrong,
        ],
        false,
    );
    assert_eq!(code, 1);
}

#[tokio::test]
async fn filters_by_actor_command_and_correlation_return_exactly_the_matching_events() {
    let app = App::start().await;
    let (writer, _) = app.token("filter-writer", "writer").await;
    let correlation = Uuid::new_v4();
    let mut by_command = Vec::new();
    for (i, token) in [&app.admin, &writer, &writer, &app.admin]
        .into_iter()
        .enumerate()
    {
        let job = id();
        let mut request = app
            .http
            .post(format!("{}/v1/commands/jobs", app.base))
            .bearer_auth(token)
            .json(&json!({"job_id": job, "agent_id": "a", "kind": "k"}));
        if i >= 2 {
            request = request.header("X-Correlation-Id", correlation.to_string());
        }
        let a = app.send(request).await;
        assert_eq!(a.status, 201, "{}", a.body);
        by_command.push((
            a.body["command_id"].as_str().unwrap().to_owned(),
            a.body["position"].as_u64().unwrap(),
        ));
    }
    let positions = |a: &support::Answer| {
        ndjson(a)
            .iter()
            .map(|e| e["position"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    let writer_did = audit(&app, "?actor=filter-writer").await;
    assert_eq!(writer_did.status, 200);
    assert_eq!(positions(&writer_did), [by_command[1].1, by_command[2].1]);
    for e in ndjson(&writer_did) {
        assert_eq!(e["actor"]["id"], "filter-writer");
    }
    let one = audit(&app, &format!("?command_id={}", by_command[3].0)).await;
    assert_eq!(positions(&one), [by_command[3].1]);
    let caused = audit(&app, &format!("?correlation_id={correlation}")).await;
    assert_eq!(positions(&caused), [by_command[2].1, by_command[3].1]);
    let both = audit(&app, &format!("?correlation_id={correlation}&actor=root")).await;
    assert_eq!(
        positions(&both),
        [by_command[3].1],
        "filters combine with AND"
    );
    assert!(positions(&audit(&app, "?actor=nobody-at-all").await).is_empty());
    for (query, field) in [
        ("?command_id=not-a-uuid", "command_id"),
        ("?correlation_id=42", "correlation_id"),
        ("?actor=a%20b", "actor"),
    ] {
        let a = audit(&app, query).await;
        assert_problem(&a, 400, "MALFORMED_REQUEST");
        assert_eq!(a.body["errors"][0]["field"], field, "{query}: {}", a.body);
    }
    // The CLI takes the same filters.
    let (code, stdout, stderr) = chronicle(
        &app,
        &[
            "replay",
            "events",
            "--actor",
            "filter-writer",
            "--correlation-id",
            &correlation.to_string(),
        ],
        true,
    );
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["position"].as_u64().unwrap(), by_command[2].1);
}

/// A verification longer than the answer time (here: any) answers 200 at once and streams
/// its report, free of the request time limit; asked for as NDJSON it streams progress
/// lines, then the report.
#[tokio::test]
async fn a_long_verification_streams_its_report() {
    let tag = Uuid::new_v4().simple().to_string();
    let mut settings = support::settings_for(
        &format!("T{tag}"),
        &format!("t{}.ev", &tag[..12]),
        &chronicle_testkit::database_url(),
    );
    settings.verify_answer_within_ms = 0;
    let app = App::start_with(settings).await;
    for _ in 0..30 {
        let a = app
            .post(
                "/v1/commands/jobs",
                &app.admin,
                json!({"job_id": id(), "agent_id": "a", "kind": "k"}),
            )
            .await;
        assert_eq!(a.status, 201);
    }
    let end = app.log_len().await;
    let r = app
        .http
        .get(format!("{}/v1/audit/verify", app.base))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let report: Value = serde_json::from_str(r.text().await.unwrap().trim()).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["checked"].as_u64().unwrap(), end);

    let r = app
        .http
        .get(format!("{}/v1/audit/verify", app.base))
        .bearer_auth(&app.admin)
        .header("Accept", "application/x-ndjson")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let text = r.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let last = lines.last().unwrap();
    assert_eq!(last["report"]["ok"], true, "{text}");
    assert_eq!(last["report"]["checked"].as_u64().unwrap(), end);
    for line in &lines[..lines.len() - 1] {
        assert!(line["progress"]["checked_to"].is_u64(), "{line}");
    }
    // Refusals still come before anything is streamed.
    let a = app
        .get(
            "/v1/audit/verify?from_position=9&to_position=3",
            &app.admin,
            None,
        )
        .await;
    assert_problem(&a, 400, "MALFORMED_REQUEST");
}
