//! Chronicle over HTTP, as clients use it: ingest against raw JetStream publishes,
//! contention on hot aggregates, read-your-writes, and each process's peak memory.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chronicle_events::{EventLog, JetStreamLog, StreamId};
use futures::StreamExt;
use serde_json::json;

use crate::procs::Chronicle;
use crate::report::{Report, Spread, num, percentile_ms};
use crate::{Args, IN_FLIGHT, fresh_config, raw_publishes};

fn job_body(i: usize) -> serde_json::Value {
    json!({
        "agent_id": format!("agent-{}", i % 50),
        "kind": "summarise",
        "input": {"doc": format!("report-{i}.pdf"), "pages": i % 40},
    })
}

/// `n` job submissions (new aggregates), `IN_FLIGHT` clients; commands/s and latencies.
async fn ingest(ch: &Chronicle, n: usize) -> Result<(f64, Vec<Duration>)> {
    let started = Instant::now();
    let results: Vec<Result<Duration>> = futures::stream::iter(0..n)
        .map(|i| async move {
            let t = Instant::now();
            let r = ch.post("/v1/commands/jobs", &job_body(i)).send().await?;
            anyhow::ensure!(r.status() == 201, "submit answered {}", r.status());
            Ok(t.elapsed())
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let mut latencies = results.into_iter().collect::<Result<Vec<_>>>()?;
    latencies.sort();
    Ok((n as f64 / elapsed.as_secs_f64(), latencies))
}

/// Commands per batch, and batches in flight, for the batch ingest.
const PER_BATCH: usize = 100;
const BATCHES_IN_FLIGHT: usize = 4;

/// The same `n` job submissions as [`ingest`], as `POST /v1/commands/batch` of
/// `PER_BATCH` each, `BATCHES_IN_FLIGHT` at a time; commands/s.
async fn ingest_batched(ch: &Chronicle, n: usize) -> Result<f64> {
    let started = Instant::now();
    let results: Vec<Result<()>> = futures::stream::iter((0..n).step_by(PER_BATCH))
        .map(|first| async move {
            let commands: Vec<_> = (first..(first + PER_BATCH).min(n))
                .map(|i| json!({"path": "/v1/commands/jobs", "body": job_body(i)}))
                .collect();
            let r = ch
                .post("/v1/commands/batch", &json!({ "commands": commands }))
                .send()
                .await?;
            anyhow::ensure!(r.status() == 200, "batch answered {}", r.status());
            let body: serde_json::Value = r.json().await?;
            let results = body["results"].as_array().context("results")?;
            anyhow::ensure!(
                results.iter().all(|r| r["status"] == 201),
                "a command of the batch was refused"
            );
            Ok(())
        })
        .buffer_unordered(BATCHES_IN_FLIGHT)
        .collect()
        .await;
    let elapsed = started.elapsed();
    results.into_iter().collect::<Result<Vec<()>>>()?;
    Ok(n as f64 / elapsed.as_secs_f64())
}

pub async fn bench(args: &Args, report: &mut Report) -> Result<()> {
    let ch = Chronicle::start(args).await?;
    let result = run(args, &ch, report).await;
    let (serve, project) = ch.peak_rss_mib();
    report.row(
        "memory: peak RSS after every HTTP benchmark",
        format!(
            "serve {} MiB, project {} MiB",
            num(serve, 0),
            num(project, 0)
        ),
        "—".into(),
        "stated",
        "stated".into(),
    );
    ch.stop().await;
    result
}

/// The floor of the HTTP stack alone: `n` answers that touch neither NATS nor Postgres,
/// per second.
async fn http_floor(ch: &Chronicle, n: usize) -> Result<f64> {
    let t = Instant::now();
    let floor: Vec<Result<()>> = futures::stream::iter(0..n)
        .map(|_| async move {
            let r = ch.get("/health/live").send().await?;
            anyhow::ensure!(r.status() == 200, "live answered {}", r.status());
            Ok(())
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    floor.into_iter().collect::<Result<Vec<()>>>()?;
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

async fn run(args: &Args, ch: &Chronicle, report: &mut Report) -> Result<()> {
    let n = if args.quick { 6_000 } else { 30_000 };
    let log = ch.log(&args.nats_url).await?;
    let js = log.jetstream().clone();

    println!("== ingest: {n} HTTP job submissions, {IN_FLIGHT} clients, new aggregate each");
    ingest(ch, 500).await?; // warm connections, caches and the JIT-free rest
    let (sample, _) = log.read_raw_batch(1, &log.subject_filter(None), 1).await?;
    let payload = sample.first().context("the log is empty")?.payload.clone();
    let mut chronicle = Vec::new();
    let mut raw = Vec::new();
    let mut p50 = Vec::new();
    let mut p99 = Vec::new();
    // nats-server's CPU per accepted command (until the read models have it too: the
    // deliveries to the projector are part of a command's cost) and per raw publish.
    let nats = crate::procs::nats_pid(&args.nats_url);
    let ticks = || nats.and_then(crate::procs::cpu_ticks);
    let mut nats_ratio = Vec::new();
    let mut floors = Vec::new();
    for round in 0..args.repeat {
        // The floor in every round, just before its commands: this shared machine's speed
        // drifts between minutes, and a ratio of figures taken apart would show the drift.
        let floor = http_floor(ch, n).await?;
        println!(
            "round {round}: HTTP floor: GET /health/live {floor:.0}/s with {IN_FLIGHT} clients"
        );
        floors.push(floor);
        let before = ticks();
        let (c, latencies) = ingest(ch, n).await?;
        ch.wait_for_read_models(log.last_position().await?).await?;
        // The sealer grows the tree and seals within its half-second tick: its reads are
        // part of what the commands cost, and the raw run below starts on a quiet server.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let command_ticks = ticks().zip(before).map(|(a, b)| a - b);
        let raw_cfg = fresh_config();
        js.create_stream(raw_cfg.stream_config()).await?;
        let before = ticks();
        let r = raw_publishes(&js, &raw_cfg.subject_prefix, payload.clone(), n).await?;
        let publish_ticks = ticks().zip(before).map(|(a, b)| a - b);
        js.delete_stream(&raw_cfg.stream_name).await.ok();
        if let (Some(c), Some(p)) = (command_ticks, publish_ticks) {
            println!(
                "round {round}: nats-server CPU {c} ticks for {n} commands, {p} for {n} raw publishes"
            );
            nats_ratio.push(c as f64 / p.max(1) as f64);
        }
        println!(
            "round {round}: chronicle {c:.0} commands/s (p50 {:.2} ms, p99 {:.2} ms), raw publish {r:.0} msgs/s, ratio {:.2}",
            percentile_ms(&latencies, 0.5),
            percentile_ms(&latencies, 0.99),
            c / r
        );
        chronicle.push(c);
        raw.push(r);
        p50.push(percentile_ms(&latencies, 0.5));
        p99.push(percentile_ms(&latencies, 0.99));
    }
    let ratio = Spread::of_ratios(&chronicle, &raw);
    let of_floor = Spread::of_ratios(&chronicle, &floors);
    let floor = Spread::of(floors);
    report.row(
        &format!("HTTP floor: GET /health/live (no NATS, no Postgres), {IN_FLIGHT} clients, before each round"),
        floor.show(0, "answers/s"),
        "—".into(),
        "—",
        "the most any HTTP command could reach here".into(),
    );
    report.row(
        &format!("ingest: {n} HTTP commands, {IN_FLIGHT} clients, distinct aggregates"),
        format!(
            "{}, p50 {}, p99 {}",
            Spread::of(chronicle).show(0, "commands/s"),
            Spread::of(p50).show(2, "ms"),
            Spread::of(p99).show(2, "ms")
        ),
        format!(
            "publish with ack, {IN_FLIGHT} in flight: {}",
            Spread::of(raw).show(0, "msgs/s")
        ),
        "ratio ≥ 0.6",
        met(ratio.median >= 0.6, &format!("{:.2}", ratio.median)),
    );
    report.ratio("ingest_vs_raw_publish", ratio);
    report.row(
        &format!("ingest over HTTP ÷ the HTTP floor of the same round, {IN_FLIGHT} clients"),
        format!("{:.2}", of_floor.median),
        format!("GET /health/live {}", floor.show(0, "answers/s")),
        "ratio ≥ 0.5",
        met(of_floor.median >= 0.5, &format!("{:.2}", of_floor.median)),
    );
    report.ratio("ingest_vs_http_floor", of_floor);
    if nats_ratio.is_empty() {
        report.note(
            "nats-server's CPU was not measured (no local nats-server on NATS_URL's port)".into(),
        );
    } else {
        let cpu = Spread::of(nats_ratio);
        report.row(
            "nats-server CPU per accepted HTTP command (until projected) ÷ per raw publish",
            format!("{:.2}×", cpu.median),
            "/proc/<nats-server>/stat around each run".into(),
            "≤ 2",
            met(cpu.median <= 2.0, &format!("{:.2}", cpu.median)),
        );
        report.ratio("nats_cpu_per_command_vs_publish", cpu);
    }

    // The same commands in batches, against single requests, same rounds.
    println!(
        "== batch: {n} job submissions as batches of {PER_BATCH}, {BATCHES_IN_FLIGHT} in flight, against single requests"
    );
    let (mut batched, mut single) = (Vec::new(), Vec::new());
    for round in 0..args.repeat {
        let b = ingest_batched(ch, n).await?;
        let (s, _) = ingest(ch, n).await?;
        println!(
            "round {round}: batches {b:.0} commands/s, single requests {s:.0} commands/s, ratio {:.2}",
            b / s
        );
        batched.push(b);
        single.push(s);
    }
    let batch_ratio = Spread::of_ratios(&batched, &single);
    report.row(
        &format!("ingest as POST /v1/commands/batch of {PER_BATCH}, {BATCHES_IN_FLIGHT} in flight"),
        Spread::of(batched).show(0, "commands/s"),
        format!(
            "the same as single requests, {IN_FLIGHT} clients: {}",
            Spread::of(single).show(0, "commands/s")
        ),
        "—",
        format!("{:.2}× single requests", batch_ratio.median),
    );
    report.ratio("batch_vs_single_requests", batch_ratio);

    // The projector ran beside the ingest: how far behind was it when the last command
    // was answered?
    let caught_up = ch.wait_for_read_models(log.last_position().await?).await?;
    report.note(format!(
        "after the last ingest round the read models reached the log's end {} ms later",
        num(caught_up.as_secs_f64() * 1000.0, 0)
    ));

    contention(args, ch, &log, report).await?;
    read_your_writes(args, ch, report).await?;
    crate::peer::bench(args, ch, log, report).await?;
    Ok(())
}

pub fn met(yes: bool, detail: &str) -> String {
    if yes {
        format!("yes ({detail})")
    } else {
        format!("**no** ({detail})")
    }
}

/// 64 clients issuing tokens for 8 users: every command lands on one of 8 hot streams.
async fn contention(
    args: &Args,
    ch: &Chronicle,
    log: &JetStreamLog,
    report: &mut Report,
) -> Result<()> {
    const HOT: usize = 8;
    let n = if args.quick { 2_000 } else { 8_000 };
    println!("== contention: {n} commands from {IN_FLIGHT} clients on {HOT} hot aggregates");
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let users: Vec<String> = (0..HOT).map(|i| format!("hot-{tag}-{i}")).collect();
    let conflicts_before = ch.metric("chronicle_command_conflicts_total").await?;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let answers: Vec<Result<(usize, u16, Option<String>)>> = futures::stream::iter(0..n)
        .map(|_| {
            let users = &users;
            let next = next.clone();
            async move {
                let i = next.fetch_add(1, Ordering::Relaxed) % HOT;
                let r = ch
                    .post(
                        &format!("/v1/commands/users/{}/tokens", users[i]),
                        &json!({"role": "analyst"}),
                    )
                    .send()
                    .await?;
                let status = r.status().as_u16();
                let body: serde_json::Value = r.json().await.unwrap_or_default();
                Ok((i, status, body["jti"].as_str().map(str::to_owned)))
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let conflicts = ch.metric("chronicle_command_conflicts_total").await? - conflicts_before;
    let mut accepted: HashMap<usize, Vec<String>> = HashMap::new();
    let mut refused = 0usize;
    for a in answers {
        let (i, status, jti) = a?;
        match (status, jti) {
            (201, Some(jti)) => accepted.entry(i).or_default().push(jti),
            _ => refused += 1,
        }
    }
    // Every 2xx is in its stream exactly once, and nothing else is.
    let mut lost = 0usize;
    let mut doubled = 0usize;
    let mut extra = 0usize;
    for (i, user) in users.iter().enumerate() {
        let stream = StreamId::new(chronicle_events::Domain::User, user.as_str())?;
        let events = log.read_stream(&stream, 1).await?;
        let mut logged: HashMap<String, usize> = HashMap::new();
        for e in &events {
            if let Some(jti) = e.envelope.data["jti"].as_str() {
                *logged.entry(jti.to_owned()).or_default() += 1;
            }
        }
        let answered: HashSet<&String> = accepted.get(&i).into_iter().flatten().collect();
        for jti in &answered {
            match logged.get(*jti) {
                None => lost += 1,
                Some(1) => {}
                Some(_) => doubled += 1,
            }
        }
        extra += logged.keys().filter(|j| !answered.contains(j)).count();
    }
    let ok = accepted.values().map(Vec::len).sum::<usize>();
    let rate = n as f64 / elapsed.as_secs_f64();
    report.row(
        &format!("contention: {IN_FLIGHT} clients on {HOT} hot aggregates"),
        format!(
            "{} commands/s; {ok} accepted, {refused} refused; {} conflicts retried",
            num(rate, 0),
            num(conflicts, 0)
        ),
        "—".into(),
        "no lost or doubled command",
        met(
            lost == 0 && doubled == 0 && extra == 0,
            &format!("lost {lost}, doubled {doubled}, unanswered in log {extra}"),
        ),
    );
    anyhow::ensure!(
        lost == 0 && doubled == 0 && extra == 0,
        "contention lost {lost}, doubled {doubled}, {extra} in the log without a 2xx"
    );
    Ok(())
}

/// A command, then a query of what it changed with `X-Chronicle-Min-Position`.
async fn read_your_writes(args: &Args, ch: &Chronicle, report: &mut Report) -> Result<()> {
    let samples = if args.quick { 300 } else { 1_000 };
    println!("== read-your-writes: {samples} × (submit a job, then read it at that position)");
    let mut pairs = Vec::with_capacity(samples);
    let mut waits = Vec::with_capacity(samples);
    for i in 0..samples {
        let t = Instant::now();
        let r = ch.post("/v1/commands/jobs", &job_body(i)).send().await?;
        anyhow::ensure!(r.status() == 201, "submit answered {}", r.status());
        let body: serde_json::Value = r.json().await?;
        let position = body["position"].as_u64().context("no position")?;
        let stream = body["stream"].as_str().context("no stream")?;
        let job = stream.strip_prefix("job.").unwrap_or(stream);
        let q = Instant::now();
        let r = ch
            .get(&format!("/v1/queries/jobs/{job}"))
            .header("X-Chronicle-Min-Position", position.to_string())
            .send()
            .await?;
        anyhow::ensure!(r.status() == 200, "query answered {}", r.status());
        waits.push(q.elapsed());
        pairs.push(t.elapsed());
    }
    pairs.sort();
    waits.sort();
    let p99 = percentile_ms(&pairs, 0.99);
    report.row(
        "read-your-writes: command, then query with min position",
        format!(
            "p50 {:.2} ms, p99 {:.2} ms (the query alone: p50 {:.2} ms, p99 {:.2} ms)",
            percentile_ms(&pairs, 0.5),
            p99,
            percentile_ms(&waits, 0.5),
            percentile_ms(&waits, 0.99)
        ),
        "—".into(),
        "p99 < 25 ms",
        met(p99 < 25.0, &format!("{p99:.1} ms")),
    );
    Ok(())
}
