//! Live events over SSE from a real `chronicle serve`:
//!
//! - append-to-delivery latency with 1, 100 and 1 000 subscribers on the one process,
//!   while job submissions are taken at a steady rate: from the moment a command is sent
//!   to the moment each subscriber has its event (so the command's own latency is
//!   included: an upper bound of append-to-delivery), every delivery of every subscriber
//!   counted, and each subscriber checked to have had every event once, in order;
//! - the memory of the API process per idle subscriber (resident set before and after
//!   opening 1 000);
//! - the catch-up rate of one subscriber from position 1 against a raw ordered-consumer
//!   read of the same range, on the same server, in the same run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chronicle_events::EventLog;
use futures::StreamExt;
use tokio::task::JoinHandle;

use crate::procs::Chronicle;
use crate::report::{Report, Spread, num, percentile_ms};
use crate::{Args, chronicle_appends};

/// Commands per second while the latency is measured.
const RATE: u64 = 50;

/// One SSE subscriber: what it has received, as (position, when).
struct Subscriber {
    got: Arc<Mutex<Vec<(u64, Instant)>>>,
    task: JoinHandle<Result<()>>,
}

/// The positions in an SSE byte stream, as they come: `id:` lines, split anywhere.
#[derive(Default)]
struct IdLines {
    partial: Vec<u8>,
}

impl IdLines {
    fn feed(&mut self, chunk: &[u8], mut found: impl FnMut(u64)) {
        let mut rest = chunk;
        while let Some(nl) = rest.iter().position(|b| *b == b'\n') {
            let line: &[u8] = if self.partial.is_empty() {
                &rest[..nl]
            } else {
                self.partial.extend_from_slice(&rest[..nl]);
                &self.partial
            };
            if let Some(id) = line.strip_prefix(b"id:")
                && let Ok(text) = std::str::from_utf8(id)
                && let Ok(p) = text.trim().parse()
            {
                found(p);
            }
            self.partial.clear();
            rest = &rest[nl + 1..];
        }
        self.partial.extend_from_slice(rest);
    }
}

impl Subscriber {
    /// Opens `GET /v1/subscribe?{query}` and records each event's position as it arrives;
    /// returns once the answer's head is in.
    async fn open(ch: &Chronicle, client: &reqwest::Client, query: &str) -> Result<Subscriber> {
        let r = client
            .get(format!("{}/v1/subscribe?{query}", ch.base))
            .bearer_auth(&ch.token)
            .send()
            .await?;
        anyhow::ensure!(
            r.status().as_u16() == 200,
            "subscribe answered {}: {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
        let got = Arc::new(Mutex::new(Vec::new()));
        let into = got.clone();
        let task = tokio::spawn(async move {
            let mut body = r.bytes_stream();
            let mut lines = IdLines::default();
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                let now = Instant::now();
                let mut got = into.lock().unwrap();
                lines.feed(&chunk, |p| got.push((p, now)));
            }
            Ok(())
        });
        Ok(Subscriber { got, task })
    }

    fn last(&self) -> Option<u64> {
        self.got.lock().unwrap().last().map(|(p, _)| *p)
    }
}

/// Resident set of process `pid`, KiB.
fn rss_kib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .context("no VmRSS")
}

/// Opens `n` subscribers of every job event from the log's end on.
async fn open_many(
    ch: &Chronicle,
    client: &reqwest::Client,
    n: usize,
    from: u64,
) -> Result<Vec<Subscriber>> {
    let query = format!("stream=job.*&from_position={from}");
    futures::stream::iter(0..n)
        .map(|_| Subscriber::open(ch, client, &query))
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// Takes job submissions at [`RATE`] a second for `secs`; each one's position and when
/// it was sent.
async fn steady_commands(ch: &Chronicle, secs: u64) -> Result<HashMap<u64, Instant>> {
    let sent = Arc::new(Mutex::new(HashMap::new()));
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    let mut running = Vec::new();
    for i in 0..RATE * secs {
        tick.tick().await;
        let request = ch.post(
            "/v1/commands/jobs",
            &serde_json::json!({"agent_id": format!("agent-{}", i % 50), "kind": "summarise",
                                "input": {"doc": format!("live-{i}.pdf")}}),
        );
        let sent = sent.clone();
        running.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = request.send().await?;
            anyhow::ensure!(r.status().as_u16() == 201, "a job answered {}", r.status());
            let answer: serde_json::Value = r.json().await?;
            let p = answer["position"].as_u64().context("no position")?;
            sent.lock().unwrap().insert(p, t);
            Ok::<_, anyhow::Error>(())
        }));
    }
    for r in running {
        r.await??;
    }
    Ok(Arc::try_unwrap(sent).unwrap().into_inner().unwrap())
}

/// Latencies of every delivery of `sent` to every subscriber, checking that each got
/// each event once and in order.
async fn deliveries(subs: &[Subscriber], sent: &HashMap<u64, Instant>) -> Result<Vec<Duration>> {
    let last = *sent.keys().max().context("nothing sent")?;
    let started = Instant::now();
    while subs.iter().any(|s| s.last() < Some(last)) {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "{} of {} subscribers did not reach position {last} within 60 s",
            subs.iter().filter(|s| s.last() < Some(last)).count(),
            subs.len()
        );
        for s in subs {
            anyhow::ensure!(!s.task.is_finished(), "a subscription ended early");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut wanted: Vec<u64> = sent.keys().copied().collect();
    wanted.sort_unstable();
    let mut times = Vec::with_capacity(sent.len() * subs.len());
    for s in subs {
        let got = std::mem::take(&mut *s.got.lock().unwrap());
        let positions: Vec<u64> = got
            .iter()
            .map(|(p, _)| *p)
            .filter(|p| sent.contains_key(p))
            .collect();
        anyhow::ensure!(
            positions == wanted,
            "a subscriber got {} of {} events, or not in order",
            positions.len(),
            wanted.len()
        );
        for (p, at) in got {
            if let Some(t) = sent.get(&p) {
                times.push(at.saturating_duration_since(*t));
            }
        }
    }
    times.sort();
    Ok(times)
}

/// One subscriber from position 1 to `end`, no filter beyond its role's sight; events/s.
async fn catch_up(ch: &Chronicle, client: &reqwest::Client, end: u64) -> Result<f64> {
    let started = Instant::now();
    let sub = Subscriber::open(ch, client, "from_position=0").await?;
    while sub.last() < Some(end) {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "catch-up did not reach {end}"
        );
        anyhow::ensure!(!sub.task.is_finished(), "the catch-up subscription ended");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rate = end as f64 / started.elapsed().as_secs_f64();
    sub.task.abort();
    // The sealer may have appended since: what counts is 1..=end, each once, in order.
    let got = sub.got.lock().unwrap();
    let upto: Vec<u64> = got
        .iter()
        .map(|(p, _)| *p)
        .take_while(|p| *p <= end)
        .collect();
    anyhow::ensure!(
        upto.len() as u64 == end && upto.iter().enumerate().all(|(i, p)| *p == i as u64 + 1),
        "catch-up delivered {} events of {end}, or not in order",
        upto.len()
    );
    Ok(rate)
}

pub async fn bench(args: &Args, report: &mut Report) -> Result<()> {
    let ch = Chronicle::start(args).await?;
    let result = run(args, &ch, report).await;
    ch.stop().await;
    result
}

async fn run(args: &Args, ch: &Chronicle, report: &mut Report) -> Result<()> {
    let log = ch.log(&args.nats_url).await?;
    // No overall timeout: a subscription's answer never ends.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let pid = ch.serve_pid().context("no serve process")?;
    let secs = if args.quick { 3 } else { 6 };

    // Memory: one subscriber first (the log reader and its ring are the process's, not a
    // subscriber's), then 1 000 more that nothing is sent to.
    let from = log.last_position().await?;
    let first = open_many(ch, &client, 1, from).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid)?;
    let mut subs = open_many(ch, &client, 1_000, from).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(pid)?;
    let per = (after - before) / 1_000.0;
    println!(
        "== live: serve resident {before:.0} KiB with 1 subscriber, {after:.0} KiB with 1 001: {per:.1} KiB each"
    );
    for s in subs.drain(..).chain(first) {
        s.task.abort();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    report.row(
        "live: API process memory per idle SSE subscriber (resident set with 1 and with 1 001 open)",
        format!("{} KiB each", num(per, 1)),
        "—".into(),
        "< 64 KiB each",
        crate::http::met(per < 64.0, &format!("{} KiB", num(per, 1))),
    );

    // Latency by number of subscribers, while commands are taken.
    println!(
        "== live: command sent → event delivered over SSE, {RATE} job submissions/s for {secs} s"
    );
    let mut subs: Vec<Subscriber> = Vec::new();
    let mut at_1000 = (f64::NAN, f64::NAN);
    for n in [1usize, 100, 1_000] {
        let from = log.last_position().await?;
        subs.extend(open_many(ch, &client, n - subs.len(), from).await?);
        let mut p50 = Vec::new();
        let mut p99 = Vec::new();
        for round in 0..args.repeat {
            for s in &subs {
                s.got.lock().unwrap().clear();
            }
            let sent = steady_commands(ch, secs).await?;
            let times = deliveries(&subs, &sent).await?;
            let (a, b) = (percentile_ms(&times, 0.5), percentile_ms(&times, 0.99));
            println!(
                "round {round}: {n} subscribers, {} deliveries: p50 {a:.1} ms, p99 {b:.1} ms",
                times.len()
            );
            p50.push(a);
            p99.push(b);
        }
        let (p50, p99) = (Spread::of(p50), Spread::of(p99));
        if n == 1_000 {
            at_1000 = (p50.median, p99.median);
        }
        report.row(
            &format!(
                "live: command sent → delivered to each of {n} SSE subscriber(s), {RATE} commands/s"
            ),
            format!("p50 {}, p99 {}", p50.show(1, "ms"), p99.show(1, "ms")),
            "—".into(),
            if n == 1_000 { "p99 < 50 ms" } else { "—" },
            if n == 1_000 {
                crate::http::met(p99.median < 50.0, &format!("p99 {:.1} ms", p99.median))
            } else {
                "—".into()
            },
        );
    }
    for s in subs {
        s.task.abort();
    }
    println!(
        "live_latency_1000 p50_ms {:.1} p99_ms {:.1}",
        at_1000.0, at_1000.1
    );

    // Catch-up from position 1 against a raw ordered read of the same range.
    let n = if args.quick { 50_000 } else { 200_000 };
    chronicle_appends(&log, n).await?;
    let end = log.last_position().await?;
    ch.wait_for_read_models(end).await?;
    println!("== live: one subscriber catching up over {end} events vs a raw ordered read");
    let mut live = Vec::new();
    let mut raw = Vec::new();
    for round in 0..args.repeat {
        let l = catch_up(ch, &client, end).await?;
        let r = crate::verify::raw_read(&log, end).await?;
        println!(
            "round {round}: catch-up {l:.0} events/s, raw read {r:.0} msgs/s, ratio {:.2}",
            l / r
        );
        live.push(l);
        raw.push(r);
    }
    let ratio = Spread::of_ratios(&live, &raw);
    report.row(
        &format!("live: one SSE subscriber catching up from position 1 over {end} events"),
        Spread::of(live).show(0, "events/s"),
        format!(
            "ordered consumer read of the same range: {}",
            Spread::of(raw).show(0, "msgs/s")
        ),
        "ratio ≥ 0.5",
        crate::http::met(ratio.median >= 0.5, &format!("{:.2}", ratio.median)),
    );
    report.ratio("live_catch_up_vs_raw_read", ratio);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::IdLines;

    #[test]
    fn positions_are_found_however_the_stream_is_cut() {
        let text = b": keep-alive\n\nid: 17\nevent: JobSubmitted\ndata: {\"id\": 3}\n\nid: 18\ndata: x\n\n";
        for cut in 0..text.len() {
            let mut lines = IdLines::default();
            let mut found = Vec::new();
            lines.feed(&text[..cut], |p| found.push(p));
            lines.feed(&text[cut..], |p| found.push(p));
            assert_eq!(found, [17, 18], "cut at {cut}");
        }
    }
}
