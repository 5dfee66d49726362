//! `chronicle dev`: everything on one machine. Starts a local nats-server (JetStream) and
//! a Postgres cluster under `./.chronicle/` unless `NATS_URL` / `DATABASE_URL` point
//! elsewhere, reuses their data on the next start, makes the keys it needs, migrates,
//! and serves. Ctrl-C (or SIGTERM) stops the API, then the servers it started.
//!
//! Postgres refuses to run as root: when run as root, its files are given to an
//! unprivileged user (`postgres` if it exists, else `nobody`) and it runs as that user.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, Uid, User};

use crate::config::{DevArgs, HexKey, Settings, parse_hex_key};

/// A server process started by `dev`; asked to stop (then killed after 10 s) when dropped.
pub struct Supervised {
    name: &'static str,
    child: Child,
    /// How the server is asked to stop: Postgres's SIGTERM waits for every client to
    /// leave ("smart" shutdown), so it gets SIGINT ("fast": clients are disconnected).
    stop_signal: Signal,
}

impl Supervised {
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, self.stop_signal);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                tracing::info!(server = self.name, "stopped");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        tracing::warn!(server = self.name, "killed after 10 s");
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The local servers and settings `dev` ends up with.
pub struct DevEnvironment {
    pub settings: Settings,
    /// In start order; stopped in reverse.
    pub servers: Vec<Supervised>,
}

/// A tool's path: the candidates in order, then `PATH`.
fn tool(candidates: &[PathBuf], name: &str) -> Result<PathBuf> {
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            })
        })
        .ok_or_else(|| anyhow!("{name} not found: run scripts/setup"))
}

fn wait_for_port(port: u16, what: &str, child: &mut Child, log: &Path) -> Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!("{what} exited ({status}); see {}", log.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!(
        "{what} did not listen on port {port} within 30 s; see {}",
        log.display()
    )
}

fn log_file(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}

/// The user Postgres runs as: ourselves, or an unprivileged one when we are root.
fn postgres_user() -> Result<Option<User>> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    for name in ["postgres", "nobody"] {
        if let Ok(Some(u)) = User::from_name(name) {
            return Ok(Some(u));
        }
    }
    bail!("running as root and no unprivileged user (postgres, nobody) to run Postgres as")
}

fn as_user(cmd: &mut Command, user: &Option<User>) {
    if let Some(u) = user {
        cmd.uid(u.uid.as_raw()).gid(u.gid.as_raw());
    }
}

pub fn start_nats(dir: &Path, port: u16) -> Result<Supervised> {
    let mut candidates = vec![dir.join("tools/nats/bin/nats-server")];
    if let Some(p) = std::env::var_os("CHRONICLE_NATS_SERVER") {
        candidates.insert(0, PathBuf::from(p));
    }
    let bin = tool(&candidates, "nats-server")?;
    let store = dir.join("nats");
    std::fs::create_dir_all(&store)?;
    let log = dir.join("nats.log");
    let mut child = Command::new(&bin)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(&store)
        .stdout(Stdio::from(log_file(&log)?))
        .stderr(Stdio::from(log_file(&log)?))
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    wait_for_port(port, "nats-server", &mut child, &log)?;
    Ok(Supervised {
        name: "nats-server",
        child,
        stop_signal: Signal::SIGTERM,
    })
}

pub fn start_postgres(dir: &Path, port: u16) -> Result<Supervised> {
    let pg_bin = |name: &str| {
        let mut candidates = vec![PathBuf::from("/usr/lib/postgresql/15/bin").join(name)];
        if let Some(d) = std::env::var_os("CHRONICLE_PG_BINDIR") {
            candidates.insert(0, PathBuf::from(d).join(name));
        }
        tool(&candidates, name)
    };
    let user = postgres_user()?;
    let data = dir.join("pg");
    let log = dir.join("postgres.log");
    if !data.join("PG_VERSION").is_file() {
        std::fs::create_dir_all(&data)?;
        if let Some(u) = &user {
            std::os::unix::fs::chown(&data, Some(u.uid.as_raw()), Some(u.gid.as_raw()))?;
        }
        let mut initdb = Command::new(pg_bin("initdb")?);
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "chronicle",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ])
            .stdout(Stdio::from(log_file(&log)?))
            .stderr(Stdio::from(log_file(&log)?));
        as_user(&mut initdb, &user);
        let status = initdb.status().context("cannot run initdb")?;
        if !status.success() {
            bail!(
                "initdb failed ({status}); see {} (as root, every folder above {} must be \
                 readable by the postgres user)",
                log.display(),
                data.display()
            );
        }
    }
    let mut cmd = Command::new(pg_bin("postgres")?);
    cmd.arg("-D")
        .arg(&data)
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k", ""])
        .stdout(Stdio::from(log_file(&log)?))
        .stderr(Stdio::from(log_file(&log)?))
        .process_group(0);
    as_user(&mut cmd, &user);
    let mut child = cmd.spawn().context("cannot start postgres")?;
    wait_for_port(port, "postgres", &mut child, &log)?;
    Ok(Supervised {
        name: "postgres",
        child,
        stop_signal: Signal::SIGINT,
    })
}

/// Reads a key file, or makes one (64 hex characters, readable by the owner only).
fn key_file(path: &Path) -> Result<HexKey> {
    if path.is_file() {
        let text = std::fs::read_to_string(path)?;
        return parse_hex_key(&text).map_err(|e| anyhow!("{}: {e}", path.display()));
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow!("no randomness for a key: {e}"))?;
    let text = hex::encode(bytes);
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    Ok(HexKey(bytes))
}

/// Creates the `chronicle` database on a fresh local cluster.
pub async fn ensure_database(port: u16) -> Result<String> {
    let admin = format!("postgres://chronicle@127.0.0.1:{port}/postgres");
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = loop {
        match tokio_postgres::connect(&admin, tokio_postgres::NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(conn);
                break client;
            }
            // Postgres listens a moment before it accepts sessions.
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => return Err(e).context("cannot connect to the local postgres"),
        }
    };
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = 'chronicle'", &[])
        .await?
        .is_some();
    if !exists {
        client.batch_execute("CREATE DATABASE chronicle").await?;
    }
    Ok(format!("postgres://chronicle@127.0.0.1:{port}/chronicle"))
}

/// Starts what is not configured and fills the settings in.
pub async fn prepare(mut settings: Settings, args: &DevArgs) -> Result<DevEnvironment> {
    let dir = &args.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let mut servers = Vec::new();
    if settings.nats_url.is_none() {
        servers.push(start_nats(&dir, args.nats_port)?);
        settings.nats_url = Some(format!("nats://127.0.0.1:{}", args.nats_port));
    }
    if settings.database_url.is_none() {
        servers.push(start_postgres(&dir, args.pg_port)?);
        settings.database_url = Some(ensure_database(args.pg_port).await?);
    }
    if settings.signing_key.is_none() {
        settings.signing_key = Some(key_file(&dir.join("signing.key"))?);
    }
    if settings.seal_key.is_none() {
        settings.seal_key = Some(key_file(&dir.join("seal.key"))?);
    }
    if settings.event_key.is_none() {
        settings.event_key = Some(key_file(&dir.join("event.key"))?);
    }
    Ok(DevEnvironment { settings, servers })
}
