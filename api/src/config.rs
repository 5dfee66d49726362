//! Configuration from flags or the environment. A missing or malformed setting stops
//! start-up with one line naming it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chronicle_events::{Keyring, LogConfig};
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "chronicle",
    version,
    about = "Chronicle: the event-sourced core of the Atom platform"
)]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Everything on one machine: local nats-server and Postgres under ./.chronicle/
    /// (unless NATS_URL / DATABASE_URL point elsewhere), migrations, the API.
    Dev(DevArgs),
    /// The HTTP API only (stateless; run many).
    Serve {
        /// Which routes this process serves: commands, queries, audit, or all (each also
        /// serves /health/*, /metrics and /openapi.json).
        #[arg(long, env = "CHRONICLE_ROLE", value_enum, default_value = "all")]
        role: crate::http::ServeRole,
    },
    /// Applies the read-model migrations in migrations/.
    Migrate,
    /// Projector workers: one is active per projection across all processes, the others
    /// stand by.
    Project {
        /// Run only these projections (tokens, jobs, approvals, ledger, agents).
        #[arg(long)]
        only: Vec<String>,
    },
    /// An online, consistent backup of the log into `--out DIR`: everything up to the
    /// log's end when it starts, every message with its headers; run again on the same
    /// folder, it adds only what is new.
    Backup {
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Restores the log from a backup folder or an export file (from position 1) into a
    /// NATS with no Chronicle stream, every message at its original position, then
    /// verifies it (exit 1 on any break). Refused, with nothing written, if the backup is
    /// damaged or the stream already holds messages.
    Restore {
        #[arg(long)]
        from: std::path::PathBuf,
        /// The public seal key (hex) to verify the seals with (default: from
        /// CHRONICLE_SEAL_KEY).
        #[arg(long)]
        public_key: Option<String>,
    },
    /// The auditor's and operator's history tools.
    #[command(subcommand)]
    Replay(ReplayCommand),
    /// Tokens: `chronicle token issue --user U --role R [--ttl SECONDS]`.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Ndjson,
    Table,
}

#[derive(Debug, Subcommand)]
pub enum ReplayCommand {
    /// The history, filtered, in log order.
    Events {
        /// A stream (`job.42`) or a domain (`job.*`).
        #[arg(long)]
        stream: Option<String>,
        #[arg(long = "type")]
        event_type: Option<String>,
        #[arg(long)]
        from_position: Option<u64>,
        #[arg(long)]
        to_position: Option<u64>,
        /// RFC 3339.
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        /// The actor's id: what did this user or agent do.
        #[arg(long)]
        actor: Option<String>,
        /// One command's events.
        #[arg(long)]
        command_id: Option<uuid::Uuid>,
        /// Everything one request caused.
        #[arg(long)]
        correlation_id: Option<uuid::Uuid>,
        #[arg(long, value_enum, default_value = "ndjson")]
        format: OutputFormat,
    },
    /// One stream's state, folded with its decider, now or as of a time or position.
    State {
        /// `<domain>.<id>`, e.g. `job.42`.
        #[arg(value_name = "STREAM")]
        target: String,
        #[arg(long, conflicts_with = "at_position")]
        as_of: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long)]
        at_position: Option<u64>,
    },
    /// Verifies the live log (or, with --file, an export offline); exits 1 on any break.
    Verify {
        #[arg(long)]
        from_position: Option<u64>,
        #[arg(long)]
        to_position: Option<u64>,
        /// An export to verify offline, with no access to NATS or Postgres.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        /// The public seal key (64 hex) to check seals with; offline, without it the
        /// key named in the export's manifest is used.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Writes the events and seals of a range, with a manifest, to a file.
    Export {
        #[arg(long)]
        out: std::path::PathBuf,
        #[arg(long)]
        from_position: Option<u64>,
        /// Default: the last seal.
        #[arg(long)]
        to_position: Option<u64>,
    },
    /// Appends a seal over everything unsealed now (needs CHRONICLE_SEAL_KEY).
    Seal,
    /// Prints a proof bundle (JSON): with --position, the event there, its inclusion
    /// proof and the signed checkpoint; with --from, two signed checkpoints and the
    /// consistency proof between them.
    Prove {
        /// The event's log position.
        #[arg(long, conflicts_with = "from", required_unless_present = "from")]
        position: Option<u64>,
        /// A sealed tree size to prove against (default: the latest checkpoint).
        #[arg(long, conflicts_with = "from")]
        size: Option<u64>,
        /// The older sealed tree size of a consistency proof.
        #[arg(long)]
        from: Option<u64>,
        /// The newer sealed tree size (default: the latest checkpoint).
        #[arg(long, requires = "from")]
        to: Option<u64>,
    },
    /// Checks a proof bundle offline, with the public seal key alone; exits 1 if it does
    /// not hold.
    Check {
        /// The bundle `replay prove` wrote.
        #[arg(long)]
        proof: std::path::PathBuf,
        /// The public seal key (64 hex), obtained independently of the bundle.
        #[arg(long)]
        public_key: String,
    },
    /// Rebuilds read models from the log beside the live tables, compares, and swaps them
    /// in one transaction; queries keep answering throughout.
    Rebuild {
        /// tokens, jobs, approvals, ledger, agents, or all.
        #[arg(default_value = "all")]
        projection: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Mints a token through the normal command path and prints it alone on stdout.
    Issue {
        #[arg(long)]
        user: String,
        #[arg(long, value_parser = parse_role)]
        role: chronicle_events::domain::user::Role,
        /// Lifetime in seconds (60 to 31 622 400; default 3600).
        #[arg(long)]
        ttl: Option<i64>,
    },
}

fn parse_role(s: &str) -> Result<chronicle_events::domain::user::Role, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| "must be one of admin, writer, agent, analyst, auditor".to_owned())
}

#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    /// Where the local servers keep their data and the generated keys.
    #[arg(long, default_value = ".chronicle")]
    pub dir: PathBuf,
    /// Port of the local nats-server (when NATS_URL is unset).
    #[arg(long, env = "CHRONICLE_DEV_NATS_PORT", default_value_t = 4222)]
    pub nats_port: u16,
    /// Port of the local Postgres (when DATABASE_URL is unset).
    #[arg(long, env = "CHRONICLE_DEV_PG_PORT", default_value_t = 54329)]
    pub pg_port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// A 32-byte key given as 64 hex characters.
#[derive(Clone, PartialEq, Eq)]
pub struct HexKey(pub [u8; 32]);

impl std::fmt::Debug for HexKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HexKey(<redacted>)")
    }
}

pub fn parse_hex_key(s: &str) -> Result<HexKey, String> {
    let bytes = hex::decode(s.trim()).map_err(|_| "must be 64 hex characters".to_owned())?;
    let key: [u8; 32] = bytes
        .try_into()
        .map_err(|_| "must be 64 hex characters".to_owned())?;
    if let Some(why) = degenerate(&key) {
        return Err(format!(
            "is not a usable key ({why}); make one with `openssl rand -hex 32`"
        ));
    }
    Ok(HexKey(key))
}

/// Why a 32-byte key is too regular to be a secret, if it is: all zeros, one byte
/// repeated, a short pattern repeated, or too few distinct bytes. Thirty-two random bytes
/// have about 30 distinct values; fewer than 12 happens by chance with a probability far
/// below 2^-60.
pub fn degenerate(key: &[u8; 32]) -> Option<&'static str> {
    let mut seen = [false; 256];
    for b in key {
        seen[*b as usize] = true;
    }
    let distinct = seen.iter().filter(|s| **s).count();
    if distinct == 1 {
        return Some("one byte repeated");
    }
    for period in [2, 4, 8, 16] {
        if key.chunks(period).all(|c| c == &key[..period]) {
            return Some("a short pattern repeated");
        }
    }
    if distinct < 12 {
        return Some("too few distinct bytes");
    }
    None
}

fn parse_hex_keys(s: &str) -> Result<RetiredKeys, String> {
    s.split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| parse_hex_key(k).map(|h| h.0))
        .collect::<Result<Vec<_>, _>>()
        .map(RetiredKeys)
}

/// Retired event keys (still verify, never sign).
#[derive(Clone, Default)]
pub struct RetiredKeys(pub Vec<[u8; 32]>);

impl std::fmt::Debug for RetiredKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RetiredKeys({} <redacted>)", self.0.len())
    }
}

fn parse_token_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(s.to_owned())
    } else {
        Err("must be 1 to 128 visible ASCII characters".into())
    }
}

fn parse_subject_prefix(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.split('.').all(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
    if ok {
        Ok(s.to_owned())
    } else {
        Err("must be dot-separated tokens of A-Z, a-z, 0-9, '_' or '-'".into())
    }
}

fn parse_stream_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(s.to_owned())
    } else {
        Err("must be 1 to 64 characters of A-Z, a-z, 0-9, '_' or '-'".into())
    }
}

/// Settings shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// NATS server URL, or several comma-separated for a cluster.
    #[arg(long, env = "NATS_URL", global = true)]
    pub nats_url: Option<String>,
    /// A CA certificate (PEM file) to trust for NATS's TLS; set, connections require TLS.
    #[arg(long, env = "CHRONICLE_NATS_CA", global = true)]
    pub nats_ca: Option<PathBuf>,
    /// Postgres URL of the read models.
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// Address the HTTP API listens on.
    #[arg(
        long,
        env = "CHRONICLE_LISTEN",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub listen: SocketAddr,
    /// The JetStream stream holding the log.
    #[arg(long = "log-stream", id = "log_stream", env = "CHRONICLE_STREAM", default_value = "CHRONICLE", value_parser = parse_stream_name, global = true)]
    pub stream: String,
    /// Subjects of the log are `<prefix>.<domain>.<id>`; change it only to run several
    /// Chronicles on one NATS account.
    #[arg(long, env = "CHRONICLE_SUBJECT_PREFIX", default_value = "chronicle.ev", value_parser = parse_subject_prefix, global = true)]
    pub subject_prefix: String,
    /// Replicas of the stream: 1 on one node, 3 on a cluster.
    #[arg(long, env = "CHRONICLE_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5), global = true)]
    pub replicas: u8,
    /// Token signing key (64 hex characters).
    #[arg(long, env = "CHRONICLE_SIGNING_KEY", value_parser = parse_hex_key, hide_env_values = true, global = true)]
    pub signing_key: Option<HexKey>,
    /// Ed25519 seed of the seal key (64 hex characters).
    #[arg(long, env = "CHRONICLE_SEAL_KEY", value_parser = parse_hex_key, hide_env_values = true, global = true)]
    pub seal_key: Option<HexKey>,
    /// Event authentication key (64 hex characters): every event Chronicle appends is
    /// authenticated with it, and anything on the log that it does not authenticate is
    /// stepped over and reported.
    #[arg(long, env = "CHRONICLE_EVENT_KEY", value_parser = parse_hex_key, hide_env_values = true, global = true)]
    pub event_key: Option<HexKey>,
    /// Retired event keys (comma-separated, 64 hex each): events they authenticated still
    /// verify; nothing new is signed with them.
    #[arg(long, env = "CHRONICLE_EVENT_KEYS_RETIRED", value_parser = parse_hex_keys, hide_env_values = true, global = true)]
    pub event_keys_retired: Option<RetiredKeys>,
    /// The `iss` Chronicle's tokens carry and must carry.
    #[arg(long, env = "CHRONICLE_TOKEN_ISSUER", default_value = "chronicle", value_parser = parse_token_name, global = true)]
    pub token_issuer: String,
    /// The `aud` Chronicle's tokens carry and must carry.
    #[arg(long, env = "CHRONICLE_TOKEN_AUDIENCE", default_value = "chronicle", value_parser = parse_token_name, global = true)]
    pub token_audience: String,
    /// Seal the log once this many events are unsealed...
    #[arg(long, env = "CHRONICLE_SEAL_EVERY_EVENTS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub seal_every_events: u64,
    /// ...or once any are and this many seconds have passed since the last seal.
    #[arg(long, env = "CHRONICLE_SEAL_EVERY_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub seal_every_seconds: u64,
    /// Requests per second allowed to one token (or, without a token, one address);
    /// bursts of twice that are let through.
    #[arg(long, env = "CHRONICLE_RATE_LIMIT", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub rate_limit: u32,
    /// `GET /v1/audit/verify` answers as usual when it finishes within this many
    /// milliseconds; a longer one answers `200` then and streams its report when done
    /// (whitespace meanwhile), free of the request time limit.
    #[arg(long, env = "CHRONICLE_VERIFY_ANSWER_WITHIN_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(0..=25_000), global = true)]
    pub verify_answer_within_ms: u64,
    /// Live subscriptions (`/v1/subscribe`, `/v1/subscribe/ws`) one token may hold open at
    /// once; one more is `429 RATE_LIMITED`.
    #[arg(long, env = "CHRONICLE_SUBSCRIPTIONS_PER_TOKEN", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub subscriptions_per_token: u32,
    /// How many events a live subscriber may fall behind the log before it is sent
    /// `lagging` and closed (the events are shared by every subscriber of the process, not
    /// copied per subscriber).
    #[arg(long, env = "CHRONICLE_SUBSCRIBER_LAG", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(16..=1_000_000), global = true)]
    pub subscriber_lag: u32,
    /// Snapshot an aggregate's state every this many events (in the `<stream>_SNAPSHOTS`
    /// key-value bucket), so that a command on a long stream a process has not cached
    /// reads only what follows; 0 turns snapshots off.
    #[arg(
        long,
        env = "CHRONICLE_SNAPSHOT_EVERY",
        default_value_t = 100,
        global = true
    )]
    pub snapshot_every: u64,
    /// Origins allowed to call the API from a browser (comma-separated); none by default.
    #[arg(
        long,
        env = "CHRONICLE_CORS_ORIGINS",
        value_delimiter = ',',
        global = true
    )]
    pub cors_origins: Vec<String>,
    /// Send Strict-Transport-Security (set when a TLS proxy fronts Chronicle).
    #[arg(long, env = "CHRONICLE_HSTS", default_value_t = false, global = true)]
    pub hsts: bool,
    /// Log format.
    #[arg(
        long,
        env = "CHRONICLE_LOG_FORMAT",
        value_enum,
        default_value = "pretty",
        global = true
    )]
    pub log_format: LogFormat,
}

/// A setting that is needed and missing: named the way an operator sets it.
#[derive(Debug, thiserror::Error)]
#[error("{name} is not set (flag {flag})")]
pub struct Missing {
    pub name: &'static str,
    pub flag: &'static str,
}

impl Settings {
    pub fn nats_url(&self) -> Result<&str, Missing> {
        self.nats_url.as_deref().ok_or(Missing {
            name: "NATS_URL",
            flag: "--nats-url",
        })
    }

    pub fn database_url(&self) -> Result<&str, Missing> {
        self.database_url.as_deref().ok_or(Missing {
            name: "DATABASE_URL",
            flag: "--database-url",
        })
    }

    pub fn signing_key(&self) -> Result<&HexKey, Missing> {
        self.signing_key.as_ref().ok_or(Missing {
            name: "CHRONICLE_SIGNING_KEY",
            flag: "--signing-key",
        })
    }

    /// The event keys, checked: set, and not the same as the other keys (each key has one
    /// job, so that holding one gives no other power).
    pub fn keyring(&self) -> Result<Keyring, anyhow::Error> {
        let event = self.event_key.as_ref().ok_or(Missing {
            name: "CHRONICLE_EVENT_KEY",
            flag: "--event-key",
        })?;
        for (other, name) in [
            (&self.signing_key, "CHRONICLE_SIGNING_KEY"),
            (&self.seal_key, "CHRONICLE_SEAL_KEY"),
        ] {
            if other.as_ref() == Some(event) {
                anyhow::bail!("CHRONICLE_EVENT_KEY must differ from {name}");
            }
        }
        if let (Some(a), Some(b)) = (&self.signing_key, &self.seal_key)
            && a == b
        {
            anyhow::bail!("CHRONICLE_SIGNING_KEY must differ from CHRONICLE_SEAL_KEY");
        }
        let retired = self.event_keys_retired.clone().unwrap_or_default();
        Ok(Keyring::new(&event.0, &retired.0))
    }

    pub fn log_config(&self) -> Result<LogConfig, anyhow::Error> {
        Ok(LogConfig {
            stream_name: self.stream.clone(),
            subject_prefix: self.subject_prefix.clone(),
            replicas: self.replicas as usize,
            request_timeout: Duration::from_secs(5),
            ca_file: self.nats_ca.clone(),
            ..LogConfig::new(self.keyring()?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "6b1f0e3c5d7a9b2c4e6f8a0b1c3d5e7f9a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d";

    #[test]
    fn keys_are_exactly_64_hex_characters() {
        assert!(parse_hex_key(GOOD).is_ok());
        assert!(parse_hex_key(&GOOD[..62]).is_err());
        assert!(parse_hex_key(&"zz".repeat(32)).is_err());
        assert_eq!(
            format!("{:?}", parse_hex_key(GOOD).unwrap()),
            "HexKey(<redacted>)"
        );
    }

    #[test]
    fn degenerate_keys_are_refused() {
        for bad in [
            "00".repeat(32),
            "ab".repeat(32),
            "0102".repeat(16),
            "0123456789abcdef".repeat(4),
            "000102030405060708090a".to_owned() + &"00".repeat(21),
        ] {
            let err = parse_hex_key(&bad).unwrap_err();
            assert!(err.contains("not a usable key"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_event_key_is_required_and_differs_from_the_others() {
        let other = "1f2e3d4c5b6a79880f1e2d3c4b5a69780e1d2c3b4a5968770d1c2b3a49586766";
        let cli = Cli::try_parse_from(["chronicle", "serve"]).unwrap();
        assert!(
            cli.settings
                .keyring()
                .unwrap_err()
                .to_string()
                .contains("CHRONICLE_EVENT_KEY")
        );
        let cli = Cli::try_parse_from([
            "chronicle",
            "--event-key",
            GOOD,
            "--signing-key",
            GOOD,
            "serve",
        ])
        .unwrap();
        assert!(
            cli.settings
                .keyring()
                .unwrap_err()
                .to_string()
                .contains("must differ")
        );
        let cli = Cli::try_parse_from([
            "chronicle",
            "--event-key",
            GOOD,
            "--signing-key",
            other,
            "serve",
        ])
        .unwrap();
        assert!(cli.settings.keyring().is_ok());
    }

    #[test]
    fn a_malformed_setting_is_refused_naming_it() {
        let err = Cli::try_parse_from(["chronicle", "--replicas", "9", "serve"]).unwrap_err();
        assert!(err.to_string().contains("--replicas"), "{err}");
        let err = Cli::try_parse_from(["chronicle", "--log-stream", "a.b", "serve"]).unwrap_err();
        assert!(err.to_string().contains("--log-stream"), "{err}");
    }
}
