//! API start-up against a long history of tokens: a real `chronicle serve` process, timed
//! from spawn until it answers `/health/live` (it reads the revoked tokens before it
//! listens). The log holds tokens issued and revoked over a long past — nearly all expired
//! by now, as a real history's are — plus a few revocations of tokens still valid. The first
//! start after the history was written reads it from the log (and leaves a snapshot); the
//! next starts from the snapshot. Measured at two sizes, one ten times the other: start-up
//! from the snapshot should not grow with the history.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chronicle_events::domain::user::{Role, TokenIssued, TokenRevoked};
use chronicle_events::{
    Actor, AppendRequest, Domain, EventLog, Expected, JetStreamLog, PendingEvent, StreamId,
    StreamWrite,
};
use chrono::Utc;
use futures::StreamExt;
use uuid::Uuid;

use crate::Args;
use crate::report::{Report, Spread};

/// Events per user: five tokens issued and revoked, all long expired but, for every 100th
/// user, the last, still valid.
const PER_USER: usize = 10;

/// Users whose histories go into one atomic append (500 events, under the server's 1 000).
const USERS_PER_APPEND: usize = 50;

/// One user's token history.
fn history(u: usize) -> Result<StreamWrite> {
    let stream = StreamId::new(Domain::User, format!("user-{u}"))?;
    let now = Utc::now();
    let actor = Actor::system("bench");
    let mut events = Vec::with_capacity(PER_USER);
    let mut tokens = Vec::new();
    for i in 0..PER_USER / 2 {
        let valid = u.is_multiple_of(100) && i == PER_USER / 2 - 1;
        let issued_at = if valid {
            now
        } else {
            now - chrono::Duration::days(30)
        };
        let token = TokenIssued {
            jti: Uuid::now_v7(),
            role: Role::Writer,
            scopes: vec![],
            issued_at,
            expires_at: issued_at + chrono::Duration::days(1),
        };
        events.push(PendingEvent::new(
            token.clone(),
            actor.clone(),
            Uuid::new_v4(),
        ));
        tokens.push(token);
    }
    for t in tokens {
        events.push(PendingEvent::new(
            TokenRevoked {
                jti: t.jti,
                reason: "rotated".into(),
                expires_at: Some(t.expires_at),
            },
            actor.clone(),
            Uuid::new_v4(),
        ));
    }
    Ok(StreamWrite {
        stream,
        expected: Expected::NO_STREAM,
        events,
    })
}

/// Appends `users` users' token histories, from user `from`.
async fn fill(log: &JetStreamLog, from: usize, users: usize) -> Result<()> {
    let groups: Vec<Vec<usize>> = (from..from + users)
        .collect::<Vec<_>>()
        .chunks(USERS_PER_APPEND)
        .map(<[usize]>::to_vec)
        .collect();
    let results: Vec<Result<()>> = futures::stream::iter(groups)
        .map(|group| {
            let log = log.clone();
            async move {
                let writes = group.into_iter().map(history).collect::<Result<_>>()?;
                log.append(AppendRequest {
                    command_id: Uuid::new_v4(),
                    writes,
                })
                .await?;
                Ok(())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Seconds from spawning `chronicle serve` to its first `/health/live` answer. The process
/// is stopped `linger` after that.
async fn start_serve(args: &Args, stream: &str, prefix: &str, linger: Duration) -> Result<f64> {
    let bin = std::env::current_exe()?.with_file_name("chronicle");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let started = Instant::now();
    let mut child = tokio::process::Command::new(&bin)
        .arg("serve")
        .env("NATS_URL", &args.nats_url)
        .env(
            "DATABASE_URL",
            args.database_url
                .as_deref()
                .unwrap_or("postgres://unused@127.0.0.1:1/x"),
        )
        .env("CHRONICLE_STREAM", stream)
        .env("CHRONICLE_SUBJECT_PREFIX", prefix)
        .env("CHRONICLE_LISTEN", format!("127.0.0.1:{port}"))
        .env("CHRONICLE_SIGNING_KEY", crate::SIGNING_KEY)
        .env("CHRONICLE_EVENT_KEY", crate::EVENT_KEY)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("spawning chronicle serve")?;
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/health/live");
    let took = loop {
        if let Ok(r) = http.get(&url).send().await
            && r.status().is_success()
        {
            break started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(300) {
            bail!("chronicle serve did not start within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    tokio::time::sleep(linger).await;
    let _ = child.kill().await;
    Ok(took.as_secs_f64())
}

pub async fn bench(args: &Args, report: &mut Report) -> Result<()> {
    let big = if args.quick { 100_000 } else { 1_000_000 };
    let small = big / 10;
    let cfg = crate::fresh_config();
    let log = JetStreamLog::connect(&args.nats_url, cfg.clone()).await?;
    let (stream, prefix) = (cfg.stream_name.clone(), cfg.subject_prefix.clone());
    let mut figures = Vec::new();
    let mut filled = 0;
    for events in [small, big] {
        let t = Instant::now();
        fill(&log, filled / PER_USER, (events - filled) / PER_USER).await?;
        filled = events;
        println!(
            "(wrote {events} token events in {:.1} s)",
            t.elapsed().as_secs_f64()
        );
        // The first start reads the history and writes a snapshot in the background: it
        // runs a little longer so that the snapshot lands.
        let from_log = start_serve(args, &stream, &prefix, Duration::from_secs(3)).await?;
        let mut from_snapshot = Vec::new();
        for _ in 0..args.repeat {
            from_snapshot.push(start_serve(args, &stream, &prefix, Duration::ZERO).await?);
        }
        let snap = Spread::of(from_snapshot);
        println!(
            "startup events={events} from_log_s {from_log:.2} from_snapshot_s {:.3}",
            snap.median
        );
        figures.push((events, from_log, snap));
    }
    let (small_snap, big_snap) = (&figures[0].2, &figures[1].2);
    let flat = big_snap.median / small_snap.median;
    for (events, from_log, snap) in &figures {
        report.row(
            &format!("API start-up with {events} token events in the log (`chronicle serve` to /health/live)"),
            format!("from the revocation snapshot: {}", snap.show(3, "s")),
            format!("reading every token event: {from_log:.2} s"),
            "flat in the count",
            "—".into(),
        );
    }
    // Flat: ten times the history adds less than 100 ms (reading it all adds seconds).
    let grew = big_snap.median - small_snap.median;
    report.row(
        &format!("API start-up, {big} vs {small} token events (from the snapshot)"),
        format!("{flat:.2}× ({:+.0} ms)", grew * 1000.0),
        format!("reading every event: {:.1}×", figures[1].1 / figures[0].1),
        "flat: < 100 ms more for 10× the history",
        if grew < 0.1 { "met" } else { "not met" }.into(),
    );
    report.ratio("startup_10x_history", Spread::of(vec![flat]));
    let last = log.last_position().await?;
    println!("(log of {last} events)");
    log.jetstream().delete_stream(&stream).await.ok();
    log.jetstream()
        .delete_stream(format!("OBJ_{stream}_REVOCATIONS"))
        .await
        .ok();
    log.jetstream()
        .delete_stream(format!("KV_{stream}_IDEMPOTENCY"))
        .await
        .ok();
    Ok(())
}
