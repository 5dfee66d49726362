//! Chronicle as operators run it: `chronicle migrate`, then one `chronicle serve` and one
//! `chronicle project` process on a fresh database and a fresh log, so the HTTP figures
//! include everything a client pays for and peak RSS is each process's own.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chronicle_events::{JetStreamLog, LogConfig};
use tokio::process::{Child, Command};
use uuid::Uuid;

use crate::Args;

pub struct Chronicle {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
    pub stream_name: String,
    pub subject_prefix: String,
    pub database_url: String,
    serve: Child,
    /// `None` when started without projectors (and so without a sealer).
    project: Option<Child>,
}

/// The `chronicle` binary built beside this one.
fn binary() -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    let bin = me.with_file_name("chronicle");
    anyhow::ensure!(
        bin.exists(),
        "{} is missing: build it with `cargo build --release -p chronicle-api` (scripts/bench does)",
        bin.display()
    );
    Ok(bin)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A fresh database on the server of `url`; its URL.
pub async fn fresh_database(url: &str) -> Result<String> {
    let (admin, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let name = format!("bench_{}", Uuid::new_v4().simple());
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await?;
    let (base, _) = url
        .rsplit_once('/')
        .context("DATABASE_URL has no database")?;
    Ok(format!("{base}/{name}"))
}

impl Chronicle {
    pub async fn start(args: &Args) -> Result<Chronicle> {
        Chronicle::start_with(args, true).await
    }

    /// `serve` alone: no projectors, no sealer (the benchmark drives the tree itself).
    pub async fn start_api_only(args: &Args) -> Result<Chronicle> {
        Chronicle::start_with(args, false).await
    }

    async fn start_with(args: &Args, projectors: bool) -> Result<Chronicle> {
        let bin = binary()?;
        let database_url = fresh_database(
            args.database_url
                .as_deref()
                .context("DATABASE_URL is needed for the HTTP benchmarks")?,
        )
        .await?;
        let tag = Uuid::new_v4().simple().to_string();
        let stream_name = format!("BENCH_{tag}");
        let subject_prefix = format!("bench{}.ev", &tag[..8]);
        let port = free_port()?;
        let env = [
            ("NATS_URL", args.nats_url.clone()),
            ("DATABASE_URL", database_url.clone()),
            ("CHRONICLE_STREAM", stream_name.clone()),
            ("CHRONICLE_SUBJECT_PREFIX", subject_prefix.clone()),
            ("CHRONICLE_LISTEN", format!("127.0.0.1:{port}")),
            ("CHRONICLE_SIGNING_KEY", crate::SIGNING_KEY.to_owned()),
            ("CHRONICLE_SEAL_KEY", crate::SEAL_KEY.to_owned()),
            ("CHRONICLE_EVENT_KEY", crate::EVENT_KEY.to_owned()),
            // The bench is one client at 64 connections: no per-client limit.
            ("CHRONICLE_RATE_LIMIT", "1000000".into()),
            // … and holds a thousand subscriptions with its one token.
            ("CHRONICLE_SUBSCRIPTIONS_PER_TOKEN", "100000".into()),
            ("RUST_LOG", "warn".into()),
        ];
        let command = |sub: &[&str]| {
            let mut c = Command::new(&bin);
            c.args(sub)
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                .stdin(Stdio::null())
                .stderr(Stdio::inherit())
                .kill_on_drop(true);
            c
        };
        let status = command(&["migrate"]).stdout(Stdio::null()).status().await?;
        anyhow::ensure!(status.success(), "chronicle migrate failed");
        let out = command(&["token", "issue", "--user", "bench", "--role", "admin"])
            .output()
            .await?;
        anyhow::ensure!(out.status.success(), "chronicle token issue failed");
        let token = String::from_utf8(out.stdout)?.trim().to_owned();
        let serve = command(&["serve"]).stdout(Stdio::null()).spawn()?;
        let project = if projectors {
            Some(command(&["project"]).stdout(Stdio::null()).spawn()?)
        } else {
            None
        };
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .timeout(Duration::from_secs(30))
            .build()?;
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{base}/health/ready")).send().await
                && r.status().is_success()
            {
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("chronicle serve did not become ready within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Chronicle {
            base,
            token,
            http,
            stream_name,
            subject_prefix,
            database_url,
            serve,
            project,
        })
    }

    pub fn post(&self, path: &str, body: &serde_json::Value) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// This Chronicle's log, as the benchmark reads or writes it beside the processes.
    pub async fn log(&self, nats_url: &str) -> Result<JetStreamLog> {
        Ok(JetStreamLog::connect(
            nats_url,
            LogConfig {
                stream_name: self.stream_name.clone(),
                subject_prefix: self.subject_prefix.clone(),
                ..LogConfig::new(crate::keyring())
            },
        )
        .await?)
    }

    /// The `serve` process's id.
    pub fn serve_pid(&self) -> Option<u32> {
        self.serve.id()
    }

    /// Peak resident set (VmHWM) of `serve` and `project`, in MiB.
    pub fn peak_rss_mib(&self) -> (f64, f64) {
        let of = |child: &Child| {
            child
                .id()
                .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
                .and_then(|status| {
                    status
                        .lines()
                        .find(|l| l.starts_with("VmHWM:"))
                        .and_then(|l| l.split_whitespace().nth(1))
                        .and_then(|kb| kb.parse::<f64>().ok())
                })
                .map(|kb| kb / 1024.0)
                .unwrap_or(f64::NAN)
        };
        (
            of(&self.serve),
            self.project.as_ref().map(of).unwrap_or(f64::NAN),
        )
    }

    /// A counter's value from `/metrics` (summed over its labels).
    pub async fn metric(&self, name: &str) -> Result<f64> {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await?
            .text()
            .await?;
        Ok(text
            .lines()
            .filter(|l| {
                l.starts_with(name)
                    && l[name.len()..].starts_with([' ', '{'])
                    && !l.starts_with('#')
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// Waits until the read models have caught up with log position `end`; how long that
    /// took.
    pub async fn wait_for_read_models(&self, end: u64) -> Result<Duration> {
        let started = Instant::now();
        while self.read_position().await? < end {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(120),
                "the projector did not reach position {end} within 120 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(started.elapsed())
    }

    /// The read models' checkpoint as the API reports it (`X-Chronicle-Position`).
    pub async fn read_position(&self) -> Result<u64> {
        let r = self.get("/v1/queries/jobs?limit=1").send().await?;
        r.headers()
            .get("x-chronicle-position")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .context("no X-Chronicle-Position")
    }

    pub async fn stop(mut self) {
        let _ = self.serve.kill().await;
        if let Some(p) = self.project.as_mut() {
            let _ = p.kill().await;
        }
    }
}

/// The nats-server serving `nats_url` on this machine: the process named `nats-server`
/// whose command line names the URL's port (`None` for a remote or clustered server).
pub fn nats_pid(nats_url: &str) -> Option<u32> {
    let port = nats_url.rsplit(':').next()?.trim_end_matches('/');
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() != "nats-server" {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmdline
            .split(|b| *b == 0)
            .any(|arg| arg == port.as_bytes() || arg.ends_with(format!(":{port}").as_bytes()))
        {
            return Some(pid);
        }
    }
    None
}

/// CPU time (user + system) process `pid` has used so far, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields follow the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}
