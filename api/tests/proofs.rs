//! Proofs for auditors, over HTTP and the command line, against real NATS and Postgres:
//! signed checkpoints of the whole log's Merkle tree, inclusion proofs of every event,
//! consistency proofs between every pair of sealed sizes, and the offline check.

mod support;

use std::process::Command;

use chronicle_events::EventLog;
use chronicle_events::merkle::{Hash, merkle_root, verify_consistency, verify_inclusion};
use chronicle_replay::checkpoint::Checkpoint;
use chronicle_replay::seal::SealKey;
use futures::StreamExt;
use serde_json::{Value, json};
use support::{App, assert_problem, seal_key};

fn hash(hex_text: &str) -> Hash {
    hex::decode(hex_text).unwrap().try_into().unwrap()
}

fn hashes(v: &Value) -> Vec<Hash> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| hash(h.as_str().unwrap()))
        .collect()
}

fn origin(app: &App) -> String {
    format!("chronicle/{}", app.stream)
}

/// `n` job submissions, 32 at a time.
async fn submit_jobs(app: &App, n: usize) {
    futures::stream::iter(0..n)
        .map(|i| async move {
            let a = app
                .post(
                    "/v1/commands/jobs",
                    &app.admin,
                    json!({"agent_id": "a", "kind": "k", "input": i}),
                )
                .await;
            assert_eq!(a.status, 201, "{}", a.body);
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
}

async fn get(app: &App, path_and_query: &str) -> support::Answer {
    app.send(
        app.http
            .get(format!("{}{path_and_query}", app.base))
            .bearer_auth(&app.admin),
    )
    .await
}

/// The signed checkpoint (of `size`, or the latest), opened with the public seal key.
async fn checkpoint(app: &App, size: Option<u64>) -> (String, Checkpoint) {
    let q = size.map(|n| format!("?size={n}")).unwrap_or_default();
    let a = get(app, &format!("/v1/audit/checkpoint{q}")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        a.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let note = a.body.as_str().unwrap().to_owned();
    let cp = Checkpoint::open(&note, &origin(app), &seal_key().public()).unwrap();
    (note, cp)
}

/// Every stored event's hash, by position.
async fn event_hashes(app: &App) -> Vec<(u64, Hash)> {
    let a = get(app, "/v1/audit/events").await;
    a.body
        .as_str()
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| {
            (
                v["position"].as_u64().unwrap(),
                hash(v["hash"].as_str().unwrap()),
            )
        })
        .collect()
}

#[tokio::test]
async fn every_inclusion_proof_of_a_1000_event_log_verifies_and_fails_when_anything_changes() {
    let app = App::with_database().await;
    let none = get(&app, "/v1/audit/checkpoint").await;
    assert_problem(&none, 404, "NOT_FOUND");
    submit_jobs(&app, 1000).await;
    let sealed = app.seal().await.unwrap();
    let (note, cp) = checkpoint(&app, None).await;
    assert_eq!(cp.size, sealed);
    assert!(cp.size >= 1000);
    assert!(note.starts_with(&format!("{}\n{}\n", origin(&app), cp.size)));

    // The root is the RFC 9162 root over every event's hash in log order, as the
    // known-answer-checked in-memory code computes it from the history alone.
    let mut events = event_hashes(&app).await;
    // The seal itself follows the tree it signs.
    events.retain(|(p, _)| *p <= cp.size);
    assert_eq!(
        events.len() as u64,
        cp.size,
        "no gaps, every position an event"
    );
    let entries: Vec<Hash> = events.iter().map(|(_, h)| *h).collect();
    assert_eq!(merkle_root(&entries), cp.root);

    for (position, entry) in &events {
        let a = get(
            &app,
            &format!(
                "/v1/audit/proofs/inclusion?position={position}&size={}",
                cp.size
            ),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.body["leaf_index"], position - 1);
        assert_eq!(a.body["tree_size"], cp.size);
        assert_eq!(
            a.body["leaf_hash"],
            hex::encode(chronicle_events::merkle::leaf_hash(entry))
        );
        let path = hashes(&a.body["hashes"]);
        let index = position - 1;
        assert!(
            verify_inclusion(entry, index, cp.size, &path, &cp.root),
            "position {position}"
        );
        let mut changed = *entry;
        changed[31] ^= 1;
        assert!(!verify_inclusion(&changed, index, cp.size, &path, &cp.root));
        assert!(!verify_inclusion(
            entry,
            (index + 1) % cp.size,
            cp.size,
            &path,
            &cp.root
        ));
        if index > 0 {
            assert!(!verify_inclusion(
                entry,
                index - 1,
                cp.size,
                &path,
                &cp.root
            ));
        }
    }
    // Without a size, the latest checkpoint's.
    let latest = get(&app, "/v1/audit/proofs/inclusion?position=1").await;
    assert_eq!(latest.body["tree_size"], cp.size);

    // Bad input is refused with a problem, and changes nothing.
    for (query, status, code) in [
        ("position=0", 400, "MALFORMED_REQUEST"),
        ("position=x", 400, "MALFORMED_REQUEST"),
        ("", 400, "MALFORMED_REQUEST"),
        ("position=1&size=7", 404, "NOT_FOUND"),
        ("position=1&bogus=1", 400, "MALFORMED_REQUEST"),
    ] {
        let a = get(&app, &format!("/v1/audit/proofs/inclusion?{query}")).await;
        assert_problem(&a, status, code);
    }
    let beyond = get(
        &app,
        &format!(
            "/v1/audit/proofs/inclusion?position={}&size={}",
            cp.size + 1,
            cp.size
        ),
    )
    .await;
    assert_problem(&beyond, 404, "NOT_FOUND");
    assert_problem(
        &get(&app, "/v1/audit/checkpoint?size=3").await,
        404,
        "NOT_FOUND",
    );
    // Auditors and admins only.
    let (analyst, _) = app.token("ann", "analyst").await;
    for path in [
        "/v1/audit/checkpoint",
        "/v1/audit/proofs/inclusion?position=1",
        "/v1/audit/proofs/consistency?from=1",
    ] {
        let a = app
            .send(
                app.http
                    .get(format!("{}{path}", app.base))
                    .bearer_auth(&analyst),
            )
            .await;
        assert_problem(&a, 403, "FORBIDDEN");
    }
    let (auditor, _) = app.token("aud", "auditor").await;
    let a = app
        .send(
            app.http
                .get(format!("{}/v1/audit/checkpoint", app.base))
                .bearer_auth(&auditor),
        )
        .await;
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn consistency_proofs_between_every_pair_of_sealed_sizes_verify_and_a_forged_checkpoint_fails()
 {
    let app = App::with_database().await;
    let mut sizes = Vec::new();
    for batch in [1, 2, 60, 1, 200] {
        submit_jobs(&app, batch).await;
        sizes.push(app.seal().await.unwrap());
    }
    let mut checkpoints = Vec::new();
    for n in &sizes {
        let (_, cp) = checkpoint(&app, Some(*n)).await;
        assert_eq!(cp.size, *n);
        checkpoints.push(cp);
    }
    for old in &checkpoints {
        for new in checkpoints.iter().filter(|c| c.size >= old.size) {
            let a = get(
                &app,
                &format!(
                    "/v1/audit/proofs/consistency?from={}&to={}",
                    old.size, new.size
                ),
            )
            .await;
            assert_eq!(a.status, 200, "{}", a.body);
            assert_eq!(
                (a.body["from"].as_u64(), a.body["to"].as_u64()),
                (Some(old.size), Some(new.size))
            );
            let proof = hashes(&a.body["hashes"]);
            assert!(
                verify_consistency(old.size, new.size, &old.root, &new.root, &proof),
                "{} to {}",
                old.size,
                new.size
            );
            if old.size < new.size {
                // A checkpoint whose root was forged does not pass.
                let mut forged = old.root;
                forged[0] ^= 0x80;
                assert!(!verify_consistency(
                    old.size, new.size, &forged, &new.root, &proof
                ));
                let mut forged = new.root;
                forged[0] ^= 0x80;
                assert!(!verify_consistency(
                    old.size, new.size, &old.root, &forged, &proof
                ));
            }
        }
    }
    // A forged checkpoint note: its signature does not open with the seal key.
    let (note, cp) = checkpoint(&app, None).await;
    let forged = note.replacen(
        &format!("\n{}\n", cp.size),
        &format!("\n{}\n", cp.size + 1),
        1,
    );
    assert!(Checkpoint::open(&forged, &origin(&app), &seal_key().public()).is_err());
    let by_other_key = Checkpoint {
        origin: origin(&app),
        size: cp.size,
        root: [1; 32],
    }
    .sign(&origin(&app), &SealKey::from_seed(&[9; 32]));
    assert!(Checkpoint::open(&by_other_key, &origin(&app), &seal_key().public()).is_err());

    // Without `to`, to the latest; from after to, or a size no seal signed, is refused.
    let latest = get(
        &app,
        &format!("/v1/audit/proofs/consistency?from={}", sizes[0]),
    )
    .await;
    assert_eq!(latest.body["to"], *sizes.last().unwrap());
    assert_problem(
        &get(
            &app,
            &format!(
                "/v1/audit/proofs/consistency?from={}&to={}",
                sizes[2], sizes[1]
            ),
        )
        .await,
        400,
        "MALFORMED_REQUEST",
    );
    assert_problem(
        &get(
            &app,
            &format!(
                "/v1/audit/proofs/consistency?from={}&to={}",
                sizes[0] + 1,
                sizes[2]
            ),
        )
        .await,
        404,
        "NOT_FOUND",
    );
    assert_problem(
        &get(&app, "/v1/audit/proofs/consistency").await,
        400,
        "MALFORMED_REQUEST",
    );

    // Every seal is a checkpoint and verifies; the whole log verifies.
    let v = get(&app, "/v1/audit/verify").await;
    assert_eq!(v.body["ok"], true, "{}", v.body);
    assert_eq!(v.body["seals"]["checked"], sizes.len());
}

/// Runs `chronicle` for this app; `online` gives it NATS and Postgres, otherwise it has
/// neither (the auditor's machine).
fn chronicle(app: &App, args: &[&str], online: bool) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chronicle"));
    cmd.args(args)
        .env("CHRONICLE_STREAM", &app.stream)
        .env("CHRONICLE_SUBJECT_PREFIX", &app.prefix)
        .env("CHRONICLE_EVENT_KEY", support::EVENT_KEY)
        .env_remove("CHRONICLE_SEAL_KEY");
    if online {
        cmd.env("DATABASE_URL", &app.database_url);
    } else {
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
async fn a_proof_bundle_checks_offline_with_the_public_key_alone() {
    let app = App::with_database().await;
    submit_jobs(&app, 20).await;
    let first = app.seal().await.unwrap();
    submit_jobs(&app, 20).await;
    let second = app.seal().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let public = seal_key().public_hex();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let check = |file: &str, key: &str| {
        chronicle(
            &app,
            &["replay", "check", "--proof", file, "--public-key", key],
            false,
        )
    };

    let (code, out, err) = chronicle(&app, &["replay", "prove", "--position", "7"], true);
    assert_eq!(code, 0, "{err}");
    let bundle: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(bundle["position"], 7);
    assert_eq!(bundle["inclusion"]["tree_size"], second);
    let good = write("inclusion.json", &out);
    let (code, report, err) = check(&good, &public);
    assert_eq!(code, 0, "{report} {err}");
    let report: Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["origin"], origin(&app));

    // The auditor's way, over HTTP alone: a line of /v1/audit/events (with its position
    // and version), the proof and the note, put together.
    let line = get(&app, "/v1/audit/events?from_position=7&to_position=7").await;
    let proof = get(&app, "/v1/audit/proofs/inclusion?position=7").await;
    let note = get(&app, "/v1/audit/checkpoint").await;
    let assembled = json!({
        "position": 7,
        "event": line.body,
        "inclusion": proof.body,
        "checkpoint": note.body,
    });
    let (code, report, err) = check(&write("http.json", &assembled.to_string()), &public);
    assert_eq!(code, 0, "{report} {err}");
    let mut elsewhere = assembled.clone();
    elsewhere["event"]["position"] = json!(8);
    assert_eq!(
        check(&write("else.json", &elsewhere.to_string()), &public).0,
        1
    );

    // A changed event, another position, another key: each fails, exit 1.
    let mut changed = bundle.clone();
    changed["event"]["data"]["input"] = json!(99_999);
    let (code, _, err) = check(&write("changed.json", &changed.to_string()), &public);
    assert_eq!(code, 1);
    assert!(err.contains("changed"), "{err}");
    let mut moved = bundle.clone();
    moved["position"] = json!(8);
    moved["inclusion"]["leaf_index"] = json!(7);
    let (code, _, _) = check(&write("moved.json", &moved.to_string()), &public);
    assert_eq!(code, 1);
    let other = SealKey::from_seed(&[9; 32]).public_hex();
    let (code, _, _) = check(&good, &other);
    assert_eq!(code, 1);
    let mut short = bundle.clone();
    short["inclusion"]["hashes"].as_array_mut().unwrap().pop();
    let (code, _, _) = check(&write("short.json", &short.to_string()), &public);
    assert_eq!(code, 1);

    // Against the older checkpoint, and a consistency bundle between the two.
    let (code, out, err) = chronicle(
        &app,
        &[
            "replay",
            "prove",
            "--position",
            "7",
            "--size",
            &first.to_string(),
        ],
        true,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(check(&write("older.json", &out), &public).0, 0);
    let (code, out, err) = chronicle(
        &app,
        &["replay", "prove", "--from", &first.to_string()],
        true,
    );
    assert_eq!(code, 0, "{err}");
    let consistency = write("consistency.json", &out);
    let (code, report, err) = check(&consistency, &public);
    assert_eq!(code, 0, "{report} {err}");
    // The older checkpoint swapped for a forged one: fails.
    let mut forged: Value = serde_json::from_str(&out).unwrap();
    let old = forged["old_checkpoint"].as_str().unwrap().to_owned();
    forged["old_checkpoint"] =
        json!(old.replacen(&format!("\n{first}\n"), &format!("\n{}\n", first - 1), 1));
    let (code, _, _) = check(&write("forged.json", &forged.to_string()), &public);
    assert_eq!(code, 1);

    // A size no seal signed, and a file that is no bundle, are refused clearly.
    let (code, _, err) = chronicle(
        &app,
        &["replay", "prove", "--position", "1", "--size", "3"],
        true,
    );
    assert_ne!(code, 0);
    assert!(err.contains("not a sealed tree size"), "{err}");
    let (code, _, err) = check(&write("junk.json", "{}"), &public);
    assert_ne!(code, 0);
    assert!(err.contains("not a proof bundle"), "{err}");
}

/// Appends `seal` to the seal stream at `head`, as a sealer would.
async fn append_seal(
    app: &App,
    head: chronicle_events::StreamHead,
    seal: chronicle_events::domain::seal::SealRecorded,
) {
    app.state
        .log
        .append(chronicle_events::AppendRequest::single(
            uuid::Uuid::new_v4(),
            chronicle_replay::sealer::seal_stream(),
            chronicle_events::Expected::Head(head),
            vec![chronicle_events::PendingEvent::new(
                seal,
                chronicle_events::Actor::system("sealer"),
                uuid::Uuid::new_v4(),
            )],
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_tree_is_derived_data_rebuilt_from_the_log_and_older_seals_keep_verifying() {
    let app = App::with_database().await;
    submit_jobs(&app, 5).await;
    // A seal of the older form (a range root, before the whole-log tree), as logs hold.
    let tip = chronicle_replay::sealer::seal_tip(&app.state.log)
        .await
        .unwrap();
    let end = app.log_len().await;
    let events = event_hashes(&app).await;
    let old = seal_key().seal(
        1,
        end,
        hex::encode(merkle_root(
            &events.iter().map(|(_, h)| *h).collect::<Vec<_>>(),
        )),
        None,
        vec![],
    );
    append_seal(&app, tip.head, old).await;
    submit_jobs(&app, 5).await;
    let first = app.seal().await.unwrap();
    submit_jobs(&app, 5).await;
    let second = app.seal().await.unwrap();
    let v = get(&app, "/v1/audit/verify").await;
    assert_eq!(v.body["ok"], true, "{}", v.body);
    assert_eq!(v.body["seals"]["checked"], 3);
    // Sealing again with nothing new but the last seal appends nothing.
    assert_eq!(app.seal().await, None);

    let (_, before) = checkpoint(&app, Some(second)).await;
    let db = chronicle_testkit::connect(&app.database_url).await;
    db.batch_execute(
        "TRUNCATE audit.tree_tiles, audit.tree, audit.unauthenticated, audit.checkpoints",
    )
    .await
    .unwrap();
    assert_problem(&get(&app, "/v1/audit/checkpoint").await, 404, "NOT_FOUND");
    // The next sealer run rebuilds the tree from the log, and every checkpoint the log's
    // seals signed is served again, equal.
    submit_jobs(&app, 1).await;
    let third = app.seal().await.unwrap();
    let (_, after) = checkpoint(&app, Some(second)).await;
    assert_eq!(before, after);
    let (_, cp) = checkpoint(&app, Some(first)).await;
    assert_eq!(cp.size, first);
    let a = get(
        &app,
        &format!("/v1/audit/proofs/consistency?from={first}&to={third}"),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);

    // A checkpoint seal whose root is not the tree's is not served, and verify says so.
    let tip = chronicle_replay::sealer::seal_tip(&app.state.log)
        .await
        .unwrap();
    let end = app.log_len().await;
    let wrong = seal_key().checkpoint_seal(
        tip.sealed_to + 1,
        end,
        [7; 32],
        tip.prev_seal.clone(),
        vec![],
        &origin(&app),
    );
    append_seal(&app, tip.head, wrong).await;
    submit_jobs(&app, 1).await;
    app.seal().await.unwrap();
    assert_problem(
        &get(&app, &format!("/v1/audit/checkpoint?size={end}")).await,
        404,
        "NOT_FOUND",
    );
    let v = get(&app, "/v1/audit/verify").await;
    assert_eq!(v.body["seals"]["ok"], false, "{}", v.body);
    assert!(
        v.body["broken_chains"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["kind"] == "bad_seal" && b["detail"].as_str().unwrap().contains("tree"))
    );
}
