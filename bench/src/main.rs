//! Chronicle's benchmarks, each against the raw substrate (or the peer) in the same run,
//! reported as medians with their range and as ratios, and written to `bench/RESULTS.md`
//! (see `scripts/bench`). Never used as a test: no thresholds decide anything here.
//!
//! - `http`: a real `chronicle serve` and `chronicle project`: HTTP ingest against raw
//!   JetStream publishes, contention on 8 hot aggregates, read-your-writes, the cqrs-es
//!   peer, peak memory of each process;
//! - `aggregate`: one command by stream length and by log size;
//! - `log`: appends through `JetStreamLog` against raw publishes of the same bytes;
//! - `batch`: append latency by events per append;
//! - `projection`: the jobs projection catching up over 200 000 events against a raw
//!   batched insert of the same rows;
//! - `live`: SSE delivery latency with 1, 100 and 1 000 subscribers, memory per
//!   subscriber, and one subscriber's catch-up against a raw ordered read;
//! - `backup`: backing up and restoring the same 200 000 events against a raw ordered
//!   read and raw publishes;
//! - `verify`: verifying the same 200 000 events against a raw ordered read;
//! - `proof`: the whole log's Merkle tree grown from 1 000 000 events against a raw
//!   ordered read, its storage per event, and inclusion and consistency proof latency
//!   over HTTP.

use std::time::Instant;

use anyhow::{Context, Result};
use bytes::Bytes;
use chronicle_events::domain::job::{JobStarted, JobSubmitted};
use chronicle_events::{
    Actor, AppendRequest, Domain, EventLog, Expected, JetStreamLog, LogConfig, PendingEvent,
    StreamId,
};
use clap::Parser;
use futures::StreamExt;
use report::{Report, Spread, percentile_ms};
use uuid::Uuid;

#[derive(Parser)]
#[command(about = "Chronicle benchmarks against raw JetStream")]
pub(crate) struct Args {
    /// Smaller runs (under three minutes in all).
    #[arg(long)]
    pub(crate) quick: bool,
    #[arg(long, env = "NATS_URL")]
    pub(crate) nats_url: String,
    /// How many times each measurement is repeated (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub(crate) repeat: usize,
    #[arg(long, env = "DATABASE_URL")]
    pub(crate) database_url: Option<String>,
    /// A nats-server with `sync_interval: always` and a Postgres with fsync on, for the
    /// equal-durability peer row (`scripts/bench` starts them).
    #[arg(long, env = "DURABLE_NATS_URL")]
    pub(crate) durable_nats_url: Option<String>,
    #[arg(long, env = "DURABLE_DATABASE_URL")]
    pub(crate) durable_database_url: Option<String>,
    /// Which benchmarks to run: http, invoice, live, aggregate, log, batch, startup, projection, verify, backup
    /// (default: all). May be repeated.
    #[arg(long)]
    only: Vec<String>,
    /// Where to write the results as Markdown.
    #[arg(long, default_value = "bench/RESULTS.md")]
    results: std::path::PathBuf,
}

pub(crate) const IN_FLIGHT: usize = 64;

pub(crate) fn submitted(job: &StreamId) -> PendingEvent {
    PendingEvent::new(
        JobSubmitted {
            job_id: job.id().to_owned(),
            agent_id: "agent-bench".into(),
            kind: "summarise".into(),
            input: serde_json::json!({"doc": "q3-report.pdf", "pages": 12}),
        },
        Actor::user("bench"),
        Uuid::new_v4(),
    )
}

pub(crate) fn new_job() -> StreamId {
    StreamId::new(Domain::Job, Uuid::new_v4().simple().to_string()).expect("uuid is a valid id")
}

/// The keys the benchmark's Chronicle runs with (hex), and the event keys as a keyring.
pub(crate) use chronicle_testkit::{EVENT_KEY, SEAL_KEY, SIGNING_KEY, keyring};

pub(crate) fn fresh_config() -> LogConfig {
    let tag = Uuid::new_v4().simple().to_string();
    LogConfig {
        stream_name: format!("BENCH_{tag}"),
        subject_prefix: format!("bench{}.ev", &tag[..8]),
        ..LogConfig::new(keyring())
    }
}

/// Appends `n` one-event commands to new streams, `IN_FLIGHT` at a time; events/s.
pub(crate) async fn chronicle_appends(log: &JetStreamLog, n: usize) -> Result<f64> {
    let started = Instant::now();
    let results: Vec<_> = futures::stream::iter(0..n)
        .map(|_| {
            let log = log.clone();
            async move {
                let job = new_job();
                log.append(AppendRequest::single(
                    Uuid::new_v4(),
                    job.clone(),
                    Expected::NO_STREAM,
                    vec![submitted(&job)],
                ))
                .await
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let elapsed = started.elapsed();
    for r in results {
        r.context("append failed")?;
    }
    Ok(n as f64 / elapsed.as_secs_f64())
}

/// Publishes `n` messages of `payload` with acks to new subjects, `IN_FLIGHT` at a time.
pub(crate) async fn raw_publishes(
    js: &async_nats::jetstream::Context,
    prefix: &str,
    payload: Bytes,
    n: usize,
) -> Result<f64> {
    let started = Instant::now();
    let results: Vec<_> = futures::stream::iter(0..n)
        .map(|_| {
            let js = js.clone();
            let payload = payload.clone();
            let subject = format!("{prefix}.job.{}", Uuid::new_v4().simple());
            async move {
                let ack = js.publish(subject, payload).await?;
                ack.await?;
                Ok::<_, anyhow::Error>(())
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let elapsed = started.elapsed();
    for r in results {
        r?;
    }
    Ok(n as f64 / elapsed.as_secs_f64())
}

async fn bench_log(args: &Args, report: &mut Report) -> Result<()> {
    let n = if args.quick { 10_000 } else { 50_000 };
    let client = async_nats::connect(&args.nats_url).await?;
    let js = async_nats::jetstream::new(client.clone());

    println!(
        "== log: {n} appends, {IN_FLIGHT} in flight, one new stream each (file storage, default sync_interval)"
    );
    let mut chronicle = Vec::new();
    let mut raw = Vec::new();
    let mut payload_len = 0;
    for round in 0..args.repeat {
        let cfg = fresh_config();
        let log = JetStreamLog::connect(&args.nats_url, cfg.clone()).await?;
        let c = chronicle_appends(&log, n).await?;
        // The raw side publishes the very bytes Chronicle stored, to a stream configured
        // the same way, on the same server.
        let (sample, _) = log.read_raw_batch(1, &log.subject_filter(None), 1).await?;
        payload_len = sample[0].payload.len();
        let raw_cfg = fresh_config();
        js.create_stream(raw_cfg.stream_config()).await?;
        let r = raw_publishes(&js, &raw_cfg.subject_prefix, sample[0].payload.clone(), n).await?;
        println!(
            "round {round}: chronicle {c:.0} events/s, raw publish {r:.0} msgs/s, ratio {:.2}",
            c / r
        );
        chronicle.push(c);
        raw.push(r);
        js.delete_stream(&cfg.stream_name).await.ok();
        js.delete_stream(&raw_cfg.stream_name).await.ok();
    }
    let ratio = Spread::of_ratios(&chronicle, &raw);
    report.row(
        &format!("log append (no HTTP): {n} one-event appends, {IN_FLIGHT} in flight"),
        format!(
            "{}, {payload_len}-byte envelopes",
            Spread::of(chronicle).show(0, "events/s")
        ),
        format!("publish with ack: {}", Spread::of(raw).show(0, "msgs/s")),
        "—",
        format!("{:.2}", ratio.median),
    );
    report.ratio("append_vs_raw_publish", ratio);
    Ok(())
}

/// Latency of one append by its number of events (sequential, one stream each).
async fn bench_batch_latency(args: &Args, report: &mut Report) -> Result<()> {
    let log = JetStreamLog::connect(&args.nats_url, fresh_config()).await?;
    println!("== append latency by events per append (sequential)");
    let mut shown = Vec::new();
    for n in [1usize, 2, 3, 10] {
        let mut times = Vec::new();
        for _ in 0..200 {
            let job = new_job();
            let mut events = vec![submitted(&job)];
            events.extend(
                (1..n).map(|_| {
                    PendingEvent::new(JobStarted {}, Actor::user("bench"), Uuid::new_v4())
                }),
            );
            let t = Instant::now();
            log.append(AppendRequest::single(
                Uuid::new_v4(),
                job,
                Expected::NO_STREAM,
                events,
            ))
            .await?;
            times.push(t.elapsed());
        }
        times.sort();
        println!(
            "append_latency events={n} p50_ms {:.3} p99_ms {:.3}",
            percentile_ms(&times, 0.5),
            percentile_ms(&times, 0.99)
        );
        shown.push(format!("{n}: p50 {:.2} ms", percentile_ms(&times, 0.5)));
    }
    report.row(
        "append latency by events per append (sequential)",
        shown.join(", "),
        "—".into(),
        "—",
        "several events are one atomic batch: the server syncs it to disk".into(),
    );
    log.jetstream()
        .delete_stream(&log.config().stream_name)
        .await
        .ok();
    Ok(())
}

/// What this run ran on.
async fn machine(args: &Args) -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or("?".into(), |kb| format!("{:.0} GiB", kb / 1024.0 / 1024.0));
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "?".into());
    let nats = match async_nats::connect(&args.nats_url).await {
        Ok(c) => c.server_info().version,
        Err(_) => "?".into(),
    };
    let postgres = match &args.database_url {
        Some(url) => match tokio_postgres::connect(url, tokio_postgres::NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(conn);
                client
                    .query_one("SHOW server_version", &[])
                    .await
                    .map(|r| r.get::<_, String>(0))
                    .unwrap_or_else(|_| "?".into())
            }
            Err(_) => "?".into(),
        },
        None => "not used".into(),
    };
    format!(
        "- {cores} cores ({cpu}), {memory} memory\n- nats-server {nats} (file storage, default sync_interval)\n- Postgres {postgres} (as `scripts/servers` starts it: fsync off — the raw inserts run on the same server)\n- Chronicle {} (release build, mimalloc)",
        std::env::var("CHRONICLE_COMMIT").unwrap_or_else(|_| env!("CARGO_PKG_VERSION").into())
    )
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let wants = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    let started = Instant::now();
    let mut report = Report::default();
    if wants("http") {
        http::bench(&args, &mut report).await?;
    }
    if wants("invoice") {
        invoice::bench(&args, &mut report).await?;
    }
    if wants("live") {
        live::bench(&args, &mut report).await?;
    }
    if wants("aggregate") {
        aggregate::bench(&args, &mut report).await?;
    }
    if wants("log") {
        bench_log(&args, &mut report).await?;
    }
    if wants("batch") {
        bench_batch_latency(&args, &mut report).await?;
    }
    if wants("startup") {
        startup::bench(&args, &mut report).await?;
    }
    if wants("proof") {
        proof::bench(&args, &mut report).await?;
    }
    if wants("projection") || wants("verify") || wants("backup") {
        let log = JetStreamLog::connect(&args.nats_url, fresh_config()).await?;
        let t = Instant::now();
        let end = projection::fill(&log).await?;
        println!(
            "(filled {end} events for projection and verify in {:.1} s)",
            t.elapsed().as_secs_f64()
        );
        if wants("projection") {
            projection::bench(&args, &log, end, &mut report).await?;
        }
        if wants("verify") {
            verify::bench(&args, &log, end, &mut report).await?;
        }
        // Last: it deletes the stream and restores it.
        if wants("backup") {
            backup::bench(&args, &log, end, &mut report).await?;
        }
        log.jetstream()
            .delete_stream(&log.config().stream_name)
            .await
            .ok();
    }
    let took = started.elapsed();
    let how = format!(
        "`scripts/bench{}` ({} round(s) per figure{}) took {:.0} s. Rerun: `scripts/bench [--quick]`, or `target/release/chronicle-bench --only NAME` with `NATS_URL` and `DATABASE_URL` set.",
        if args.quick { " --quick" } else { "" },
        args.repeat,
        if args.only.is_empty() {
            String::new()
        } else {
            format!(", only {}", args.only.join(", "))
        },
        took.as_secs_f64()
    );
    println!("== done in {:.0} s", took.as_secs_f64());
    let analysis = args
        .results
        .parent()
        .map(|dir| dir.join("ANALYSIS.md"))
        .and_then(|path| std::fs::read_to_string(path).ok());
    let md = report.markdown(&machine(&args).await, &how, analysis.as_deref());
    std::fs::write(&args.results, md)
        .with_context(|| format!("writing {}", args.results.display()))?;
    println!("wrote {}", args.results.display());
    Ok(())
}

mod aggregate;
mod backup;
mod http;
mod invoice;
mod live;
mod peer;
mod procs;
mod projection;
mod proof;
mod report;
mod startup;
mod verify;
