//! Live events against real NATS: Server-Sent Events and WebSocket subscriptions resumed
//! after a position with nothing missed or repeated while commands keep coming, who sees
//! what (the agent's limits included) with `403` before anything opens, a revoked or
//! expired token ending its stream, `lagging` for a subscriber that does not read, the
//! per-token limit, delivery across a NATS restart, and messages on the stream that are
//! not events stepped past, in the history and live, by a second API process.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chronicle_events::{AppendRequest, EventLog, Expected};
use chronicle_testkit::contract::{job as job_stream, pending, submitted};
use futures::StreamExt;
use serde_json::{Value, json};
use support::{App, assert_problem};
use uuid::Uuid;

/// One Server-Sent Event (or comment).
#[derive(Debug, Default, Clone)]
struct Frame {
    id: Option<u64>,
    event: Option<String>,
    data: String,
    comment: Option<String>,
}

/// A minimal SSE reader over a streaming response.
struct Sse {
    response: reqwest::Response,
    buf: String,
}

impl Sse {
    async fn open(app: &App, query: &str, token: &str, last_event_id: Option<u64>) -> Sse {
        let mut r = app
            .http
            .get(format!("{}/v1/subscribe{query}", app.base))
            .bearer_auth(token);
        if let Some(id) = last_event_id {
            r = r.header("Last-Event-ID", id.to_string());
        }
        let response = r.send().await.unwrap();
        assert_eq!(response.status(), 200, "{query}");
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "{query}"
        );
        Sse {
            response,
            buf: String::new(),
        }
    }

    /// The next frame, or `None` when the server closed the stream.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut f = Frame::default();
                for line in block.lines() {
                    if let Some(c) = line.strip_prefix(':') {
                        f.comment = Some(c.trim().to_owned());
                    } else if let Some((k, v)) = line.split_once(':') {
                        let v = v.strip_prefix(' ').unwrap_or(v);
                        match k {
                            "id" => f.id = v.parse().ok(),
                            "event" => f.event = Some(v.to_owned()),
                            "data" => f.data.push_str(v),
                            _ => {}
                        }
                    }
                }
                return Some(f);
            }
            match self.response.chunk().await {
                Ok(Some(bytes)) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// The next event (comments skipped), with a deadline.
    async fn event(&mut self, within: Duration) -> Option<Frame> {
        tokio::time::timeout(within, async {
            loop {
                match self.next().await {
                    Some(f) if f.comment.is_some() && f.event.is_none() => continue,
                    other => return other,
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no event within {within:?}"))
    }
}

async fn submit(app: &App, kind: &str, i: usize) -> (String, u64) {
    let a = app
        .post(
            "/v1/commands/jobs",
            &app.admin,
            json!({"agent_id": "a", "kind": kind, "input": i}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    (
        a.body["stream"].as_str().unwrap().to_owned(),
        a.body["position"].as_u64().unwrap(),
    )
}

/// Submits `n` jobs from another task, and answers their streams when done.
fn submit_in_background(
    app: &Arc<App>,
    kind: &str,
    n: usize,
) -> tokio::task::JoinHandle<Vec<String>> {
    let (app, kind) = (app.clone(), kind.to_owned());
    tokio::spawn(async move {
        let mut streams = Vec::new();
        for i in 0..n {
            streams.push(submit(&app, &kind, i).await.0);
        }
        streams
    })
}

#[tokio::test]
async fn sse_resumes_after_a_position_with_nothing_missed_or_repeated() {
    let app = Arc::new(App::start().await);
    let kind = "k";
    let mut expected = Vec::new();
    for i in 0..20 {
        expected.push(submit(&app, kind, i).await.0);
    }
    let writer = submit_in_background(&app, kind, 200);
    // From the start of the log, submissions only: history, then live, with no seam.
    let mut sse = Sse::open(
        &app,
        "?stream=job.*&type=JobSubmitted&from_position=0",
        &app.admin,
        None,
    )
    .await;
    let mut got: Vec<(u64, String)> = Vec::new();
    while got.len() < 100 {
        let f = sse
            .event(Duration::from_secs(10))
            .await
            .expect("the stream stays open");
        assert_eq!(f.event.as_deref(), Some("JobSubmitted"));
        let env: Value = serde_json::from_str(&f.data).unwrap();
        assert_eq!(env["position"].as_u64(), f.id, "id is the position");
        assert!(env["version"].as_u64().is_some());
        got.push((f.id.unwrap(), env["stream"].as_str().unwrap().to_owned()));
    }
    drop(sse);
    // Resume after the last one seen, as a browser's EventSource does, while more come.
    let last = got.last().unwrap().0;
    let mut sse = Sse::open(
        &app,
        "?stream=job.*&type=JobSubmitted",
        &app.admin,
        Some(last),
    )
    .await;
    expected.extend(writer.await.unwrap());
    while got.len() < expected.len() {
        let f = sse
            .event(Duration::from_secs(10))
            .await
            .expect("the stream stays open");
        let env: Value = serde_json::from_str(&f.data).unwrap();
        got.push((f.id.unwrap(), env["stream"].as_str().unwrap().to_owned()));
    }
    let positions: Vec<u64> = got.iter().map(|g| g.0).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "in log order, none twice"
    );
    let streams: Vec<String> = got.into_iter().map(|g| g.1).collect();
    assert_eq!(streams, expected, "every submission once, in order");
    // And nothing more comes for them: the next event is a new one.
    let (stream, position) = submit(&app, kind, 999).await;
    let f = sse.event(Duration::from_secs(10)).await.unwrap();
    assert_eq!(f.id, Some(position));
    assert!(f.data.contains(&stream));
}

#[tokio::test]
async fn websocket_resumes_after_a_position_with_nothing_missed_or_repeated() {
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let app = Arc::new(App::start().await);
    let ws_url = |query: &str| format!("{}/v1/subscribe/ws{query}", app.base.replace("http", "ws"));
    let connect = |query: String, token: String| async move {
        let mut req = query.into_client_request().unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        tokio_tungstenite::connect_async(req).await.unwrap().0
    };
    let mut expected = Vec::new();
    for i in 0..10 {
        expected.push(submit(&app, "w", i).await.0);
    }
    let writer = submit_in_background(&app, "w", 100);
    let mut ws = connect(
        ws_url("?stream=job.*&type=JobSubmitted&from_position=0"),
        app.admin.clone(),
    )
    .await;
    let mut got: Vec<(u64, String)> = Vec::new();
    async fn frame(
        ws: &mut tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
    ) -> Value {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .expect("a frame within 10 s")
                .expect("the socket stays open")
                .unwrap();
            match m {
                Message::Text(t) => return serde_json::from_str(&t).unwrap(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("{other:?}"),
            }
        }
    }
    while got.len() < 50 {
        let env = frame(&mut ws).await;
        got.push((
            env["position"].as_u64().unwrap(),
            env["stream"].as_str().unwrap().to_owned(),
        ));
    }
    ws.close(None).await.unwrap();
    let last = got.last().unwrap().0;
    let mut ws = connect(
        ws_url(&format!(
            "?stream=job.*&type=JobSubmitted&from_position={last}"
        )),
        app.admin.clone(),
    )
    .await;
    expected.extend(writer.await.unwrap());
    while got.len() < expected.len() {
        let env = frame(&mut ws).await;
        got.push((
            env["position"].as_u64().unwrap(),
            env["stream"].as_str().unwrap().to_owned(),
        ));
    }
    let positions: Vec<u64> = got.iter().map(|g| g.0).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(got.into_iter().map(|g| g.1).collect::<Vec<_>>(), expected);

    // A browser's way in: the token as a subprotocol, accepted back.
    let mut req = ws_url("?stream=job.*").into_client_request().unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        format!("chronicle.bearer.{}", app.admin).parse().unwrap(),
    );
    let (mut ws, response) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        format!("chronicle.bearer.{}", app.admin).as_str()
    );
    let (stream, _) = submit(&app, "w", 7).await;
    assert_eq!(frame(&mut ws).await["stream"], stream.as_str());
    // Without any token: refused before the upgrade.
    let refused = app
        .http
        .get(format!("{}/v1/subscribe/ws", app.base))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
}

#[tokio::test]
async fn each_role_sees_only_what_it_may_and_is_refused_before_anything_opens() {
    let app = App::start().await;
    let (writer, _) = app.token("w1", "writer").await;
    let forbidden = |a: support::Answer| assert_problem(&a, 403, "FORBIDDEN");
    let get = |path: String, token: String| {
        let app = &app;
        async move { app.get(&path, &token, None).await }
    };
    forbidden(get("/v1/subscribe?stream=user.w1".into(), writer.clone()).await);
    forbidden(get("/v1/subscribe?stream=seal.*".into(), writer.clone()).await);
    assert_problem(
        &get("/v1/subscribe?stream=job.a.b".into(), writer.clone()).await,
        400,
        "MALFORMED_REQUEST",
    );
    assert_problem(
        &get("/v1/subscribe?type=NoSuchEvent".into(), writer.clone()).await,
        400,
        "MALFORMED_REQUEST",
    );
    assert_problem(
        &get(
            "/v1/subscribe?from_position=99999999".into(),
            writer.clone(),
        )
        .await,
        400,
        "MALFORMED_REQUEST",
    );
    assert_problem(
        &get("/v1/subscribe?sudo=1".into(), writer.clone()).await,
        400,
        "MALFORMED_REQUEST",
    );
    let (scoped, _) = {
        let a = app
            .post(
                "/v1/commands/users/s1/tokens",
                &app.admin,
                json!({"role": "analyst", "scopes": ["jobs:read"]}),
            )
            .await;
        (a.body["token"].as_str().unwrap().to_owned(), ())
    };
    forbidden(get("/v1/subscribe?stream=entry.*".into(), scoped.clone()).await);

    // A writer following everything it may see gets jobs, never tokens.
    let mut sse = Sse::open(&app, "", &writer, None).await;
    app.token("someone", "analyst").await;
    let (job, position) = submit(&app, "r", 1).await;
    let f = sse.event(Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        f.id,
        Some(position),
        "the token issued in between is not seen"
    );
    assert!(f.data.contains(&job));
    drop(sse);

    // An agent follows its own job, its own stream and the approval of its own escalated
    // command, and nothing else.
    for (id, maturity) in [("bot", "STUDENT"), ("other", "STUDENT")] {
        let a = app
            .post(
                "/v1/commands/agents",
                &app.admin,
                json!({"agent_id": id, "name": id, "maturity": maturity}),
            )
            .await;
        assert_eq!(a.status, 201, "{}", a.body);
    }
    let (agent, _) = app.token("bot", "agent").await;
    let mine = app
        .post(
            "/v1/commands/jobs",
            &app.admin,
            json!({"job_id": "mine", "agent_id": "bot", "kind": "k"}),
        )
        .await;
    assert_eq!(mine.status, 201);
    app.post(
        "/v1/commands/jobs",
        &app.admin,
        json!({"job_id": "theirs", "agent_id": "other", "kind": "k"}),
    )
    .await;
    let mut own = Sse::open(&app, "?stream=job.mine&stream=agent.bot", &agent, Some(0)).await;
    let f = own.event(Duration::from_secs(10)).await.unwrap();
    assert!(f.data.contains("\"job.mine\"") || f.data.contains("\"agent.bot\""));
    drop(own);
    for q in [
        "?stream=job.theirs",
        "?stream=job.*",
        "",
        "?stream=agent.other",
        "?stream=job.nosuchjob",
        "?stream=chart.*",
    ] {
        forbidden(get(format!("/v1/subscribe{q}"), agent.clone()).await);
    }
    // A MODERATE command from a STUDENT is escalated: the agent may follow its approval.
    let escalated = app
        .post(
            "/v1/commands/jobs/mine/cancel",
            &agent,
            json!({"reason": "not needed"}),
        )
        .await;
    assert_eq!(escalated.status, 202, "{}", escalated.body);
    let approval = escalated.body["approval_id"].as_str().unwrap();
    let mut sse = Sse::open(
        &app,
        &format!("?stream=approval.{approval}"),
        &agent,
        Some(0),
    )
    .await;
    let f = sse.event(Duration::from_secs(10)).await.unwrap();
    assert_eq!(f.event.as_deref(), Some("ApprovalRequested"));
    let a = app
        .post(
            "/v1/commands/approvals",
            &app.admin,
            json!({"approval_id": "ap2", "action": "x", "payload": {}, "reason": "r"}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    forbidden(get("/v1/subscribe?stream=approval.ap2".into(), agent.clone()).await);
}

#[tokio::test]
async fn a_revoked_or_expired_token_ends_its_stream() {
    let app = App::start().await;
    let (token, jti) = app.token("viewer", "analyst").await;
    let mut sse = Sse::open(&app, "?stream=job.*", &token, None).await;
    let revoked = app
        .post(
            &format!("/v1/commands/users/viewer/tokens/{jti}/revoke"),
            &app.admin,
            json!({"reason": "left"}),
        )
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    let at = Instant::now();
    let mut last = None;
    while let Some(f) = tokio::time::timeout(Duration::from_secs(5), sse.next())
        .await
        .unwrap()
    {
        last = Some(f);
    }
    assert!(
        at.elapsed() < Duration::from_secs(1),
        "ended {:?} after the revoke",
        at.elapsed()
    );
    assert_eq!(
        last.unwrap().comment.as_deref(),
        Some("the token has been revoked")
    );

    // A token that expires while subscribed: ended at its expiry.
    let claims = chronicle_api::auth::Claims {
        iss: "chronicle".into(),
        aud: "chronicle".into(),
        sub: "short".into(),
        role: chronicle_events::domain::user::Role::Analyst,
        scope: String::new(),
        jti: Uuid::now_v7(),
        iat: chrono::Utc::now().timestamp(),
        exp: chrono::Utc::now().timestamp() + 2,
    };
    let short = app.state.signer.sign(&claims).unwrap();
    let mut sse = Sse::open(&app, "?stream=job.*", &short, None).await;
    let mut last = None;
    while let Some(f) = tokio::time::timeout(Duration::from_secs(10), sse.next())
        .await
        .unwrap()
    {
        last = Some(f);
    }
    assert_eq!(
        last.unwrap().comment.as_deref(),
        Some("the token has expired")
    );
}

#[tokio::test]
async fn a_subscriber_that_does_not_read_is_told_lagging_and_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tag = Uuid::new_v4().simple().to_string();
    let mut settings = support::settings_for(
        &format!("T{tag}"),
        &format!("t{}.ev", &tag[..12]),
        &support::database_url(),
    );
    settings.subscriber_lag = 64;
    let app = App::start_with(settings).await;
    // A client that asks, then does not read, with a small receive window.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let addr: std::net::SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    let mut conn = socket.connect(addr).await.unwrap();
    conn.write_all(
        format!(
            "GET /v1/subscribe?stream=job.*&from_position=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {}\r\n\r\n",
            app.admin
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Far more than the ring holds and the sockets buffer: 20 000 events, 100 an append.
    let log = app.state.log.clone();
    futures::stream::iter(0..200)
        .for_each_concurrent(16, |_| {
            let log = log.clone();
            async move {
                let job = job_stream();
                let mut events = vec![submitted(&job)];
                events.extend(
                    (1..100).map(|_| pending(chronicle_events::domain::job::JobStarted {})),
                );
                log.append(AppendRequest::single(
                    Uuid::new_v4(),
                    job,
                    Expected::NO_STREAM,
                    events,
                ))
                .await
                .unwrap();
            }
        })
        .await;
    // Now read it all: it ends with `lagging` and the position reached, then the close.
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), conn.read_to_end(&mut all))
        .await
        .expect("the server closes the stream")
        .unwrap();
    let text = String::from_utf8_lossy(&all);
    let tail: Vec<&str> = text.trim_end().rsplit("\n\n").take(2).collect();
    let lagging = tail
        .iter()
        .find(|b| b.contains("event: lagging"))
        .unwrap_or_else(|| {
            panic!(
                "no lagging event at the end: {:?}",
                &text[text.len().saturating_sub(400)..]
            )
        });
    let reached: u64 = lagging
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(reached < log.last_position().await.unwrap());
    assert_eq!(app.state.live.subscribers(), 0, "closing freed it");
}

#[tokio::test]
async fn a_token_holds_a_limited_number_of_subscriptions() {
    let tag = Uuid::new_v4().simple().to_string();
    let mut settings = support::settings_for(
        &format!("T{tag}"),
        &format!("t{}.ev", &tag[..12]),
        &support::database_url(),
    );
    settings.subscriptions_per_token = 2;
    let app = App::start_with(settings).await;
    let one = Sse::open(&app, "", &app.admin, None).await;
    let _two = Sse::open(&app, "", &app.admin, None).await;
    let three = app.get("/v1/subscribe", &app.admin, None).await;
    assert_problem(&three, 429, "RATE_LIMITED");
    // Another token has its own.
    let (other, _) = app.token("x", "auditor").await;
    let _mine = Sse::open(&app, "", &other, None).await;
    // Closing one frees its place.
    drop(one);
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.state.live.subscribers() > 2 {
        assert!(Instant::now() < deadline, "a closed subscription is freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _again = Sse::open(&app, "", &app.admin, None).await;
}

#[tokio::test]
async fn a_client_resuming_after_a_nats_restart_gets_every_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut nats = chronicle_api::dev::start_nats(dir.path(), port).unwrap();
    let tag = Uuid::new_v4().simple().to_string();
    let mut settings = support::settings_for(
        &format!("T{tag}"),
        &format!("t{}.ev", &tag[..12]),
        &support::database_url(),
    );
    settings.nats_url = Some(format!("nats://127.0.0.1:{port}"));
    let app = Arc::new(App::start_with(settings).await);

    // Commands keep coming throughout; those acknowledged must each arrive once.
    let writer = {
        let app = app.clone();
        tokio::spawn(async move {
            let mut accepted = BTreeSet::new();
            let started = Instant::now();
            let mut i = 0;
            while started.elapsed() < Duration::from_secs(9) {
                i += 1;
                let a = app
                    .post(
                        "/v1/commands/jobs",
                        &app.admin,
                        json!({"agent_id": "a", "kind": "n", "input": i}),
                    )
                    .await;
                if a.status == 201 {
                    accepted.insert(a.body["stream"].as_str().unwrap().to_owned());
                }
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
            accepted
        })
    };
    // The reader stops once it has as many as were acknowledged (or after 30 s).
    let (done_tx, done) = tokio::sync::watch::channel(None::<usize>);
    let reader = {
        let app = app.clone();
        tokio::spawn(async move {
            let mut seen: Vec<(u64, String)> = Vec::new();
            let mut last = 0;
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(30)
                && done.borrow().is_none_or(|n| seen.len() < n)
            {
                let r = app
                    .http
                    .get(format!(
                        "{}/v1/subscribe?stream=job.*&type=JobSubmitted",
                        app.base
                    ))
                    .bearer_auth(&app.admin)
                    .header("Last-Event-ID", last.to_string())
                    .send()
                    .await;
                let Ok(response) = r else { continue };
                if response.status() != 200 {
                    // The log is away for a moment: ask again, from where we were.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                let mut sse = Sse {
                    response,
                    buf: String::new(),
                };
                loop {
                    match tokio::time::timeout(Duration::from_secs(3), sse.next()).await {
                        Ok(Some(f)) if f.event.as_deref() == Some("JobSubmitted") => {
                            let env: Value = serde_json::from_str(&f.data).unwrap();
                            last = f.id.unwrap();
                            seen.push((last, env["stream"].as_str().unwrap().to_owned()));
                        }
                        Ok(Some(_)) => {}
                        // Ended, or quiet: reconnect with the last position.
                        Ok(None) | Err(_) => break,
                    }
                    if done.borrow().is_some_and(|n| seen.len() >= n) {
                        break;
                    }
                }
            }
            seen
        })
    };
    tokio::time::sleep(Duration::from_millis(2000)).await;
    nats.stop();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let _nats = chronicle_api::dev::start_nats(dir.path(), port).unwrap();
    let accepted = writer.await.unwrap();
    done_tx.send_replace(Some(accepted.len()));
    let seen = reader.await.unwrap();
    let positions: Vec<u64> = seen.iter().map(|s| s.0).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "never a position twice"
    );
    let streams: BTreeSet<String> = seen.iter().map(|s| s.1.clone()).collect();
    assert_eq!(streams.len(), seen.len(), "never an event twice");
    for s in &accepted {
        assert!(
            streams.contains(s),
            "{s} was acknowledged but not delivered"
        );
    }
    assert!(accepted.len() > 50);
}

/// A message on a job's subject that no event key authenticates (someone with publish
/// rights on the stream) is not an event: a subscription on another API process steps
/// past it in the history and live, and goes on with the events around it.
#[tokio::test]
async fn messages_that_are_not_events_are_stepped_past_in_history_and_live() {
    let app = App::start().await;
    let peer = app.peer().await;
    let js = app.state.log.jetstream().clone();
    let (stream, _) = submit(&app, "k", 0).await;
    let forge = |n: u32| {
        let js = js.clone();
        let subject = format!("{}.{stream}", app.prefix);
        async move {
            js.publish(subject, format!("{{\"forged\":{n}}}").into())
                .await
                .unwrap()
                .await
                .unwrap()
                .sequence
        }
    };
    let forged_in_history = forge(1).await;
    let (_, second) = submit(&app, "k", 1).await;
    let mut sse = Sse::open(&peer, "?stream=job.*&from_position=0", &peer.admin, None).await;
    let mut got = Vec::new();
    while got.last() != Some(&second) {
        got.push(
            sse.event(Duration::from_secs(10))
                .await
                .unwrap()
                .id
                .unwrap(),
        );
    }
    let forged_live = forge(2).await;
    let (_, third) = submit(&app, "k", 2).await;
    got.push(
        sse.event(Duration::from_secs(10))
            .await
            .unwrap()
            .id
            .unwrap(),
    );
    assert_eq!(got.last(), Some(&third), "the live forgery is stepped past");
    assert!(!got.contains(&forged_in_history) && !got.contains(&forged_live));
    assert!(forged_in_history < second && second < forged_live && forged_live < third);
}
