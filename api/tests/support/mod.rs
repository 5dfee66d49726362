//! An in-process Chronicle for HTTP tests: the real application on a loopback port,
//! against the NATS and Postgres `scripts/test` started, with a JetStream stream and
//! subject prefix of its own so that tests run in parallel without seeing each other.

#![allow(dead_code)]

use chronicle_api::config::{Cli, Settings};
use chronicle_api::server;
use chronicle_api::state::AppState;
use chronicle_events::domain::user::Role;
use clap::Parser;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::net::TcpListener;
use uuid::Uuid;

pub use chronicle_testkit::{EVENT_KEY, SEAL_KEY, SIGNING_KEY, database_url, fresh_database};

/// The seal key the tests' settings configure.
pub fn seal_key() -> chronicle_replay::seal::SealKey {
    chronicle_replay::seal::SealKey::from_seed(&chronicle_testkit::key(SEAL_KEY))
}

pub fn settings_for(stream: &str, prefix: &str, database_url: &str) -> Settings {
    let nats = std::env::var("NATS_URL").expect("NATS_URL is not set: run scripts/test");
    Cli::parse_from([
        "chronicle",
        "--nats-url",
        &nats,
        "--database-url",
        database_url,
        "--log-stream",
        stream,
        "--subject-prefix",
        prefix,
        "--signing-key",
        SIGNING_KEY,
        "--seal-key",
        SEAL_KEY,
        "--event-key",
        EVENT_KEY,
        // Load tests here are not what the rate limit is for; its own test sets it low.
        "--rate-limit",
        "100000",
        "serve",
    ])
    .settings
}

pub struct App {
    pub database_url: String,
    pub stop: Option<tokio::sync::watch::Sender<bool>>,
    pub base: String,
    pub state: AppState,
    pub admin: String,
    pub http: reqwest::Client,
    pub stream: String,
    pub prefix: String,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl App {
    /// A new application on its own stream.
    pub async fn start() -> App {
        let tag = Uuid::new_v4().simple().to_string();
        App::start_on(
            &format!("T{tag}"),
            &format!("t{}.ev", &tag[..12]),
            &database_url(),
        )
        .await
    }

    /// A new application on its own stream and database, with every projector running.
    pub async fn with_read_models() -> App {
        let tag = Uuid::new_v4().simple().to_string();
        let db = fresh_database().await;
        let mut app = App::start_on(&format!("T{tag}"), &format!("t{}.ev", &tag[..12]), &db).await;
        app.start_projectors().await;
        app
    }

    /// A new application on its own stream and its own migrated database, without
    /// projectors: for tests that seal (the Merkle tree lives in the database).
    pub async fn with_database() -> App {
        let tag = Uuid::new_v4().simple().to_string();
        let db = fresh_database().await;
        let app = App::start_on(&format!("T{tag}"), &format!("t{}.ev", &tag[..12]), &db).await;
        server::migrate(&settings_for(&app.stream, &app.prefix, &db))
            .await
            .unwrap();
        app
    }

    /// Seals now, as the sealer does (growing the tree in this app's database first);
    /// the position sealed to.
    pub async fn seal(&self) -> Option<u64> {
        let mut db = chronicle_testkit::connect(&self.database_url).await;
        chronicle_replay::sealer::seal_now(&self.state.log, &mut db, &seal_key())
            .await
            .unwrap()
    }

    /// Runs every projection of this app's stream in this process.
    pub async fn start_projectors(&mut self) {
        let settings = settings_for(&self.stream, &self.prefix, &self.database_url);
        server::migrate(&settings).await.unwrap();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let log = self.state.log.clone();
        tokio::spawn(async move {
            let all = server::select_projections(&[]).unwrap();
            server::run_projectors(&settings, log, all, stopped).await
        });
        self.stop = Some(stop);
    }

    /// Another process (same stream and database), as a second API instance would be.
    pub async fn peer(&self) -> App {
        App::start_on(&self.stream, &self.prefix, &self.database_url).await
    }

    async fn start_on(stream: &str, prefix: &str, database_url: &str) -> App {
        App::start_with(settings_for(stream, prefix, database_url)).await
    }

    /// An application with these settings.
    pub async fn start_with(settings: Settings) -> App {
        let (stream, prefix) = (settings.stream.clone(), settings.subject_prefix.clone());
        let database_url = settings.database_url.clone().unwrap_or_default();
        let state = server::connect(&settings).await.unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(server::serve(
            state.clone(),
            chronicle_api::http::ServeRole::All,
            listener,
            std::future::pending(),
        ));
        let admin = server::issue_token(&state, "root", Role::Admin, None)
            .await
            .unwrap();
        App {
            database_url,
            stop: None,
            base: format!("http://{addr}"),
            state,
            admin,
            http: reqwest::Client::new(),
            stream,
            prefix,
        }
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let r = request.send().await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        self.send(
            self.http
                .post(format!("{}{path}", self.base))
                .bearer_auth(token)
                .json(&body),
        )
        .await
    }

    /// `GET` as `token`, waiting for the read models to reach `min_position` if given.
    pub async fn get(&self, path: &str, token: &str, min_position: Option<u64>) -> Answer {
        let mut r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(p) = min_position {
            r = r.header("X-Chronicle-Min-Position", p.to_string());
        }
        self.send(r).await
    }

    pub fn request(&self, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
    }

    /// A token for `user` with `role`, issued over HTTP by the admin.
    pub async fn token(&self, user: &str, role: &str) -> (String, String) {
        let a = self
            .post(
                &format!("/v1/commands/users/{user}/tokens"),
                &self.admin,
                serde_json::json!({ "role": role }),
            )
            .await;
        assert_eq!(a.status, 201, "{:?}", a.body);
        (
            a.body["token"].as_str().unwrap().to_owned(),
            a.body["jti"].as_str().unwrap().to_owned(),
        )
    }

    /// How many events the log holds.
    pub async fn log_len(&self) -> u64 {
        use chronicle_events::EventLog;
        self.state.log.last_position().await.unwrap()
    }
}

/// Asserts a problem+json answer with `code`.
pub fn assert_problem(a: &Answer, status: u16, code: &str) {
    assert_eq!(a.status.as_u16(), status, "{}", a.body);
    assert_eq!(a.body["code"], code, "{}", a.body);
    assert_eq!(
        a.headers["content-type"], "application/problem+json",
        "{}",
        a.body
    );
    assert!(a.body["request_id"].as_str().is_some_and(|s| !s.is_empty()));
}
