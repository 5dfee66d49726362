//! Backups and restores against real NATS: an online backup taken while commands are
//! taken, an incremental one after it, the stream deleted and restored from the folder
//! with every message at its position (headers and bytes equal) and commands going on at
//! the right versions; an export restored the same way; a changed byte, a stream that
//! holds messages and an export that does not start at 1 refused with nothing written;
//! gaps and repeated message ids in the original keeping every position.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use async_nats::jetstream::consumer;
use bytes::Bytes;
use chronicle_events::{JetStreamLog, LogConfig};
use chronicle_replay::backup::{self, Record};
use futures::StreamExt;
use serde_json::{Value, json};
use support::App;

use chronicle_testkit::id;

/// Runs `chronicle` against this app's stream.
fn chronicle(app: &App, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .args(args)
        .env("CHRONICLE_STREAM", &app.stream)
        .env("CHRONICLE_SUBJECT_PREFIX", &app.prefix)
        .env("CHRONICLE_SEAL_KEY", support::SEAL_KEY)
        .env("CHRONICLE_EVENT_KEY", support::EVENT_KEY)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every stored message of `stream_name` up to `to`, as a backup record.
async fn stored(js: &async_nats::jetstream::Context, stream_name: &str, to: u64) -> Vec<Record> {
    let s = js.get_stream(stream_name).await.unwrap();
    let c = s
        .create_consumer(consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut messages = c.messages().await.unwrap();
    let mut out = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(2), messages.next()).await {
        let m = m.unwrap();
        let info = m.info().unwrap();
        let position = info.stream_sequence;
        let pending = info.pending;
        if position > to {
            break;
        }
        let mut headers: Vec<(String, String)> = m
            .headers
            .iter()
            .flat_map(|h| h.iter())
            .flat_map(|(k, vs)| vs.iter().map(move |v| (k.to_string(), v.to_string())))
            .collect();
        headers.sort();
        out.push(Record {
            position,
            subject: m.subject.to_string(),
            headers,
            payload: m.payload.clone(),
        });
        if position == to || pending == 0 {
            break;
        }
    }
    out
}

async fn jobs(app: &App, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let job = id();
        let a = app
            .post(
                "/v1/commands/jobs",
                &app.admin,
                json!({"job_id": job, "agent_id": "agent-1", "kind": "summarise"}),
            )
            .await;
        assert_eq!(a.status, 201, "{}", a.body);
        ids.push(job);
    }
    ids
}

fn report(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[tokio::test]
async fn an_online_backup_and_an_incremental_one_restore_every_message_at_its_position() {
    let app = App::start().await;
    let js = app.state.log.jetstream().clone();
    let first = jobs(&app, 20).await;
    // An atomic batch of several events, and an invoice: stored headers of every kind.
    let entry = app
        .post(
            "/v1/commands/accounts",
            &app.admin,
            json!({"code": "1000", "name": "Cash", "type": "ASSET", "currency": "EUR"}),
        )
        .await;
    assert_eq!(entry.status, 201, "{}", entry.body);
    let invoice = id();
    let a = app
        .post(
            "/v1/commands/invoices",
            &app.admin,
            json!({"invoice_id": invoice, "customer": "c", "currency": "EUR", "issue_date": "2026-01-01",
                   "lines": [{"description": "d", "amount": 1200}],
                   "recognition": {"method": "RATABLE", "start": "2026-01-01", "months": 12}}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let a = app
        .post(
            &format!("/v1/commands/invoices/{invoice}/recognize"),
            &app.admin,
            json!({"through": "2026-12-31"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);

    // Online: commands keep coming while the first backup runs.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("backup");
    let out_s = out.to_str().unwrap().to_owned();
    let writer = {
        let app = app.peer().await;
        tokio::spawn(async move { jobs(&app, 30).await })
    };
    let (code, stdout, stderr) = chronicle(&app, &["backup", "--out", &out_s]);
    assert_eq!(code, 0, "{stderr}");
    let full = report(&stdout);
    assert_eq!(full["incremental"], false);
    assert_eq!(full["from"], 1);
    let cut1 = full["to"].as_u64().unwrap();
    writer.await.unwrap();
    let later = jobs(&app, 10).await;
    let (code, stdout, stderr) = chronicle(&app, &["backup", "--out", &out_s]);
    assert_eq!(code, 0, "{stderr}");
    let incr = report(&stdout);
    assert_eq!(incr["incremental"], true, "{incr}");
    assert_eq!(incr["from"].as_u64().unwrap(), cut1 + 1, "{incr}");
    let cut2 = incr["to"].as_u64().unwrap();
    assert_eq!(cut2, app.log_len().await);
    assert_eq!(
        incr["messages"].as_u64().unwrap(),
        cut2 - cut1,
        "only what is new"
    );
    assert_eq!(incr["manifest"]["segments"].as_array().unwrap().len(), 2);

    let before = stored(&js, &app.stream, cut2).await;
    assert_eq!(before.len() as u64, cut2);
    let seal_key_check = chronicle(&app, &["replay", "verify"]);
    assert_eq!(seal_key_check.0, 0, "{}", seal_key_check.2);

    // The stream is lost; the restore brings it back.
    js.delete_stream(&app.stream).await.unwrap();
    let (code, stdout, stderr) = chronicle(&app, &["restore", "--from", &out_s]);
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    let restored = report(&stdout);
    assert_eq!(restored["verify"]["ok"], true, "{restored}");
    assert_eq!(restored["restore"]["last_position"].as_u64().unwrap(), cut2);
    let after = stored(&js, &app.stream, cut2).await;
    // Headers nats-server acts on (an atomic batch's, an expected sequence) are kept in
    // the backup but not sent again: every other header comes back as it was.
    let keep = |r: &Record| Record {
        headers: r
            .headers
            .iter()
            .filter(|(k, _)| !k.starts_with("Nats-") || k == "Nats-Msg-Id")
            .cloned()
            .collect(),
        ..r.clone()
    };
    assert_eq!(after.len(), before.len());
    for (a, b) in after.iter().zip(&before) {
        assert_eq!(a, &keep(b), "position {}", b.position);
    }
    let info = js
        .get_stream(&app.stream)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert!(
        info.config.deny_delete && info.config.deny_purge,
        "its own settings back"
    );
    assert_eq!(
        info.config.duplicate_window,
        LogConfig::new(chronicle_testkit::keyring()).duplicate_window
    );

    // Commands go on at the right versions and positions.
    let peer = app.peer().await;
    for job in [&first[0], &later[0]] {
        let a = peer
            .post(
                &format!("/v1/commands/jobs/{job}/start"),
                &peer.admin,
                json!({}),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.body["version"], 2, "{}", a.body);
        assert!(a.body["position"].as_u64().unwrap() > cut2);
    }
    let dup = peer
        .post(
            "/v1/commands/jobs",
            &peer.admin,
            json!({"job_id": first[1], "agent_id": "agent-1", "kind": "summarise"}),
        )
        .await;
    assert_eq!(dup.status, 409, "a restored job still exists: {}", dup.body);
}

#[tokio::test]
async fn a_changed_byte_or_a_stream_with_messages_is_refused_before_anything_is_written() {
    let app = App::start().await;
    let js = app.state.log.jetstream().clone();
    jobs(&app, 5).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("b");
    let out_s = out.to_str().unwrap().to_owned();
    let (code, _, stderr) = chronicle(&app, &["backup", "--out", &out_s]);
    assert_eq!(code, 0, "{stderr}");

    // Into a stream that holds messages: refused.
    let (code, _, stderr) = chronicle(&app, &["restore", "--from", &out_s]);
    assert_eq!(code, 1);
    assert!(stderr.contains("already holds"), "{stderr}");
    assert!(stderr.contains("nothing was written"), "{stderr}");

    js.delete_stream(&app.stream).await.unwrap();
    let segment = std::fs::read_dir(out.join("segments"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let flip = |path: &Path, at: usize| {
        let mut bytes = std::fs::read(path).unwrap();
        let at = at.min(bytes.len() - 1);
        bytes[at] ^= 0x01;
        std::fs::write(path, bytes).unwrap();
    };
    for (path, at) in [(segment.clone(), 200), (out.join("manifest.json"), 40)] {
        flip(&path, at);
        let (code, _, stderr) = chronicle(&app, &["restore", "--from", &out_s]);
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains("not intact"), "{stderr}");
        assert!(
            js.get_stream(&app.stream).await.is_err(),
            "nothing written for {}",
            path.display()
        );
        flip(&path, at);
    }
    // Mended, it restores.
    let (code, stdout, stderr) = chronicle(&app, &["restore", "--from", &out_s]);
    assert_eq!(code, 0, "{stderr}{stdout}");
}

#[tokio::test]
async fn an_export_from_position_one_restores_and_one_from_later_is_refused() {
    let app = App::start().await;
    let js = app.state.log.jetstream().clone();
    jobs(&app, 12).await;
    let end = app.log_len().await;
    let before = stored(&js, &app.stream, end).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("log.ndjson");
    let file_s = file.to_str().unwrap().to_owned();
    let (code, _, stderr) = chronicle(
        &app,
        &[
            "replay",
            "export",
            "--out",
            &file_s,
            "--to-position",
            &end.to_string(),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let later = dir.path().join("later.ndjson");
    let later_s = later.to_str().unwrap().to_owned();
    let (code, _, stderr) = chronicle(
        &app,
        &[
            "replay",
            "export",
            "--out",
            &later_s,
            "--from-position",
            "3",
            "--to-position",
            &end.to_string(),
        ],
    );
    assert_eq!(code, 0, "{stderr}");

    js.delete_stream(&app.stream).await.unwrap();
    let (code, _, stderr) = chronicle(&app, &["restore", "--from", &later_s]);
    assert_eq!(code, 1);
    assert!(stderr.contains("position 1"), "{stderr}");
    assert!(js.get_stream(&app.stream).await.is_err());

    let (code, stdout, stderr) = chronicle(&app, &["restore", "--from", &file_s]);
    assert_eq!(code, 0, "{stderr}{stdout}");
    let after = stored(&js, &app.stream, end).await;
    assert_eq!(after.len(), before.len());
    for (a, b) in after.iter().zip(&before) {
        assert_eq!(
            (a.position, &a.subject, &a.payload),
            (b.position, &b.subject, &b.payload)
        );
        for name in [
            "Chronicle-Auth",
            "Chronicle-Prev",
            "Chronicle-Version",
            "Nats-Msg-Id",
        ] {
            let get = |r: &Record| {
                r.headers
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            };
            assert_eq!(get(a), get(b), "{name} at {}", b.position);
        }
    }
}

/// Gaps (deleted messages, a purged start) and a message id repeated after the
/// de-duplication window: in a stream that allowed them, every position is kept.
#[tokio::test]
async fn gaps_and_repeated_message_ids_keep_every_position() {
    let client = async_nats::connect(chronicle_testkit::nats_url())
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let cfg = LogConfig {
        stream_name: format!("G{tag}"),
        subject_prefix: format!("g{}.ev", &tag[..12]),
        ..LogConfig::new(chronicle_testkit::keyring())
    };
    let mut sc = cfg.stream_config();
    sc.deny_delete = false;
    sc.deny_purge = false;
    sc.duplicate_window = Duration::from_millis(500);
    js.create_stream(sc.clone()).await.unwrap();
    let subject = format!("{}.job.x", cfg.subject_prefix);
    let publish = |id: Option<&str>, n: u32| {
        let mut h = async_nats::HeaderMap::new();
        if let Some(id) = id {
            h.insert("Nats-Msg-Id", id);
        }
        let js = js.clone();
        let subject = subject.clone();
        async move {
            js.publish_with_headers(subject, h, Bytes::from(format!("{{\"n\":{n}}}")))
                .await
                .unwrap()
                .await
                .unwrap()
                .sequence
        }
    };
    for n in 1..=4 {
        publish(None, n).await;
    }
    let s = js.get_stream(&sc.name).await.unwrap();
    // A purged start (1..=2 gone), then a deleted message in the middle and at the end.
    s.purge().sequence(3).await.unwrap();
    publish(Some("same"), 5).await; // 5
    tokio::time::sleep(Duration::from_millis(700)).await;
    publish(Some("same"), 6).await; // 6: the same id, past the window
    publish(None, 7).await; // 7
    publish(None, 8).await; // 8
    s.delete_message(7).await.unwrap();
    s.delete_message(8).await.unwrap();
    let mut s = js.get_stream(&sc.name).await.unwrap();
    let original = s.info().await.unwrap().state.clone();
    assert_eq!((original.first_sequence, original.last_sequence), (3, 8));

    let log = JetStreamLog::from_client(client.clone(), cfg.clone());
    let dir = tempfile::tempdir().unwrap();
    let made = backup::backup(&log, dir.path(), &|_, _| {}).await.unwrap();
    assert_eq!((made.from, made.to, made.messages), (3, 8, 4));
    let before = stored(&js, &sc.name, 8).await;
    js.delete_stream(&sc.name).await.unwrap();

    let source = backup::read_backup(dir.path()).unwrap();
    let config = source.stream_config.clone().unwrap();
    let done = backup::restore(client.clone(), &source, config, None, &|_, _| {})
        .await
        .unwrap();
    assert_eq!(done.gaps, 2, "positions 7 and 8 held open");
    let mut s = js.get_stream(&sc.name).await.unwrap();
    let state = s.info().await.unwrap().state.clone();
    assert_eq!(
        (state.first_sequence, state.last_sequence, state.messages),
        (3, 8, 4)
    );
    let after = stored(&js, &sc.name, 8).await;
    assert_eq!(
        after.iter().map(|r| r.position).collect::<Vec<_>>(),
        [3, 4, 5, 6]
    );
    assert_eq!(after, before);
    js.delete_stream(&sc.name).await.unwrap();
}
