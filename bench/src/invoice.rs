//! An invoice's whole life over HTTP — issue (RATABLE, 12 months), recognize all twelve
//! months, pay in full: 3 commands, 28 events, each command one atomic append — against
//! the same messages sent straight to JetStream as the same three atomic batches (the
//! bytes Chronicle stored, to a stream configured the same way, on the same server,
//! `IN_FLIGHT` lives at a time, at most 16 open batches as Chronicle keeps), and how long
//! the read models took to show the last one.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use async_nats::HeaderMap;
use bytes::Bytes;
use chronicle_events::{EventLog, JetStreamLog};
use futures::StreamExt;
use serde_json::json;
use uuid::Uuid;

use crate::procs::Chronicle;
use crate::report::{Report, Spread, num};
use crate::{Args, IN_FLIGHT, fresh_config};

/// One life: issue, recognize through the twelfth month, pay the total.
async fn life(ch: &Chronicle, i: usize) -> Result<()> {
    let id = format!("inv-{}-{i}", &Uuid::new_v4().simple().to_string()[..8]);
    let total = 100_000 + i as i64;
    let steps = [
        (
            "/v1/commands/invoices".to_owned(),
            json!({"invoice_id": id, "customer": format!("customer-{}", i % 100), "currency": "EUR",
                   "issue_date": "2025-01-01", "lines": [{"description": "Annual subscription", "amount": total}],
                   "recognition": {"method": "RATABLE", "start": "2025-01-01", "months": 12}}),
            201,
        ),
        (
            format!("/v1/commands/invoices/{id}/recognize"),
            json!({"through": "2025-12-31"}),
            200,
        ),
        (
            format!("/v1/commands/invoices/{id}/payments"),
            json!({"amount": total, "paid_on": "2026-01-15"}),
            200,
        ),
    ];
    for (path, body, status) in steps {
        let r = ch.post(&path, &body).send().await?;
        anyhow::ensure!(
            r.status().as_u16() == status,
            "{path} answered {}: {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

async fn lives(ch: &Chronicle, n: usize) -> Result<f64> {
    let started = Instant::now();
    let results: Vec<Result<()>> = futures::stream::iter(0..n)
        .map(|i| life(ch, i))
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>>>()?;
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Sends `payloads` to `subjects` as one atomic batch, as a client would without Chronicle.
async fn raw_batch(
    client: &async_nats::Client,
    subjects: &[String],
    payloads: &[Bytes],
) -> Result<()> {
    let id = Uuid::new_v4().simple().to_string();
    let last = payloads.len() - 1;
    for (i, payload) in payloads.iter().enumerate() {
        let mut h = HeaderMap::new();
        h.insert("Nats-Batch-Id", id.as_str());
        h.insert("Nats-Batch-Sequence", (i + 1).to_string().as_str());
        if i == last {
            h.insert("Nats-Batch-Commit", "1");
        }
        if i == 0 || i == last {
            let reply = client
                .request_with_headers(subjects[i].clone(), h, payload.clone())
                .await?;
            let answer: serde_json::Value = if reply.payload.is_empty() {
                json!({})
            } else {
                serde_json::from_slice(&reply.payload)?
            };
            anyhow::ensure!(answer.get("error").is_none(), "raw batch refused: {answer}");
        } else {
            client
                .publish_with_headers(subjects[i].clone(), h, payload.clone())
                .await?;
        }
    }
    Ok(())
}

/// `n` lives sent raw: the same three batches of the same bytes, to new subjects.
async fn raw_lives(
    client: &async_nats::Client,
    prefix: &str,
    batches: &[Vec<Bytes>],
    n: usize,
) -> Result<f64> {
    let open = Arc::new(tokio::sync::Semaphore::new(16));
    let started = Instant::now();
    let results: Vec<Result<()>> = futures::stream::iter(0..n)
        .map(|_| {
            let open = open.clone();
            async move {
                let invoice = format!("{prefix}.invoice.{}", Uuid::new_v4().simple());
                for batch in batches {
                    // Each entry on its own subject, the invoice's event last.
                    let mut subjects: Vec<String> = (1..batch.len())
                        .map(|_| format!("{prefix}.entry.{}", Uuid::new_v4().simple()))
                        .collect();
                    subjects.push(invoice.clone());
                    let _permit = open.acquire().await?;
                    raw_batch(client, &subjects, batch).await?;
                }
                Ok(())
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>>>()?;
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// The bytes of one life as Chronicle stored them, in its three appends (the issue's
/// without the accounts it opened the first time).
async fn stored_life(log: &JetStreamLog, ch: &Chronicle) -> Result<Vec<Vec<Bytes>>> {
    let from = log.last_position().await? + 1;
    life(ch, 0).await?;
    let (raw, _) = log
        .read_raw_batch(from, &log.subject_filter(None), 64)
        .await?;
    let payloads: Vec<Bytes> = raw.into_iter().map(|m| m.payload).collect();
    anyhow::ensure!(
        payloads.len() == 28,
        "a life stored {} messages",
        payloads.len()
    );
    Ok(vec![
        payloads[..2].to_vec(),
        payloads[2..26].to_vec(),
        payloads[26..].to_vec(),
    ])
}

pub async fn bench(args: &Args, report: &mut Report) -> Result<()> {
    let ch = Chronicle::start(args).await?;
    let result = run(args, &ch, report).await;
    ch.stop().await;
    result
}

async fn run(args: &Args, ch: &Chronicle, report: &mut Report) -> Result<()> {
    let n = if args.quick { 300 } else { 1_500 };
    let log = ch.log(&args.nats_url).await?;
    let js = log.jetstream().clone();
    let client = async_nats::connect(&args.nats_url).await?;
    println!(
        "== invoice life: {n} × (issue, recognize 12 months, pay) over HTTP, {IN_FLIGHT} clients"
    );
    lives(ch, 50).await?; // the default accounts open, connections and caches warm
    let batches = stored_life(&log, ch)
        .await
        .context("reading one life back")?;
    let mut chronicle = Vec::new();
    let mut raw = Vec::new();
    for round in 0..args.repeat {
        let c = lives(ch, n).await?;
        let raw_cfg = fresh_config();
        js.create_stream(raw_cfg.stream_config()).await?;
        let r = raw_lives(&client, &raw_cfg.subject_prefix, &batches, n).await?;
        js.delete_stream(&raw_cfg.stream_name).await.ok();
        println!(
            "round {round}: chronicle {c:.0} lives/s ({:.0} events/s), raw batches {r:.0} lives/s, ratio {:.2}",
            c * 28.0,
            c / r
        );
        chronicle.push(c);
        raw.push(r);
    }
    let ratio = Spread::of_ratios(&chronicle, &raw);
    report.row(
        &format!(
            "invoice life over HTTP: {n} × (issue, recognize 12 months, pay in full) = 3 commands, 28 events, {IN_FLIGHT} clients"
        ),
        Spread::of(chronicle).show(0, "lives/s"),
        format!(
            "the same bytes as the same 3 atomic batches, 16 open: {}",
            Spread::of(raw).show(0, "lives/s")
        ),
        "—",
        format!("{:.2}", ratio.median),
    );
    report.ratio("invoice_life_vs_raw_batches", ratio);
    let caught_up = ch.wait_for_read_models(log.last_position().await?).await?;
    report.note(format!(
        "after the last invoice life the read models (invoices, entries, balances) reached the log's end {} ms later",
        num(caught_up.as_secs_f64() * 1000.0, 0)
    ));
    Ok(())
}
