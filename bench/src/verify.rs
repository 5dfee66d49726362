//! Verification over 200 000 events against a raw ordered JetStream read of the same
//! range, same server, same run.

use std::time::Instant;

use anyhow::Result;
use async_nats::jetstream::consumer;
use chronicle_events::JetStreamLog;
use futures::StreamExt;

use crate::Args;
use crate::report::{Report, Spread};

pub(crate) async fn raw_read(log: &JetStreamLog, end: u64) -> Result<f64> {
    let stream = log
        .jetstream()
        .get_stream(&log.config().stream_name)
        .await?;
    let started = Instant::now();
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut n = 0u64;
    while let Some(m) = messages.next().await {
        let m = m?;
        n += 1;
        if m.info().map_err(anyhow::Error::msg)?.stream_sequence >= end {
            break;
        }
    }
    anyhow::ensure!(n == end, "read {n} of {end}");
    Ok(end as f64 / started.elapsed().as_secs_f64())
}

async fn verify(log: &JetStreamLog, end: u64) -> Result<f64> {
    let started = Instant::now();
    let report = chronicle_replay::verify_log(log, 1, Some(end), None, &|_, _| {}).await?;
    anyhow::ensure!(report.ok && report.checked == end, "verify: {report:?}");
    Ok(end as f64 / started.elapsed().as_secs_f64())
}

pub async fn bench(args: &Args, log: &JetStreamLog, end: u64, report: &mut Report) -> Result<()> {
    println!("== verify over {end} events vs a raw ordered JetStream read of the same range");
    let mut verified = Vec::new();
    let mut raw = Vec::new();
    for round in 0..args.repeat {
        let v = verify(log, end).await?;
        let r = raw_read(log, end).await?;
        println!(
            "round {round}: verify {v:.0} events/s, raw read {r:.0} msgs/s, ratio {:.2}",
            v / r
        );
        verified.push(v);
        raw.push(r);
    }
    let ratio = Spread::of_ratios(&verified, &raw);
    report.row(
        &format!("replay: verify {end} events (hashes, chains, versions, decoding)"),
        Spread::of(verified).show(0, "events/s"),
        format!(
            "ordered consumer read of the same range: {}",
            Spread::of(raw).show(0, "msgs/s")
        ),
        "ratio ≥ 0.7",
        crate::http::met(ratio.median >= 0.7, &format!("{:.2}", ratio.median)),
    );
    report.ratio("verify_vs_raw_read", ratio);
    Ok(())
}
