//! The trust holes of issue 9, each tried as an attacker would, against the real NATS and
//! Postgres, with two API instances (each with its own caches and revoked set) where the
//! scenario takes two: revocation whatever a process has cached, idempotency keys bound to
//! their request, approvals and the bypass that never widen powers, forged and junk
//! messages, scopes, the rate limit, and what is kept at rest.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use chronicle_events::jetstream::VERSION_HEADER;
use chronicle_events::{Domain, EventLog, StreamId};
use futures::StreamExt;
use serde_json::{Value, json};
use support::{App, assert_problem};
use uuid::Uuid;

use chronicle_testkit::id;

/// Waits up to `within` for `check` to hold.
async fn eventually(within: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let started = Instant::now();
    loop {
        if check().await {
            return true;
        }
        if started.elapsed() > within {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How a route that reads nothing but the token answers `token`: 200, or 401 once it is
/// revoked (403 for a role that may not introspect).
async fn status_with(app: &App, token: &str) -> u16 {
    app.send(
        app.http
            .post(format!("{}/v1/introspect", app.base))
            .bearer_auth(token)
            .form(&[("token", "x")]),
    )
    .await
    .status
    .as_u16()
}

/// A token of `role` for a new user, with these scopes.
async fn scoped(app: &App, role: &str, scopes: &[&str]) -> String {
    let a = app
        .post(
            &format!("/v1/commands/users/{}/tokens", id()),
            &app.admin,
            json!({"role": role, "scopes": scopes}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    a.body["token"].as_str().unwrap().to_owned()
}

async fn register(app: &App, agent: &str, maturity: &str) {
    let a = app
        .post(
            "/v1/commands/agents",
            &app.admin,
            json!({"agent_id": agent, "name": "bot", "maturity": maturity}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
}

async fn maturity_of(app: &App, agent: &str) -> String {
    let s: StreamId = format!("agent.{agent}").parse().unwrap();
    let state = chronicle_replay::history::state_at(
        &app.state.log,
        &s,
        chronicle_replay::history::AsOf::Now,
    )
    .await
    .unwrap();
    state.state["maturity"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn revoke_all_through_a_process_with_a_stale_cache_revokes_the_new_token() {
    let a = App::start().await;
    let b = a.peer().await;
    let user = format!("u-{}", id());
    let revoke_all = format!("/v1/commands/users/{user}/tokens/revoke-all");

    // A answers a revoke-all for a user with no token: A now holds the user's state.
    let r = a
        .post(&revoke_all, &a.admin, json!({"reason": "first"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["events"], json!([]));

    // A token issued through B, which A's cache knows nothing of.
    let (token, jti) = b.token(&user, "writer").await;
    assert_eq!(status_with(&a, &token).await, 403, "valid, but a writer");

    // Revoking it by id through A finds it...
    let (token2, jti2) = b.token(&user, "analyst").await;
    let r = a
        .post(
            &format!("/v1/commands/users/{user}/tokens/{jti2}/revoke"),
            &a.admin,
            json!({"reason": "lost"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["events"][0]["type"], "TokenRevoked");

    // ...and revoke-all through A revokes the other one.
    let r = a
        .post(&revoke_all, &a.admin, json!({"reason": "offboarding"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["events"][0]["type"], "AllTokensRevoked",
        "{}",
        r.body
    );
    for app in [&a, &b] {
        for t in [&token, &token2] {
            assert!(
                eventually(Duration::from_secs(1), async || status_with(app, t).await
                    == 401)
                .await,
                "a revoked token still works"
            );
        }
    }
    assert!(a.state.revocations.is_revoked(&jti.parse().unwrap()));
}

#[tokio::test]
async fn a_message_that_is_not_an_event_on_a_user_subject_stops_no_process_and_no_feed() {
    let a = App::start().await;
    let b = a.peer().await;
    let user = format!("u-{}", id());
    let (token, jti) = a.token(&user, "analyst").await;

    // Anyone who can publish: junk, and a forged revocation-looking envelope.
    let subject = StreamId::new(Domain::User, user.clone())
        .unwrap()
        .subject(&a.prefix);
    let js = a.state.log.jetstream();
    for payload in [&b"not an event"[..], br#"{"type":"TokenRevoked"}"#] {
        js.publish(subject.clone(), Bytes::from_static(payload))
            .await
            .unwrap()
            .await
            .unwrap();
    }

    // A new process starts (it reads the revoked tokens from the log)...
    let c = a.peer().await;
    assert_eq!(status_with(&c, &token).await, 200, "the token still works");
    // ...and every process's feed goes on: a revocation through A reaches B and C.
    let r = a
        .post(
            &format!("/v1/commands/users/{user}/tokens/{jti}/revoke"),
            &a.admin,
            json!({"reason": "lost"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    for app in [&b, &c] {
        assert!(
            eventually(Duration::from_secs(1), async || {
                status_with(app, &token).await == 401
            })
            .await,
            "the revocation did not reach a peer within 1 s"
        );
    }
    // Commands on the user's stream go on too.
    let (_, _) = a.token(&user, "analyst").await;
}

#[tokio::test]
async fn a_new_process_starts_from_the_revocation_snapshot() {
    let a = App::start().await;
    let user = format!("u-{}", id());
    let (old, old_jti) = a.token(&user, "analyst").await;
    let r = a
        .post(
            &format!("/v1/commands/users/{user}/tokens/{old_jti}/revoke"),
            &a.admin,
            json!({"reason": "lost"}),
        )
        .await;
    assert_eq!(r.status, 200);
    a.state.revocations.snapshot(&a.state.log).await.unwrap();
    let snapshot_at = a.state.revocations.position();
    assert!(snapshot_at > 0);
    let (new, new_jti) = a.token(&user, "analyst").await;
    a.post(
        &format!("/v1/commands/users/{user}/tokens/{new_jti}/revoke"),
        &a.admin,
        json!({"reason": "lost"}),
    )
    .await;

    let b = a.peer().await;
    assert_eq!(
        b.state.revocations.started_from(),
        snapshot_at + 1,
        "start-up reads only what follows the snapshot"
    );
    assert_eq!(status_with(&b, &old).await, 401, "known from the snapshot");
    assert_eq!(
        status_with(&b, &new).await,
        401,
        "read from the log after it"
    );

    // A snapshot changed by anyone without the event key is ignored: the log is read.
    let store = a
        .state
        .log
        .jetstream()
        .get_object_store(format!("{}_REVOCATIONS", a.stream))
        .await
        .unwrap();
    store
        .put("revocations", &mut &b"CHRREV1\n forged, empty"[..])
        .await
        .unwrap();
    let c = a.peer().await;
    assert_eq!(c.state.revocations.started_from(), 1);
    assert_eq!(status_with(&c, &old).await, 401);
}

#[tokio::test]
async fn an_escalated_revoke_takes_effect_at_once_in_the_process_that_ran_it() {
    let app = App::start().await;
    let agent = format!("bot-{}", id());
    register(&app, &agent, "INTERN").await;
    let (bot, _) = app.token(&agent, "agent").await;
    let user = format!("u-{}", id());
    let (victim, jti) = app.token(&user, "analyst").await;
    // Revoking a token is HIGH: an INTERN is escalated.
    let a = app
        .post(
            &format!("/v1/commands/users/{user}/tokens/{jti}/revoke"),
            &bot,
            json!({"reason": "leaked in a log"}),
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.body);
    let approval = a.body["approval_id"].as_str().unwrap();
    let a = app
        .post(
            &format!("/v1/commands/approvals/{approval}/approve"),
            &app.admin,
            json!({}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["escalated"]["outcome"], "EXECUTED", "{}", a.body);
    // At once: no waiting for the feed.
    assert!(app.state.revocations.is_revoked(&jti.parse().unwrap()));
    assert_eq!(status_with(&app, &victim).await, 401);
}

#[tokio::test]
async fn an_idempotency_key_is_bound_to_its_target_and_body() {
    let app = App::start().await;
    let user = format!("u-{}", id());
    let (_, j1) = app.token(&user, "analyst").await;
    let (t2, j2) = app.token(&user, "analyst").await;
    let send = |path: String, key: &'static str| {
        app.send(
            app.request(&path, &app.admin)
                .header("Idempotency-Key", key)
                .json(&json!({"reason": "lost"})),
        )
    };
    let revoke = |jti: &str| format!("/v1/commands/users/{user}/tokens/{jti}/revoke");
    let first = send(revoke(&j1), "k-1").await;
    assert_eq!(first.status, 200, "{}", first.body);
    let again = send(revoke(&j1), "k-1").await;
    assert_eq!(again.body, first.body, "the same request answers the same");
    let other = send(revoke(&j2), "k-1").await;
    assert_problem(&other, 409, "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(status_with(&app, &t2).await, 200, "j2 was not revoked");

    // Jobs: the same key on another job's start.
    let mut jobs = Vec::new();
    for _ in 0..2 {
        let job = id();
        let a = app
            .post(
                "/v1/commands/jobs",
                &app.admin,
                json!({"job_id": job, "agent_id": "a", "kind": "k"}),
            )
            .await;
        assert_eq!(a.status, 201);
        jobs.push(job);
    }
    let start = |job: &str| {
        app.send(
            app.request(&format!("/v1/commands/jobs/{job}/start"), &app.admin)
                .header("Idempotency-Key", "k-2"),
        )
    };
    assert_eq!(start(&jobs[0]).await.status, 200);
    assert_problem(&start(&jobs[1]).await, 409, "IDEMPOTENCY_KEY_REUSED");
    let j: StreamId = format!("job.{}", jobs[1]).parse().unwrap();
    assert_eq!(app.state.log.read_stream(&j, 1).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_replayed_answer_is_authorized_like_a_fresh_request_and_no_token_is_kept() {
    let app = App::start().await;
    let carol = format!("carol-{}", id());
    let (as_admin, _) = app.token(&carol, "admin").await;
    let issue = |token: &str| {
        app.send(
            app.request(&format!("/v1/commands/users/{}/tokens", "dave"), token)
                .header("Idempotency-Key", "issue-dave")
                .json(&json!({"role": "writer"})),
        )
    };
    let first = issue(&as_admin).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let token = first.body["token"].as_str().unwrap().to_owned();
    // The replay mints the same token again from what was stored.
    let replay = issue(&as_admin).await;
    assert_eq!(replay.status, 201);
    assert_eq!(replay.body["token"], token);

    // The idempotency records hold no bearer token.
    let kv = app
        .state
        .log
        .jetstream()
        .get_key_value(format!("{}_IDEMPOTENCY", app.stream))
        .await
        .unwrap();
    let mut keys = kv.keys().await.unwrap();
    let mut seen = 0;
    while let Some(k) = keys.next().await {
        let value = kv.get(k.unwrap()).await.unwrap().unwrap();
        let text = String::from_utf8_lossy(&value);
        assert!(!text.contains(&token), "a token is stored: {text}");
        assert!(
            !text.contains("eyJ"),
            "something JWT-like is stored: {text}"
        );
        seen += 1;
    }
    assert!(seen > 0);

    // Carol as a writer may not issue tokens: the stored answer is not handed out.
    let (as_writer, _) = app.token(&carol, "writer").await;
    assert_problem(&issue(&as_writer).await, 403, "FORBIDDEN");
}

#[tokio::test]
async fn approving_never_widens_the_approver_s_powers() {
    let app = App::start().await;
    let (asker, target) = (format!("bot-{}", id()), format!("bot-{}", id()));
    register(&app, &asker, "SUPERVISED").await;
    register(&app, &target, "STUDENT").await;
    let (bot, _) = app.token(&asker, "agent").await;
    // CRITICAL for a SUPERVISED agent: escalated.
    let a = app
        .post(
            &format!("/v1/commands/agents/{target}/maturity"),
            &bot,
            json!({"maturity": "AUTONOMOUS", "reason": "promote"}),
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.body);
    let approval = a.body["approval_id"].as_str().unwrap().to_owned();
    let approve = format!("/v1/commands/approvals/{approval}/approve");

    // A writer may not change maturities, so may not approve one either.
    let writer = scoped(&app, "writer", &[]).await;
    let before = app.log_len().await;
    let a = app.post(&approve, &writer, json!({})).await;
    assert_problem(&a, 403, "FORBIDDEN");
    assert_eq!(app.log_len().await, before, "nothing appended");
    assert_eq!(maturity_of(&app, &target).await, "STUDENT");

    // Governance is evaluated again when a person approves: the asker was demoted since.
    let a = app
        .post(
            &format!("/v1/commands/agents/{asker}/maturity"),
            &app.admin,
            json!({"maturity": "INTERN", "reason": "incident"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let before = app.log_len().await;
    let a = app.post(&approve, &app.admin, json!({})).await;
    assert_problem(&a, 403, "GOVERNANCE_DENIED");
    assert_eq!(app.log_len().await, before, "nothing appended");
    assert_eq!(maturity_of(&app, &target).await, "STUDENT");

    // Restored, an admin's approval runs it.
    app.post(
        &format!("/v1/commands/agents/{asker}/maturity"),
        &app.admin,
        json!({"maturity": "SUPERVISED", "reason": "cleared"}),
    )
    .await;
    let a = app.post(&approve, &app.admin, json!({})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["escalated"]["outcome"], "EXECUTED", "{}", a.body);
    assert_eq!(maturity_of(&app, &target).await, "AUTONOMOUS");
}

#[tokio::test]
async fn an_approval_carrying_an_agent_s_own_maturity_change_is_never_run() {
    // As an older build could have written it: an escalated change of the asking agent's
    // own maturity, pending.
    let app = App::start().await;
    let agent = format!("bot-{}", id());
    register(&app, &agent, "SUPERVISED").await;
    let approval_id = id();
    let command = chronicle_commands::Command::ChangeMaturity {
        agent_id: agent.clone(),
        maturity: chronicle_events::domain::agent::Maturity::Autonomous,
        reason: "me".into(),
    };
    app.state
        .log
        .append(chronicle_events::AppendRequest::single(
            Uuid::new_v4(),
            StreamId::new(Domain::Approval, approval_id.clone()).unwrap(),
            chronicle_events::Expected::NO_STREAM,
            vec![chronicle_events::PendingEvent::new(
                chronicle_events::domain::approval::ApprovalRequested {
                    approval_id: approval_id.clone(),
                    action: "agent.change_maturity".into(),
                    payload: serde_json::to_value(&command).unwrap(),
                    reason: "one level short".into(),
                    escalated_command_id: Some(Uuid::new_v4()),
                    agent_id: Some(agent.clone()),
                },
                chronicle_events::Actor::agent(agent.clone()),
                Uuid::new_v4(),
            )],
        ))
        .await
        .unwrap();
    let a = app
        .post(
            &format!("/v1/commands/approvals/{approval_id}/approve"),
            &app.admin,
            json!({}),
        )
        .await;
    assert_problem(&a, 403, "FORBIDDEN");
    assert_eq!(maturity_of(&app, &agent).await, "SUPERVISED");
}

#[tokio::test]
async fn the_bypass_covers_an_agent_s_work_never_its_powers() {
    let app = App::start().await;
    let (student, other) = (format!("bot-{}", id()), format!("bot-{}", id()));
    register(&app, &student, "STUDENT").await;
    register(&app, &other, "STUDENT").await;
    let (bot, _) = app.token(&student, "agent").await;
    let a = app
        .post(
            "/v1/commands/governance/bypass",
            &app.admin,
            json!({"enabled": true, "reason": "incident 42"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);

    // Work goes through as BYPASSED.
    let a = app
        .post(
            "/v1/commands/accounts",
            &bot,
            json!({"code": id(), "name": "Cash", "type": "ASSET", "currency": "EUR"}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    // Its own maturity: never. Registering agents: never.
    let a = app
        .post(
            &format!("/v1/commands/agents/{student}/maturity"),
            &bot,
            json!({"maturity": "AUTONOMOUS", "reason": "bypass is on"}),
        )
        .await;
    assert_problem(&a, 403, "FORBIDDEN");
    let a = app
        .post(
            "/v1/commands/agents",
            &bot,
            json!({"agent_id": id(), "name": "twin", "maturity": "AUTONOMOUS"}),
        )
        .await;
    assert_problem(&a, 403, "FORBIDDEN");
    // Another agent's maturity: held to the maturity it really has (STUDENT: denied).
    let a = app
        .post(
            &format!("/v1/commands/agents/{other}/maturity"),
            &bot,
            json!({"maturity": "AUTONOMOUS", "reason": "bypass is on"}),
        )
        .await;
    assert_problem(&a, 403, "GOVERNANCE_DENIED");
    // After the bypass, nothing it did outlives it.
    app.post(
        "/v1/commands/governance/bypass",
        &app.admin,
        json!({"enabled": false, "reason": "over"}),
    )
    .await;
    assert_eq!(maturity_of(&app, &student).await, "STUDENT");
    assert_eq!(maturity_of(&app, &other).await, "STUDENT");
}

#[tokio::test]
async fn a_forgery_with_a_perfect_chain_is_reported_and_changes_nothing() {
    let app = App::start().await;
    let job = id();
    let a = app
        .post(
            "/v1/commands/jobs",
            &app.admin,
            json!({"job_id": job, "agent_id": "a", "kind": "k"}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let a = app
        .post(
            &format!("/v1/commands/jobs/{job}/start"),
            &app.admin,
            json!({}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let stream: StreamId = format!("job.{job}").parse().unwrap();
    let events = app.state.log.read_stream(&stream, 1).await.unwrap();
    assert_eq!(events.len(), 2);
    // The next event, as a forger who can publish and compute SHA-256 would make it.
    let last = &events[1];
    let mut forged = serde_json::to_value(&last.envelope).unwrap();
    forged["id"] = json!(Uuid::now_v7());
    forged["type"] = json!("JobCompleted");
    forged["data"] = json!({"result": "paid"});
    forged["prev_hash"] = json!(last.envelope.hash);
    forged.as_object_mut().unwrap().remove("hash");
    forged["hash"] = json!(chronicle_events::compute_hash(&forged));
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(VERSION_HEADER, "3");
    let forged_at = app
        .state
        .log
        .jetstream()
        .publish_with_headers(
            stream.subject(&app.prefix),
            headers,
            Bytes::from(chronicle_events::canonical_json(&forged)),
        )
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence;

    let r = app
        .send(
            app.http
                .get(format!("{}/v1/audit/verify", app.base))
                .bearer_auth(&app.admin),
        )
        .await;
    assert_eq!(r.body["ok"], false, "{}", r.body);
    let breaks = r.body["broken_chains"].as_array().unwrap();
    assert!(
        breaks
            .iter()
            .any(|b| b["position"] == forged_at && b["kind"] == "unauthenticated"),
        "{}",
        r.body
    );
    assert_eq!(breaks.len(), 1, "only the forgery: {}", r.body);
    // The job is still RUNNING to the command side, which completes it for real.
    let a = app
        .post(
            &format!("/v1/commands/jobs/{job}/complete"),
            &app.admin,
            json!({"result": {"ok": true}}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["version"], 3);
}

#[tokio::test]
async fn offline_verify_without_an_independent_key_does_not_pass() {
    let app = App::with_database().await;
    let key = chronicle_replay::seal::SealKey::from_seed(
        &hex::decode(support::SEAL_KEY).unwrap().try_into().unwrap(),
    );
    app.seal().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.ndjson");
    chronicle_replay::export::export(
        &app.state.log,
        None,
        None,
        Some(key.public_hex()),
        &file,
        &|_, _| {},
    )
    .await
    .unwrap();
    let verify = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_chronicle"))
            .args(["replay", "verify", "--file", file.to_str().unwrap()])
            .args(extra)
            .env_remove("NATS_URL")
            .env_remove("CHRONICLE_SEAL_KEY")
            .env_remove("CHRONICLE_EVENT_KEY")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = verify(&[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--public-key"), "{err}");
    let (code, err) = verify(&["--public-key", &key.public_hex()]);
    assert_eq!(code, Some(0), "{err}");
}

#[tokio::test]
async fn the_rate_limit_counts_junk_bearers_against_the_address() {
    let tag = id();
    let mut settings = support::settings_for(
        &format!("T{tag}"),
        &format!("t{}.ev", &tag[..12]),
        &support::database_url(),
    );
    settings.rate_limit = 20;
    let app = App::start_with(settings).await;
    let mut limited = 0;
    for i in 0..200 {
        let a = app
            .get("/v1/queries/projections", &format!("junk-{i}"), None)
            .await;
        match a.status.as_u16() {
            429 => limited += 1,
            401 => {}
            other => panic!("{other}: {}", a.body),
        }
    }
    assert!(limited > 100, "only {limited} of 200 limited");
}

#[tokio::test]
async fn scopes_narrow_what_a_token_may_do() {
    let app = App::with_read_models().await;
    let jobs_only = scoped(&app, "writer", &["jobs:write"]).await;
    let a = app
        .post(
            "/v1/commands/jobs",
            &jobs_only,
            json!({"agent_id": "a", "kind": "k"}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let a = app
        .post(
            "/v1/commands/journal-entries",
            &jobs_only,
            json!({"effective_date": "2026-01-31", "lines": []}),
        )
        .await;
    assert_problem(&a, 403, "FORBIDDEN");
    let reader = scoped(&app, "analyst", &["jobs:read"]).await;
    assert_eq!(app.get("/v1/queries/jobs", &reader, None).await.status, 200);
    assert_problem(
        &app.get("/v1/queries/accounts", &reader, None).await,
        403,
        "FORBIDDEN",
    );
    // An unknown scope is refused at issuance rather than silently useless.
    let a = app
        .post(
            &format!("/v1/commands/users/{}/tokens", id()),
            &app.admin,
            json!({"role": "writer", "scopes": ["jobs:delete"]}),
        )
        .await;
    assert_problem(&a, 422, "VALIDATION_FAILED");
    let _: Value = a.body;
}
