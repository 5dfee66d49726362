//! Backup and restore over the shared 200 000-event fill: a backup of the whole log
//! against a raw ordered read of the same range, and a restore (every message published
//! at its position, acks checked) against raw publishes of the same messages with as many
//! in flight, on the same server, in the same run. Runs last: each round deletes the
//! stream and restores it.

use std::collections::VecDeque;
use std::time::Instant;

use anyhow::Result;
use async_nats::HeaderMap;
use chronicle_events::JetStreamLog;
use chronicle_replay::backup::{self, Record};

use crate::Args;
use crate::report::{Report, Spread, num};

/// As many publishes in flight as a restore keeps.
const IN_FLIGHT: usize = 256;

/// The same messages to a fresh stream (its own subjects), `IN_FLIGHT` at a time; msgs/s.
async fn raw_publish(
    js: &async_nats::jetstream::Context,
    records: &[Record],
    from_prefix: &str,
    to_prefix: &str,
) -> Result<f64> {
    let started = Instant::now();
    let mut acks = VecDeque::new();
    for r in records {
        let mut headers = HeaderMap::new();
        for (k, v) in &r.headers {
            if !backup::is_directive(k) {
                headers.append(k.as_str(), v.as_str());
            }
        }
        let subject = format!("{to_prefix}{}", &r.subject[from_prefix.len()..]);
        acks.push_back(
            js.publish_with_headers(subject, headers, r.payload.clone())
                .await?,
        );
        if acks.len() > IN_FLIGHT {
            acks.pop_front().expect("not empty").await?;
        }
    }
    for a in acks {
        a.await?;
    }
    Ok(records.len() as f64 / started.elapsed().as_secs_f64())
}

pub async fn bench(args: &Args, log: &JetStreamLog, end: u64, report: &mut Report) -> Result<()> {
    println!("== backup and restore of {end} events vs a raw ordered read and raw publishes");
    let js = log.jetstream().clone();
    let name = log.config().stream_name.clone();
    let prefix = log.config().subject_prefix.clone();
    let (mut backed, mut read, mut restored, mut published) = (vec![], vec![], vec![], vec![]);
    let mut checked = vec![];
    let mut bytes = 0;
    for round in 0..args.repeat {
        let dir = tempfile::tempdir()?;
        let made = backup::backup(log, dir.path(), &|_, _| {}).await?;
        anyhow::ensure!(made.messages == end, "backed up {} of {end}", made.messages);
        bytes = made.bytes;
        let b = made.messages as f64 / made.seconds;
        let r = crate::verify::raw_read(log, end).await?;

        let t = Instant::now();
        let source = backup::read_backup(dir.path())?;
        let c = source.messages as f64 / t.elapsed().as_secs_f64();
        let records: Vec<Record> = source.records().collect::<Result<_, _>>()?;
        let config = source
            .stream_config
            .clone()
            .expect("a backup has its settings");
        js.delete_stream(&name).await?;
        let done = backup::restore(log.client().clone(), &source, config, None, &|_, _| {}).await?;
        anyhow::ensure!(
            done.last_position == end,
            "restored up to {}",
            done.last_position
        );
        let l = done.messages as f64 / done.seconds;
        let raw_cfg = crate::fresh_config();
        js.create_stream(raw_cfg.stream_config()).await?;
        let p = raw_publish(&js, &records, &prefix, &raw_cfg.subject_prefix).await?;
        js.delete_stream(&raw_cfg.stream_name).await.ok();
        println!(
            "round {round}: backup {b:.0} msgs/s vs raw read {r:.0} ({:.2}); restore {l:.0} msgs/s vs raw publish {p:.0} ({:.2}); checking the backup {c:.0} msgs/s",
            b / r,
            l / p
        );
        backed.push(b);
        read.push(r);
        restored.push(l);
        published.push(p);
        checked.push(c);
    }
    let backup_ratio = Spread::of_ratios(&backed, &read);
    let restore_ratio = Spread::of_ratios(&restored, &published);
    report.row(
        &format!(
            "backup: {end} messages to a backup folder ({} MB)",
            num(bytes as f64 / 1e6, 1)
        ),
        Spread::of(backed).show(0, "msgs/s"),
        format!(
            "ordered consumer read of the same range: {}",
            Spread::of(read).show(0, "msgs/s")
        ),
        "ratio ≥ 0.5",
        crate::http::met(
            backup_ratio.median >= 0.5,
            &format!("{:.2}", backup_ratio.median),
        ),
    );
    report.row(
        &format!("restore: {end} messages at their positions into an empty NATS (without the verify that follows)"),
        format!(
            "{}; reading and checking the backup first: {}",
            Spread::of(restored).show(0, "msgs/s"),
            Spread::of(checked).show(0, "msgs/s")
        ),
        format!("publish with ack of the same messages, {IN_FLIGHT} in flight: {}", Spread::of(published).show(0, "msgs/s")),
        "ratio ≥ 0.5",
        crate::http::met(restore_ratio.median >= 0.5, &format!("{:.2}", restore_ratio.median)),
    );
    report.ratio("backup_vs_raw_read", backup_ratio);
    report.ratio("restore_vs_raw_publish", restore_ratio);
    Ok(())
}
