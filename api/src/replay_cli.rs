//! `chronicle replay ...`: the auditor's and operator's history tools on the command line.
//! Long runs show a progress bar on a terminal and log their progress otherwise.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};
use chronicle_events::StreamId;
use chronicle_replay::history::{AsOf, HistoryFilter, history, record_json, state_at};
use chronicle_replay::prove;
use chronicle_replay::seal::{PublicSealKey, SealKey};
use futures::StreamExt;

use crate::config::{OutputFormat, ReplayCommand, Settings};
use crate::server;

/// Progress of a long run: a bar on a terminal, a log line every 10 % otherwise.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    label: &'static str,
    logged: std::sync::atomic::AtomicU64,
}

impl Progress {
    pub fn new(label: &'static str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(0);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:40}] {pos}/{len} ({per_sec}, {eta})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.set_message(label);
            b
        });
        Progress {
            bar,
            label,
            logged: Default::default(),
        }
    }

    pub fn update(&self, at: u64, end: u64) {
        if let Some(b) = &self.bar {
            b.set_length(end);
            b.set_position(at);
            return;
        }
        let decile = (at * 10).checked_div(end).unwrap_or(10).min(10);
        let before = self
            .logged
            .fetch_max(decile + 1, std::sync::atomic::Ordering::Relaxed);
        if decile + 1 > before {
            tracing::info!(task = self.label, position = at, end, "{}%", decile * 10);
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

pub fn public_key(settings: &Settings, given: Option<&str>) -> Result<Option<PublicSealKey>> {
    if let Some(hex) = given {
        return Ok(Some(
            PublicSealKey::from_hex(hex)
                .map_err(anyhow::Error::msg)
                .context("--public-key")?,
        ));
    }
    Ok(settings
        .seal_key
        .as_ref()
        .map(|k| SealKey::from_seed(&k.0).public()))
}

/// Prints an offline check's report on stdout and each problem on stderr; exit 1 unless ok.
fn print_report(report: &impl serde::Serialize, problems: &[String], ok: bool) -> Result<ExitCode> {
    println!("{}", serde_json::to_string_pretty(report)?);
    for problem in problems {
        eprintln!("chronicle: {problem}");
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub async fn run(settings: &Settings, command: ReplayCommand) -> Result<ExitCode> {
    match command {
        ReplayCommand::Verify {
            file: Some(file),
            public_key: key,
            ..
        } => {
            let key = public_key(settings, key.as_deref())?;
            // An operator holding the event keys checks every message's authentication
            // too; an auditor without them relies on what the seals recorded.
            let keyring = settings
                .event_key
                .is_some()
                .then(|| settings.keyring())
                .transpose()?;
            let report = chronicle_replay::export::verify_file(&file, key, keyring)?;
            print_report(&report, &report.problems, report.ok)
        }
        ReplayCommand::Verify {
            from_position,
            to_position,
            public_key: key,
            ..
        } => {
            let key = public_key(settings, key.as_deref())?;
            let log = server::connect_log(settings).await?;
            let progress = Progress::new("verify");
            let report = chronicle_replay::verify_log(
                &log,
                from_position.unwrap_or(1),
                to_position,
                key,
                &|at, end| progress.update(at, end),
            )
            .await?;
            progress.finish();
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        ReplayCommand::Events {
            stream,
            event_type,
            from_position,
            to_position,
            since,
            until,
            actor,
            command_id,
            correlation_id,
            format,
        } => {
            let filter = HistoryFilter {
                stream,
                event_type,
                from_position,
                to_position,
                since,
                until,
                actor,
                command_id,
                correlation_id,
            };
            filter
                .validate()
                .map_err(|(field, why)| anyhow::anyhow!("--{}: {why}", field.replace('_', "-")))?;
            let log = server::connect_log(settings).await?;
            let mut events = history(&log, filter).await?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            if format == OutputFormat::Table {
                writeln!(
                    out,
                    "{:>10}  {:<27}  {:<44}  {:>7}  {:<26}  actor",
                    "position", "occurred_at", "stream", "version", "type"
                )?;
            }
            while let Some(e) = events.next().await {
                let e = e?;
                match format {
                    OutputFormat::Ndjson => writeln!(out, "{}", record_json(&e))?,
                    OutputFormat::Table => writeln!(
                        out,
                        "{:>10}  {:<27}  {:<44}  {:>7}  {:<26}  {}",
                        e.position,
                        e.envelope
                            .occurred_at
                            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                        e.envelope.stream.to_string(),
                        e.version,
                        e.envelope.event_type,
                        e.envelope.actor.id
                    )?,
                }
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        ReplayCommand::State {
            target,
            as_of,
            at_position,
        } => {
            let stream: StreamId = target.parse().map_err(|e| anyhow::anyhow!("STREAM: {e}"))?;
            let log = server::connect_log(settings).await?;
            let as_of = match (as_of, at_position) {
                (Some(t), _) => AsOf::Time(t),
                (None, Some(p)) => AsOf::Position(p),
                (None, None) => AsOf::Now,
            };
            let at = state_at(&log, &stream, as_of).await?;
            println!("{}", serde_json::to_string_pretty(&at)?);
            Ok(ExitCode::SUCCESS)
        }
        ReplayCommand::Export {
            out,
            from_position,
            to_position,
        } => {
            let log = server::connect_log(settings).await?;
            let public = settings
                .seal_key
                .as_ref()
                .map(|k| SealKey::from_seed(&k.0).public_hex());
            let progress = Progress::new("export");
            let manifest = chronicle_replay::export::export(
                &log,
                from_position,
                to_position,
                public,
                &out,
                &|at, end| progress.update(at, end),
            )
            .await?;
            progress.finish();
            eprintln!(
                "exported positions {}..={} ({} messages) to {}",
                manifest.from_position,
                manifest.to_position,
                manifest.messages,
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        ReplayCommand::Rebuild { projection } => {
            let only = if projection == "all" {
                vec![]
            } else {
                vec![projection]
            };
            let projections = server::select_projections(&only)?;
            let log = server::connect_log(settings).await?;
            let url = settings.database_url()?;
            let mut all_identical = true;
            for p in projections {
                let progress = Progress::new("rebuild");
                let report = chronicle_replay::rebuild::rebuild(&log, url, p, &|at, end| {
                    progress.update(at, end)
                })
                .await?;
                progress.finish();
                all_identical &= report.identical;
                println!("{}", serde_json::to_string(&report)?);
            }
            if !all_identical {
                eprintln!(
                    "some rebuilt tables differ from the live ones they replaced (see above)"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ReplayCommand::Prove {
            position,
            size,
            from,
            to,
        } => {
            let db = server::connect_db(settings).await?;
            let bundle = match (position, from) {
                (Some(position), _) => {
                    let log = server::connect_log(settings).await?;
                    prove::prove_inclusion(&log, &db, position, size).await?
                }
                (None, Some(from)) => prove::prove_consistency(&db, from, to).await?,
                (None, None) => anyhow::bail!("give --position or --from"),
            };
            println!("{}", serde_json::to_string_pretty(&bundle)?);
            Ok(ExitCode::SUCCESS)
        }
        ReplayCommand::Check { proof, public_key } => {
            let key = PublicSealKey::from_hex(&public_key)
                .map_err(anyhow::Error::msg)
                .context("--public-key")?;
            let text = std::fs::read_to_string(&proof)
                .with_context(|| format!("reading {}", proof.display()))?;
            let bundle: prove::Bundle = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not a proof bundle of `chronicle replay prove`",
                    proof.display()
                )
            })?;
            let report = prove::check(&bundle, &key);
            print_report(&report, &report.problems, report.ok)
        }
        ReplayCommand::Seal => {
            let key = settings
                .seal_key
                .as_ref()
                .context("CHRONICLE_SEAL_KEY is not set (flag --seal-key)")?;
            let log = server::connect_log(settings).await?;
            let mut db = server::connect_db(settings).await?;
            match chronicle_replay::sealer::seal_now(&log, &mut db, &SealKey::from_seed(&key.0))
                .await?
            {
                Some(to) => eprintln!("sealed up to position {to}"),
                None => eprintln!("nothing to seal"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
