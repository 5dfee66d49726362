//! The `chronicle` binary: parses the configuration and runs a subcommand.

use std::process::ExitCode;

use anyhow::{Context, Result};
use chronicle_api::config::{Cli, Command, Settings, TokenCommand};
use chronicle_api::http::ServeRole;
use chronicle_api::{dev, server, telemetry};
use chronicle_events::domain::user::Role;
use clap::Parser;
use clap::error::{ContextKind, ContextValue};
use tokio::net::TcpListener;

/// mimalloc: the hot paths (envelopes as JSON values, batches of rows) allocate a lot;
/// glibc's malloc was a quarter of the CPU profile of verification.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // Secrets are never echoed back, even malformed ones.
            if let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg)
                && arg.contains("-key")
            {
                // The parser's own reason never contains the value.
                let why = std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "must be 64 hex characters".into());
                eprintln!("chronicle: invalid value for '{arg}': {why}");
                return ExitCode::from(2);
            }
            // One clear line naming the setting, not clap's full usage.
            let text = e.to_string();
            let line = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("chronicle: {}", line.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    telemetry::init(cli.settings.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chronicle: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("chronicle: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let done = match cli.command {
        Command::Migrate => {
            let applied = server::migrate(&cli.settings).await?;
            println!("applied {} migration(s): {applied:?}", applied.len());
            Ok(())
        }
        Command::Serve { role } => serve(cli.settings, role, None, false).await,
        Command::Project { only } => {
            let projections = server::select_projections(&only)?;
            let log = server::connect_log(&cli.settings).await?;
            let (stop, stopped) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                server::shutdown_signal().await;
                let _ = stop.send(true);
            });
            server::run_projectors(&cli.settings, log, projections, stopped).await
        }
        Command::Token(TokenCommand::Issue { user, role, ttl }) => {
            let state = server::connect(&cli.settings).await?;
            let token = server::issue_token(&state, &user, role, ttl).await?;
            println!("{token}");
            Ok(())
        }
        Command::Backup { out } => {
            return chronicle_api::backup_cli::backup(&cli.settings, &out).await;
        }
        Command::Restore { from, public_key } => {
            return chronicle_api::backup_cli::restore(&cli.settings, &from, public_key.as_deref())
                .await;
        }
        Command::Replay(replay) => {
            return chronicle_api::replay_cli::run(&cli.settings, replay).await;
        }
        Command::Dev(args) => {
            let env = dev::prepare(cli.settings, &args).await?;
            let applied = server::migrate(&env.settings).await?;
            tracing::info!(?applied, "read models migrated");
            let result = serve(env.settings.clone(), ServeRole::All, Some(&args.dir), true).await;
            // Stop the servers it started, newest first.
            let mut servers = env.servers;
            while let Some(mut s) = servers.pop() {
                s.stop();
            }
            result
        }
    };
    done.map(|()| ExitCode::SUCCESS)
}

/// Serves the API until Ctrl-C or SIGTERM; with `projectors`, runs every projection in
/// the same process and lets each finish its batch before returning.
async fn serve(
    settings: Settings,
    role: ServeRole,
    dev_dir: Option<&std::path::Path>,
    projectors: bool,
) -> Result<()> {
    let state = server::connect(&settings).await?;
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("CHRONICLE_LISTEN: cannot listen on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    println!("Chronicle is listening on http://{addr}");
    if let Some(dir) = dev_dir {
        let token = server::issue_token(&state, "admin", Role::Admin, Some(24 * 3600)).await?;
        println!("  admin token (24 h): {token}");
        println!("  NATS_URL={}", settings.nats_url.as_deref().unwrap_or(""));
        println!(
            "  DATABASE_URL={}",
            settings.database_url.as_deref().unwrap_or("")
        );
        println!("  data and keys under {}", dir.display());
        println!("  readiness: curl http://{addr}/health/ready");
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        server::shutdown_signal().await;
        let _ = stop.send(true);
    });
    let projecting = projectors.then(|| {
        let (settings, log, stopped) = (settings.clone(), state.log.clone(), stopped.clone());
        tokio::spawn(async move {
            let all = server::select_projections(&[]).unwrap_or_default();
            server::run_projectors(&settings, log, all, stopped).await
        })
    });
    let mut until = stopped.clone();
    let served = server::serve(state, role, listener, async move {
        let _ = until.wait_for(|s| *s).await;
    })
    .await;
    if let Some(p) = projecting {
        let _ = p.await;
    }
    served
}
