//! Proofs for auditors at scale: the whole log's Merkle tree grown from position 1 against
//! a raw ordered read of the same log, its storage per event, and inclusion and
//! consistency proof latency over HTTP with 1 000 000 events in the log (200 000 with
//! `--quick`), beside one tile read straight from Postgres and the HTTP floor
//! (`GET /health/live`), same client, same run; and the whole log verified over HTTP.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chronicle_events::merkle::{Hash, verify_consistency, verify_inclusion};
use chronicle_events::{AppendRequest, EventLog, Expected, JetStreamLog};
use chronicle_replay::checkpoint::Checkpoint;
use chronicle_replay::seal::SealKey;
use chronicle_replay::tree::{Keeper, origin};
use futures::StreamExt;
use uuid::Uuid;

use crate::procs::Chronicle;
use crate::report::{Report, Spread, num, percentile_ms};
use crate::{Args, new_job, submitted, verify};

/// Events per append while filling (one new stream each): the tree does not care.
const PER_APPEND: usize = 50;

async fn fill(log: &JetStreamLog, n: u64) -> Result<()> {
    let appends = n.div_ceil(PER_APPEND as u64);
    let results: Vec<_> = futures::stream::iter(0..appends)
        .map(|_| {
            let log = log.clone();
            async move {
                let job = new_job();
                log.append(AppendRequest::single(
                    Uuid::new_v4(),
                    job.clone(),
                    Expected::NO_STREAM,
                    (0..PER_APPEND).map(|_| submitted(&job)).collect(),
                ))
                .await
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    for r in results {
        r.context("append failed")?;
    }
    Ok(())
}

/// A small deterministic generator (no dependency for picking positions).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn hashes(v: &serde_json::Value) -> Result<Vec<Hash>> {
    v.as_array()
        .context("hashes")?
        .iter()
        .map(|h| {
            hex::decode(h.as_str().unwrap_or_default())
                .ok()
                .and_then(|b| Hash::try_from(b).ok())
                .context("a hex hash")
        })
        .collect()
}

fn latency(mut times: Vec<Duration>) -> (f64, f64) {
    times.sort();
    (percentile_ms(&times, 0.5), percentile_ms(&times, 0.99))
}

pub async fn bench(args: &Args, report: &mut Report) -> Result<()> {
    let n: u64 = if args.quick { 200_000 } else { 1_000_000 };
    let requests = if args.quick { 1_000 } else { 3_000 };
    println!("== proofs: the Merkle tree over {n} events, proofs over HTTP");
    let chronicle = Chronicle::start_api_only(args).await?;
    let log = chronicle.log(&args.nats_url).await?;
    let t = Instant::now();
    fill(&log, n).await?;
    let end = log.last_position().await?;
    println!(
        "(filled {end} events in {:.1} s)",
        t.elapsed().as_secs_f64()
    );
    let (mut db, conn) =
        tokio_postgres::connect(&chronicle.database_url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let key = SealKey::from_seed(&chronicle_testkit::key(crate::SEAL_KEY));

    // The tree grown from an empty store to the log's end, against a raw ordered read.
    let (mut grown, mut read) = (vec![], vec![]);
    for round in 0..args.repeat {
        db.batch_execute(
            "TRUNCATE audit.tree_tiles, audit.tree, audit.unauthenticated, audit.checkpoints",
        )
        .await?;
        let started = Instant::now();
        let mut keeper = Keeper::load(&log, &mut db, key.public()).await?;
        let size = keeper.extend(&log, &mut db).await?;
        anyhow::ensure!(size == end, "the tree holds {size} of {end}");
        let g = end as f64 / started.elapsed().as_secs_f64();
        let r = verify::raw_read(&log, end).await?;
        println!(
            "round {round}: tree {g:.0} events/s, raw read {r:.0} msgs/s, ratio {:.2}",
            g / r
        );
        grown.push(g);
        read.push(r);
    }
    let ratio = Spread::of_ratios(&grown, &read);
    report.row(
        &format!("proofs: Merkle tree grown from the log, {end} events (tiles in Postgres)"),
        Spread::of(grown).show(0, "events/s"),
        format!(
            "ordered consumer read of the same log: {}",
            Spread::of(read).show(0, "msgs/s")
        ),
        "ratio ≥ 0.5",
        crate::http::met(ratio.median >= 0.5, &format!("{:.2}", ratio.median)),
    );
    report.ratio("tree_update_vs_raw_read", ratio);

    let bytes: i64 = db
        .query_one(
            "SELECT pg_total_relation_size('audit.tree_tiles') + pg_total_relation_size('audit.tree')",
            &[],
        )
        .await?
        .get(0);
    let per_event = bytes as f64 / end as f64;
    report.row(
        &format!("proofs: tree storage, {end} events"),
        format!(
            "{} bytes/event ({} MiB)",
            num(per_event, 1),
            num(bytes as f64 / 1048576.0, 1)
        ),
        "the hashes alone: 32 bytes/event".into(),
        "—",
        format!("{:.2}× the hashes", per_event / 32.0),
    );

    // The whole log verified over HTTP, as an auditor would: the answer streams (NDJSON
    // progress, then the report), free of the request time limit.
    let started = Instant::now();
    let body = chronicle
        .http
        .get(format!("{}/v1/audit/verify", chronicle.base))
        .bearer_auth(&chronicle.token)
        .header("Accept", "application/x-ndjson")
        .timeout(Duration::from_secs(3600))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let took = started.elapsed().as_secs_f64();
    let last: serde_json::Value =
        serde_json::from_str(body.lines().last().context("an empty verify answer")?)?;
    anyhow::ensure!(
        last["report"]["ok"] == true && last["report"]["checked"] == end,
        "verify over HTTP: {last}"
    );
    let progress = body.lines().filter(|l| l.contains("\"progress\"")).count();
    let raw = verify::raw_read(&log, end).await?;
    report.row(
        &format!("audit: GET /v1/audit/verify over {end} events, streamed as NDJSON"),
        format!(
            "{} events/s ({took:.1} s, {progress} progress lines, then the report)",
            num(end as f64 / took, 0)
        ),
        format!(
            "ordered consumer read of the same log: {} msgs/s",
            num(raw, 0)
        ),
        "completes",
        crate::http::met(true, &format!("{:.2}× raw", end as f64 / took / raw)),
    );

    // Checkpoints: one at the end, then twenty more 97 events apart.
    let mut sizes = vec![];
    for i in 0..21 {
        if i > 0 {
            fill(&log, 97).await?;
        }
        let sealed = chronicle_replay::sealer::seal_now(&log, &mut db, &key)
            .await?
            .context("nothing to seal")?;
        sizes.push(sealed);
    }
    let name = origin(&log);
    let mut roots = std::collections::HashMap::new();
    for size in &sizes {
        let note = chronicle
            .get(&format!("/v1/audit/checkpoint?size={size}"))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let cp = Checkpoint::open(&note, &name, &key.public()).map_err(anyhow::Error::msg)?;
        roots.insert(*size, cp.root);
    }
    let latest = *sizes.last().context("sealed")?;

    // Latency, one client, one request at a time; every tenth proof checked.
    let mut rng = Lcg(42);
    let mut inclusion = Vec::with_capacity(requests);
    for i in 0..requests {
        let position = 1 + rng.below(latest);
        let started = Instant::now();
        let r = chronicle
            .get(&format!(
                "/v1/audit/proofs/inclusion?position={position}&size={latest}"
            ))
            .send()
            .await?
            .error_for_status()?
            .json::<serde_json::Value>()
            .await?;
        inclusion.push(started.elapsed());
        if i % 10 == 0 {
            let leaf = r["leaf_hash"].as_str().context("leaf_hash")?;
            // The proof starts from the leaf hash: check it against the root by the
            // event's hash, read from the log.
            let (raws, _) = log
                .read_raw_batch(position, &log.subject_filter(None), 1)
                .await?;
            let entry = chronicle_events::merkle::leaf_of_payload(&raws[0].payload);
            anyhow::ensure!(
                hex::encode(chronicle_events::merkle::leaf_hash(&entry)) == leaf,
                "leaf hash of {position}"
            );
            anyhow::ensure!(
                verify_inclusion(
                    &entry,
                    position - 1,
                    latest,
                    &hashes(&r["hashes"])?,
                    &roots[&latest]
                ),
                "inclusion proof of {position} does not verify"
            );
        }
    }
    let mut consistency = Vec::with_capacity(requests);
    for i in 0..requests {
        let a = sizes[rng.below(sizes.len() as u64) as usize];
        let b = sizes[rng.below(sizes.len() as u64) as usize];
        let (from, to) = (a.min(b), a.max(b));
        let started = Instant::now();
        let r = chronicle
            .get(&format!("/v1/audit/proofs/consistency?from={from}&to={to}"))
            .send()
            .await?
            .error_for_status()?
            .json::<serde_json::Value>()
            .await?;
        consistency.push(started.elapsed());
        if i % 10 == 0 {
            anyhow::ensure!(
                verify_consistency(from, to, &roots[&from], &roots[&to], &hashes(&r["hashes"])?),
                "consistency {from} to {to} does not verify"
            );
        }
    }
    // The floors: one tile by its key straight from Postgres, and the HTTP floor.
    let tiles = latest / 256;
    let mut tile_reads = Vec::with_capacity(requests);
    let statement = db
        .prepare("SELECT hashes FROM audit.tree_tiles WHERE level = 0 AND idx = $1")
        .await?;
    for _ in 0..requests {
        let idx = rng.below(tiles.max(1)) as i64;
        let started = Instant::now();
        db.query_one(&statement, &[&idx]).await?;
        tile_reads.push(started.elapsed());
    }
    let mut floor = Vec::with_capacity(requests);
    for _ in 0..requests {
        let started = Instant::now();
        chronicle
            .http
            .get(format!("{}/health/live", chronicle.base))
            .send()
            .await?
            .error_for_status()?;
        floor.push(started.elapsed());
    }
    let (t50, t99) = latency(tile_reads);
    let (f50, f99) = latency(floor);
    let floors = format!(
        "one tile by key from Postgres p50 {t50:.2} / p99 {t99:.2} ms; GET /health/live p50 {f50:.2} / p99 {f99:.2} ms"
    );
    for (what, times) in [("inclusion", inclusion), ("consistency", consistency)] {
        let (p50, p99) = latency(times);
        println!("proof_latency kind={what} p50_ms {p50:.3} p99_ms {p99:.3}");
        report.row(
            &format!(
                "proofs: {what} proof over HTTP, {latest}-event log, {requests} requests one at a time"
            ),
            format!("p50 {p50:.2} ms, p99 {p99:.2} ms"),
            floors.clone(),
            "p99 < 10 ms",
            crate::http::met(p99 < 10.0, &format!("{p99:.2} ms")),
        );
    }
    log.jetstream()
        .delete_stream(&log.config().stream_name)
        .await
        .ok();
    chronicle.stop().await;
    Ok(())
}
