//! `chronicle dev` and the binary's start-up, run as a real process: it starts its own
//! nats-server and Postgres, migrates, answers `/health/ready`, stops its servers on
//! SIGTERM and reuses their data on the next start. A missing or malformed setting stops
//! start-up with one line naming it.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chronicle_events::{
    Actor, AppendRequest, Domain, EventLog, Expected, JetStreamLog, LogConfig, PendingEvent,
    StreamId, domain::job::JobSubmitted,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use uuid::Uuid;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn nats_server() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../.chronicle/tools/nats/bin/nats-server")
}

struct Dev {
    child: Child,
    http: u16,
}

impl Dev {
    fn start(dir: &Path, http: u16, nats: u16, pg: u16) -> Dev {
        let child = Command::new(env!("CARGO_BIN_EXE_chronicle"))
            .args(["dev", "--dir"])
            .arg(dir)
            .env_remove("NATS_URL")
            .env_remove("DATABASE_URL")
            .env("CHRONICLE_NATS_SERVER", nats_server())
            .env("CHRONICLE_LISTEN", format!("127.0.0.1:{http}"))
            .env("CHRONICLE_DEV_NATS_PORT", nats.to_string())
            .env("CHRONICLE_DEV_PG_PORT", pg.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Dev { child, http }
    }

    async fn wait_ready(&mut self) -> serde_json::Value {
        let url = format!("http://127.0.0.1:{}/health/ready", self.http);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = reqwest::get(&url).await
                && r.status() == 200
            {
                return r.json().await.unwrap();
            }
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "chronicle dev exited before it was ready"
            );
            assert!(Instant::now() < deadline, "not ready within 60 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        self.stop()
    }

    fn stop(&mut self) -> std::process::ExitStatus {
        if let Some(status) = self.child.try_wait().unwrap() {
            return status;
        }
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "chronicle dev did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A failing test still stops `chronicle dev`, which stops its servers.
impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[tokio::test]
async fn dev_starts_its_servers_answers_ready_stops_them_and_reuses_their_data() {
    let dir = tempfile::tempdir().unwrap();
    // As root, Postgres runs as an unprivileged user that must reach its data folder.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (http, nats, pg) = (free_port(), free_port(), free_port());

    let mut dev = Dev::start(dir.path(), http, nats, pg);
    let ready = dev.wait_ready().await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["components"]["nats"]["status"], "up");
    assert_eq!(ready["components"]["postgres"]["status"], "up");
    let live = reqwest::get(format!("http://127.0.0.1:{http}/health/live"))
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    for key in ["signing.key", "seal.key", "event.key"] {
        let text = std::fs::read_to_string(dir.path().join(key)).unwrap();
        assert_eq!(text.len(), 64, "{key} holds 64 hex characters");
    }
    let event_key: [u8; 32] =
        hex::decode(std::fs::read_to_string(dir.path().join("event.key")).unwrap())
            .unwrap()
            .try_into()
            .unwrap();
    let config = || LogConfig::new(chronicle_events::Keyring::new(&event_key, &[]));

    // Something to find again after a restart.
    let log = JetStreamLog::connect(&format!("nats://127.0.0.1:{nats}"), config())
        .await
        .unwrap();
    let job = StreamId::new(Domain::Job, "kept").unwrap();
    log.append(AppendRequest::single(
        Uuid::new_v4(),
        job.clone(),
        Expected::NO_STREAM,
        vec![PendingEvent::new(
            JobSubmitted {
                job_id: "kept".into(),
                agent_id: "a".into(),
                kind: "k".into(),
                input: serde_json::json!({}),
            },
            Actor::system("test"),
            Uuid::new_v4(),
        )],
    ))
    .await
    .unwrap();
    drop(log);

    let status = dev.terminate();
    assert!(
        status.success(),
        "chronicle dev exits 0 on SIGTERM: {status}"
    );
    assert!(!port_open(nats), "nats-server stopped with dev");
    assert!(!port_open(pg), "postgres stopped with dev");

    let mut dev = Dev::start(dir.path(), http, nats, pg);
    let ready = dev.wait_ready().await;
    // The first start's admin token and the test's job, then this start's admin token.
    assert_eq!(ready["components"]["nats"]["last_position"], 3);
    let log = JetStreamLog::connect(&format!("nats://127.0.0.1:{nats}"), config())
        .await
        .unwrap();
    assert_eq!(log.read_stream(&job, 1).await.unwrap().len(), 1);
    drop(log);
    assert!(dev.terminate().success());
}

fn chronicle(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chronicle"));
    cmd.args(args)
        .env_remove("NATS_URL")
        .env_remove("DATABASE_URL")
        .env_remove("CHRONICLE_REPLICAS")
        .env_remove("CHRONICLE_SIGNING_KEY")
        .env_remove("CHRONICLE_EVENT_KEY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_missing_or_malformed_setting_stops_start_up_with_one_line_naming_it() {
    let (code, err) = chronicle(&["serve"], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("CHRONICLE_SIGNING_KEY"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let key = "6b1f0e3c5d7a9b2c4e6f8a0b1c3d5e7f9a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d";
    let (code, err) = chronicle(&["serve"], &[("CHRONICLE_SIGNING_KEY", key)]);
    assert_ne!(code, 0);
    assert!(err.contains("NATS_URL"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // Without the event key nothing that reads or writes the log starts.
    let (code, err) = chronicle(
        &["serve"],
        &[
            ("CHRONICLE_SIGNING_KEY", key),
            ("NATS_URL", "nats://127.0.0.1:1"),
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("CHRONICLE_EVENT_KEY"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // A degenerate key (all zeros, one byte repeated...) is refused, naming the setting
    // and not echoing it.
    for weak in ["00".repeat(32), "ab".repeat(32)] {
        let (code, err) = chronicle(&["serve"], &[("CHRONICLE_SIGNING_KEY", &weak)]);
        assert_ne!(code, 0);
        assert!(
            err.contains("--signing-key") && err.contains("not a usable key"),
            "{err}"
        );
        assert!(!err.contains(&weak), "{err}");
    }

    let (code, err) = chronicle(&["serve"], &[("CHRONICLE_REPLICAS", "seven")]);
    assert_ne!(code, 0);
    assert!(err.contains("--replicas"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let (code, err) = chronicle(
        &["serve"],
        &[
            ("NATS_URL", "nats://127.0.0.1:1"),
            ("CHRONICLE_SIGNING_KEY", "not-hex"),
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("--signing-key"), "{err}");
    assert!(!err.contains("not-hex"), "secrets are not echoed: {err}");
}

#[tokio::test]
async fn token_issue_prints_a_working_token_alone_on_stdout() {
    let nats = std::env::var("NATS_URL").expect("NATS_URL is not set: run scripts/test");
    let tag = Uuid::new_v4().simple().to_string();
    let key = "6b1f0e3c5d7a9b2c4e6f8a0b1c3d5e7f9a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d";
    let event_key = "1f2e3d4c5b6a79880f1e2d3c4b5a69780e1d2c3b4a5968770d1c2b3a49586766";
    let out = Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .args([
            "token", "issue", "--user", "ops", "--role", "auditor", "--ttl", "600",
        ])
        .env("NATS_URL", &nats)
        .env("DATABASE_URL", "postgres://unused@127.0.0.1:1/x")
        .env("CHRONICLE_STREAM", format!("T{tag}"))
        .env("CHRONICLE_SUBJECT_PREFIX", format!("t{}.ev", &tag[..12]))
        .env("CHRONICLE_SIGNING_KEY", key)
        .env("CHRONICLE_EVENT_KEY", event_key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let signer = chronicle_api::auth::TokenSigner::new(
        &hex::decode(key).unwrap().try_into().unwrap(),
        "chronicle",
        "chronicle",
    );
    let claims = signer.verify(stdout.trim()).unwrap();
    assert_eq!(claims.sub, "ops");
    assert_eq!(claims.exp - claims.iat, 600);
    // It went through the log like any other token.
    let log = JetStreamLog::connect(
        &nats,
        LogConfig {
            stream_name: format!("T{tag}"),
            subject_prefix: format!("t{}.ev", &tag[..12]),
            ..LogConfig::new(chronicle_events::Keyring::new(
                &hex::decode(event_key).unwrap().try_into().unwrap(),
                &[],
            ))
        },
    )
    .await
    .unwrap();
    let events = log
        .read_stream(&StreamId::new(Domain::User, "ops").unwrap(), 1)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].envelope.event_type, "TokenIssued");
}
