//! `chronicle backup` and `chronicle restore`: the log's backups (see
//! `chronicle_replay::backup`) as an operator runs them.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use chronicle_events::JetStreamLog;
use chronicle_replay::backup::{self, BackupError};

use crate::config::Settings;
use crate::replay_cli::{Progress, public_key};
use crate::server;

/// What a backup or restore refused: said on stderr, exit 1, nothing written.
fn refused(e: BackupError) -> Result<ExitCode> {
    match e {
        BackupError::Corrupt(_) | BackupError::Refused(_) => {
            eprintln!("chronicle: {e}; nothing was written");
            Ok(ExitCode::from(1))
        }
        other => Err(other.into()),
    }
}

pub async fn backup(settings: &Settings, out: &Path) -> Result<ExitCode> {
    let log = server::connect_log(settings).await?;
    let progress = Progress::new("backup");
    let report = match backup::backup(&log, out, &|at, end| progress.update(at, end)).await {
        Ok(r) => r,
        Err(e) => return refused(e),
    };
    progress.finish();
    eprintln!(
        "chronicle: backed up positions {}..={} ({} messages, {} bytes, {:.1} s{}) into {}",
        report.from,
        report.to,
        report.messages,
        report.bytes,
        report.seconds,
        if report.incremental {
            ", incremental"
        } else {
            ""
        },
        out.display()
    );
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::SUCCESS)
}

pub async fn restore(settings: &Settings, from: &Path, key: Option<&str>) -> Result<ExitCode> {
    // Everything is read and checked before NATS is touched.
    let source = if from.is_dir() {
        backup::read_backup(from)
    } else {
        backup::read_export(from)
    };
    let source = match source {
        Ok(s) => s,
        Err(e) => return refused(e),
    };
    let cfg = settings.log_config()?;
    if source.stream_name != cfg.stream_name || source.subject_prefix != cfg.subject_prefix {
        return refused(BackupError::Refused(format!(
            "{} holds stream {} on {}.>, but this configuration names {} on {}.> (set CHRONICLE_STREAM and CHRONICLE_SUBJECT_PREFIX to the backup's: every message's authentication covers its subject)",
            from.display(),
            source.stream_name,
            source.subject_prefix,
            cfg.stream_name,
            cfg.subject_prefix
        )));
    }
    let stream_config = source
        .stream_config
        .clone()
        .unwrap_or_else(|| cfg.stream_config());
    let client = JetStreamLog::connect_client(settings.nats_url()?, &cfg)
        .await
        .context("NATS_URL")?;
    let progress = Progress::new("restore");
    // The replicas are the restoring configuration's (CHRONICLE_REPLICAS): the cluster
    // restored into may not be the one backed up.
    let replicas = Some(cfg.replicas);
    let restored = match backup::restore(client, &source, stream_config, replicas, &|at, end| {
        progress.update(at, end)
    })
    .await
    {
        Ok(r) => r,
        Err(e) => return refused(e),
    };
    progress.finish();
    drop(source);
    eprintln!(
        "chronicle: restored {} messages at positions {}..={} ({} gaps kept) in {:.1} s; verifying",
        restored.messages,
        restored.first_position,
        restored.last_position,
        restored.gaps,
        restored.seconds
    );
    let key = public_key(settings, key)?;
    let log = server::connect_log(settings).await?;
    let progress = Progress::new("verify");
    let verified = chronicle_replay::verify_log(
        &log,
        restored.first_position,
        Some(restored.last_position),
        key,
        &|at, end| progress.update(at, end),
    )
    .await?;
    progress.finish();
    println!(
        "{}",
        serde_json::to_string_pretty(
            &serde_json::json!({ "restore": restored, "verify": verified })
        )?
    );
    if verified.ok {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("chronicle: the restored log does not verify: see the report");
        Ok(ExitCode::from(1))
    }
}
