//! Chronicle's benchmarks, each against the raw substrate in the same run, reported as
//! ratios (see `scripts/bench`). Never used as a test: no thresholds here.
//!
//! - `log`: appends through `JetStreamLog` (64 in flight, one new stream each) against raw
//!   JetStream publishes with acks of the same bytes (64 in flight) on the same server;
//!   then the cost of loading one 10-event stream with no other streams and with
//!   100 000 other streams in the log.
//! - `projection`: the jobs projection catching up over 200 000 events (from a fresh
//!   database) against a raw batched insert of the same rows into Postgres.
//! - `verify`: verifying 200 000 events against a raw ordered JetStream read of them.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use chronicle_events::domain::job::{JobStarted, JobSubmitted};
use chronicle_events::{
    Actor, AppendRequest, Domain, EventLog, Expected, JetStreamLog, LogConfig, PendingEvent,
    StreamId,
};
use clap::Parser;
use futures::StreamExt;
use uuid::Uuid;

#[derive(Parser)]
#[command(about = "Chronicle benchmarks against raw JetStream")]
pub(crate) struct Args {
    /// Smaller runs (under a minute).
    #[arg(long)]
    quick: bool,
    #[arg(long, env = "NATS_URL")]
    pub(crate) nats_url: String,
    /// How many times each measurement is repeated (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub(crate) repeat: usize,
    #[arg(long, env = "DATABASE_URL")]
    pub(crate) database_url: Option<String>,
    /// Which benchmarks to run: log, projection (default: all).
    #[arg(long)]
    only: Vec<String>,
}

const IN_FLIGHT: usize = 64;

fn submitted(job: &StreamId) -> PendingEvent {
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

fn new_job() -> StreamId {
    StreamId::new(Domain::Job, Uuid::new_v4().simple().to_string()).expect("uuid is a valid id")
}

pub(crate) fn fresh_config() -> LogConfig {
    let tag = Uuid::new_v4().simple().to_string();
    LogConfig {
        stream_name: format!("BENCH_{tag}"),
        subject_prefix: format!("bench{}.ev", &tag[..8]),
        ..LogConfig::default()
    }
}

/// Appends `n` one-event commands to new streams, `IN_FLIGHT` at a time; events/s.
async fn chronicle_appends(log: &JetStreamLog, n: usize) -> Result<f64> {
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
async fn raw_publishes(
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

pub(crate) fn median(mut xs: Vec<f64>) -> (f64, f64, f64) {
    xs.sort_by(|a, b| a.total_cmp(b));
    (xs[xs.len() / 2], xs[0], xs[xs.len() - 1])
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// p50 and p99 (ms) of loading `stream` `samples` times.
async fn load_latency(log: &JetStreamLog, stream: &StreamId, samples: usize) -> Result<(f64, f64)> {
    // Warm connections and caches first, so both measurements start alike.
    for _ in 0..samples / 4 {
        log.read_stream(stream, 1).await?;
    }
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        let events = log.read_stream(stream, 1).await?;
        times.push(t.elapsed());
        anyhow::ensure!(
            events.len() == 10,
            "expected 10 events, read {}",
            events.len()
        );
    }
    times.sort();
    Ok((percentile(&times, 0.5), percentile(&times, 0.99)))
}

async fn ten_event_stream(log: &JetStreamLog) -> Result<StreamId> {
    let job = new_job();
    let mut events = vec![submitted(&job)];
    events.extend(
        (0..9).map(|_| PendingEvent::new(JobStarted {}, Actor::user("bench"), Uuid::new_v4())),
    );
    log.append(AppendRequest::single(
        Uuid::new_v4(),
        job.clone(),
        Expected::NO_STREAM,
        events,
    ))
    .await?;
    Ok(job)
}

async fn bench_log(args: &Args) -> Result<()> {
    let n = if args.quick { 10_000 } else { 50_000 };
    let others = 100_000;
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
    let (c, c_lo, c_hi) = median(chronicle.clone());
    let (r, r_lo, r_hi) = median(raw.clone());
    let ratios: Vec<f64> = chronicle.iter().zip(&raw).map(|(c, r)| c / r).collect();
    let (ratio, lo, hi) = median(ratios);
    println!(
        "append        median {c:.0} events/s (range {c_lo:.0}..{c_hi:.0}), {payload_len}-byte envelopes"
    );
    println!("raw publish   median {r:.0} msgs/s (range {r_lo:.0}..{r_hi:.0})");
    println!("ratio append_vs_raw_publish {ratio:.2} (range {lo:.2}..{hi:.2})");

    println!("== load one 10-event stream: alone, then among {others} other streams");
    let log = JetStreamLog::connect(&args.nats_url, fresh_config()).await?;
    let target = ten_event_stream(&log).await?;
    let samples = if args.quick { 200 } else { 1000 };
    let (p50, p99) = load_latency(&log, &target, samples).await?;
    println!("load_stream others=0 p50_ms {p50:.3} p99_ms {p99:.3}");
    let t = Instant::now();
    chronicle_appends(&log, others).await?;
    println!(
        "(filled {others} other streams in {:.1} s)",
        t.elapsed().as_secs_f64()
    );
    let (p50b, p99b) = load_latency(&log, &target, samples).await?;
    println!("load_stream others={others} p50_ms {p50b:.3} p99_ms {p99b:.3}");
    println!("ratio load_with_{others}_others_vs_alone {:.2}", p50b / p50);
    js.delete_stream(&log.config().stream_name).await.ok();
    Ok(())
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let wants = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    if wants("log") {
        bench_log(&args).await?;
    }
    if wants("batch") {
        bench_batch_latency(&args).await?;
    }
    if wants("projection") {
        projection::bench(&args).await?;
    }
    if wants("verify") {
        verify::bench(&args).await?;
    }
    Ok(())
}

mod projection;
mod verify;

/// Latency of one append by its number of events (sequential, one stream each).
async fn bench_batch_latency(args: &Args) -> Result<()> {
    let log = JetStreamLog::connect(&args.nats_url, fresh_config()).await?;
    println!("== append latency by events per append (sequential)");
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
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
    }
    Ok(())
}
