//! Tokens and who is calling: JWTs signed with `CHRONICLE_SIGNING_KEY` (HS256 only —
//! `alg: none` and every other algorithm are refused — with the configured issuer and
//! audience), the set of revoked token ids kept by each process, the middleware that
//! verifies a request's bearer once, and the `Caller` extractor every `/v1` route takes.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::object_store::{self, ObjectStore};
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use chronicle_commands::permissions::{self, Principal, Read};
use chronicle_events::domain::user::{Role, TokenIssued};
use chronicle_events::domain::{Event, UserEvent};
use chronicle_events::{EventLog, JetStreamLog, Keyring, LogError, RecordedEvent, Stored};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{ApiError, Code};
use crate::state::AppState;

/// The claims of a Chronicle token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub role: Role,
    /// Space-separated scopes, as OAuth writes them.
    pub scope: String,
    pub jti: Uuid,
    pub iat: i64,
    pub exp: i64,
}

impl Claims {
    pub fn principal(&self) -> Principal {
        Principal::new(
            self.sub.clone(),
            self.role,
            self.scope.split_whitespace().map(str::to_owned).collect(),
        )
    }
}

/// Signs and checks tokens with one symmetric key.
pub struct TokenSigner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
}

impl TokenSigner {
    pub fn new(key: &[u8; 32], issuer: &str, audience: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "sub", "iat", "iss", "aud"]);
        TokenSigner {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        }
    }

    /// The claims of an issued-token event.
    pub fn claims(&self, user_id: &str, issued: &TokenIssued) -> Claims {
        Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user_id.to_owned(),
            role: issued.role,
            scope: issued.scopes.join(" "),
            jti: issued.jti,
            iat: issued.issued_at.timestamp(),
            exp: issued.expires_at.timestamp(),
        }
    }

    /// The token of an issued-token event: the same event always gives the same token.
    pub fn mint(&self, user_id: &str, issued: &TokenIssued) -> Result<String, ApiError> {
        self.sign(&self.claims(user_id, issued))
    }

    /// Signs claims (HS256 is deterministic: the same claims give the same token).
    pub fn sign(&self, claims: &Claims) -> Result<String, ApiError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding).map_err(|e| {
            tracing::error!(error = %e, "cannot sign a token");
            ApiError::new(Code::Internal, "the token could not be signed")
        })
    }

    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => Ok(data.claims),
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => {
                Err(ApiError::new(Code::TokenExpired, "the token has expired"))
            }
            Err(_) => Err(ApiError::new(
                Code::Unauthenticated,
                "the bearer token is not valid",
            )),
        }
    }
}

/// How long a revocation without a recorded expiry is kept: a token lives at most this
/// long, so the token it revoked has expired by then.
const UNKNOWN_EXPIRY: chrono::TimeDelta =
    chrono::TimeDelta::seconds(chronicle_commands::user::MAX_TTL_SECONDS);
/// How often the revoked set forgets expired tokens and a snapshot may be written.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// A snapshot is written when this many user events were applied since the last, or when
/// any were and [`SNAPSHOT_EVERY`] passed.
const SNAPSHOT_AFTER_EVENTS: u64 = 10_000;
const SNAPSHOT_EVERY: Duration = Duration::from_secs(300);
const SNAPSHOT_OBJECT: &str = "revocations";
const SNAPSHOT_CONTEXT: &str = "chronicle-revocations/1";
const SNAPSHOT_MAGIC: &[u8; 8] = b"CHRREV1\n";

/// Revoked token ids with the time their token expires, fed from the log. The process that
/// takes a revoke adds it at once; every other follows the log and sees it within moments.
/// A revocation is forgotten once its token has expired (an expired token is refused
/// anyway), so the set holds only what still matters.
#[derive(Default)]
pub struct Revocations {
    revoked: RwLock<HashMap<Uuid, DateTime<Utc>>>,
    /// Bumped at every revocation: what live subscriptions wait on to end at once.
    changes: tokio::sync::watch::Sender<u64>,
    /// The log position the set is complete up to.
    position: std::sync::atomic::AtomicU64,
    /// Where start-up began reading the log (1 without a snapshot).
    started_from: std::sync::atomic::AtomicU64,
}

impl Revocations {
    pub fn is_revoked(&self, jti: &Uuid) -> bool {
        self.revoked
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(jti)
    }

    /// Records revocations of tokens that expire at `until`.
    pub fn revoke(&self, jtis: impl IntoIterator<Item = Uuid>, until: DateTime<Utc>) {
        {
            let mut set = self.revoked.write().unwrap_or_else(|p| p.into_inner());
            for jti in jtis {
                let e = set.entry(jti).or_insert(until);
                *e = (*e).max(until);
            }
        }
        self.changes.send_modify(|n| *n += 1);
    }

    /// Told of every revocation (then ask [`Revocations::is_revoked`]).
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn len(&self) -> usize {
        self.revoked.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets revocations of tokens expired before `now`.
    pub fn sweep(&self, now: DateTime<Utc>) {
        self.revoked
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, until| *until > now);
    }

    /// The effect of one of this process's own appends (any command, an escalated one run
    /// by an approval included).
    pub fn apply_event(&self, event: &Event, occurred_at: DateTime<Utc>) {
        match event {
            Event::User(UserEvent::TokenRevoked(r)) => self.revoke(
                [r.jti],
                r.expires_at.unwrap_or(occurred_at + UNKNOWN_EXPIRY),
            ),
            Event::User(UserEvent::AllTokensRevoked(r)) => self.revoke(
                r.jtis.iter().copied(),
                r.until.unwrap_or(occurred_at + UNKNOWN_EXPIRY),
            ),
            _ => {}
        }
    }

    fn apply(&self, e: &RecordedEvent) {
        match e.decode() {
            Ok(event) => self.apply_event(&event, e.envelope.occurred_at),
            Err(err) => tracing::error!(
                position = e.position,
                error = %err,
                "a user event does not decode; revocations step past it"
            ),
        }
    }

    fn applied_through(&self, position: u64) {
        self.position
            .fetch_max(position, std::sync::atomic::Ordering::Relaxed);
    }

    /// Where start-up began reading the log: right after the snapshot it loaded, or 1.
    pub fn started_from(&self) -> u64 {
        self.started_from.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The log position the set is complete up to.
    pub fn position(&self) -> u64 {
        self.position.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The set as bytes, tagged with the event key: position, then (jti, expiry) pairs.
    fn encode(&self, keyring: &Keyring) -> Vec<u8> {
        let set = self.revoked.read().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::with_capacity(24 + set.len() * 24 + 80);
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&self.position().to_be_bytes());
        out.extend_from_slice(&(set.len() as u64).to_be_bytes());
        for (jti, until) in set.iter() {
            out.extend_from_slice(jti.as_bytes());
            out.extend_from_slice(&until.timestamp().to_be_bytes());
        }
        drop(set);
        let tag = keyring.tag(SNAPSHOT_CONTEXT, &out);
        out.extend_from_slice(tag.as_bytes());
        out
    }

    /// A set from [`Revocations::encode`]'s bytes; `None` when they are not a snapshot
    /// this deployment's event keys tagged (damaged, or put there by someone else).
    fn decode(bytes: &[u8], keyring: &Keyring) -> Option<Revocations> {
        if bytes.len() < 24 || &bytes[..8] != SNAPSHOT_MAGIC {
            return None;
        }
        let count = u64::from_be_bytes(bytes[16..24].try_into().ok()?) as usize;
        let body_end = 24usize.checked_add(count.checked_mul(24)?)?;
        let (body, tag) = (bytes.get(..body_end)?, bytes.get(body_end..)?);
        if !keyring.verify_tag(SNAPSHOT_CONTEXT, body, std::str::from_utf8(tag).ok()?) {
            return None;
        }
        let this = Revocations::default();
        this.applied_through(u64::from_be_bytes(bytes[8..16].try_into().ok()?));
        {
            let mut set = this.revoked.write().unwrap_or_else(|p| p.into_inner());
            for entry in body[24..].chunks_exact(24) {
                let jti = Uuid::from_slice(&entry[..16]).ok()?;
                let until = i64::from_be_bytes(entry[16..].try_into().ok()?);
                set.insert(jti, DateTime::from_timestamp(until, 0)?);
            }
        }
        Some(this)
    }

    /// Reads the revoked tokens — from the last snapshot, then the user events after it —
    /// and follows the log in the background. Returns once caught up, so a process never
    /// serves before it knows what is revoked. Start-up costs the revocations that still
    /// matter plus the user events since the last snapshot, not the history of tokens.
    /// Messages on `user.*` subjects that are not events are stepped past, so nobody can
    /// stop revocation by publishing one.
    pub async fn start(log: JetStreamLog) -> Result<Arc<Revocations>, LogError> {
        let keyring = log.config().keyring.clone();
        let store = snapshot_store(&log).await;
        let this = match &store {
            Some(store) => load_snapshot(store, &keyring).await,
            None => None,
        }
        .unwrap_or_default();
        this.sweep(Utc::now());
        let this = Arc::new(this);
        let mut next = this.position() + 1;
        this.started_from
            .store(next, std::sync::atomic::Ordering::Relaxed);
        let mut history = log.read_from(next, Some("user.*")).await?;
        let mut read = 0u64;
        while let Some(item) = history.next().await {
            let item = item?;
            next = item.position() + 1;
            read += 1;
            match item {
                Stored::Event(e) => this.apply(&e),
                Stored::Foreign(f) => f.record("revocations"),
            }
        }
        this.applied_through(next - 1);
        // A long read at start-up is written down at once, so the next process to start
        // does not read it again.
        if read >= SNAPSHOT_AFTER_EVENTS
            && let Some(store) = store.clone()
        {
            let (set, keyring) = (this.clone(), keyring.clone());
            tokio::spawn(async move {
                if let Err(e) = save_snapshot(&store, &set, &keyring).await {
                    tracing::warn!(error = %e, "cannot write the revocation snapshot");
                }
            });
        }
        let follower = this.clone();
        tokio::spawn(async move {
            let mut since_snapshot = 0u64;
            let mut last_snapshot = tokio::time::Instant::now();
            let mut sweep = tokio::time::interval(SWEEP_EVERY);
            sweep.tick().await;
            loop {
                let mut live = match log.follow(next, &["user.*"]).await {
                    Ok(live) => live,
                    Err(err) => {
                        tracing::warn!(error = %err, "revocation feed cannot start");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                };
                loop {
                    tokio::select! {
                        item = live.next() => match item {
                            Some(Ok(item)) => {
                                next = item.position() + 1;
                                match item {
                                    Stored::Event(e) => follower.apply(&e),
                                    Stored::Foreign(f) => f.record("revocations"),
                                }
                                follower.applied_through(next - 1);
                                since_snapshot += 1;
                            }
                            Some(Err(err)) => {
                                tracing::warn!(error = %err, "revocation feed interrupted");
                                break;
                            }
                            None => break,
                        },
                        _ = sweep.tick() => {
                            follower.sweep(Utc::now());
                            let due = since_snapshot >= SNAPSHOT_AFTER_EVENTS
                                || (since_snapshot > 0 && last_snapshot.elapsed() >= SNAPSHOT_EVERY);
                            if due && let Some(store) = &store {
                                match save_snapshot(store, &follower, &keyring).await {
                                    Ok(()) => {
                                        since_snapshot = 0;
                                        last_snapshot = tokio::time::Instant::now();
                                    }
                                    Err(e) => tracing::warn!(error = %e, "cannot write the revocation snapshot"),
                                }
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        Ok(this)
    }

    /// Writes a snapshot now (start-up after it reads only the user events that follow).
    pub async fn snapshot(&self, log: &JetStreamLog) -> Result<(), String> {
        let store = snapshot_store(log)
            .await
            .ok_or("the snapshot bucket cannot be opened")?;
        save_snapshot(&store, self, &log.config().keyring).await
    }
}

/// The object store bucket of revocation snapshots, `<stream>_REVOCATIONS`, created on
/// first use. `None` when it cannot be had (start-up then reads the log from its start).
async fn snapshot_store(log: &JetStreamLog) -> Option<ObjectStore> {
    let bucket = format!("{}_REVOCATIONS", log.config().stream_name);
    let js = log.jetstream();
    if let Ok(store) = js.get_object_store(&bucket).await {
        return Some(store);
    }
    match js
        .create_object_store(object_store::Config {
            bucket: bucket.clone(),
            description: Some("Chronicle: snapshots of the revoked token ids".into()),
            num_replicas: log.config().replicas,
            storage: async_nats::jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
    {
        Ok(store) => Some(store),
        Err(e) => {
            tracing::warn!(error = %e, bucket, "no revocation snapshots");
            None
        }
    }
}

async fn load_snapshot(store: &ObjectStore, keyring: &Keyring) -> Option<Revocations> {
    use tokio::io::AsyncReadExt;
    let mut object = store.get(SNAPSHOT_OBJECT).await.ok()?;
    let mut bytes = Vec::new();
    object.read_to_end(&mut bytes).await.ok()?;
    let decoded = Revocations::decode(&bytes, keyring);
    if decoded.is_none() {
        tracing::warn!("the revocation snapshot is not this deployment's; reading the log instead");
        metrics::counter!("chronicle_foreign_messages_total", "reader" => "revocation_snapshot")
            .increment(1);
    }
    decoded
}

async fn save_snapshot(
    store: &ObjectStore,
    set: &Revocations,
    keyring: &Keyring,
) -> Result<(), String> {
    let bytes = set.encode(keyring);
    store
        .put(SNAPSHOT_OBJECT, &mut bytes.as_slice())
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// What the authentication middleware found in a request's `Authorization` header.
#[derive(Debug, Clone)]
pub enum Bearer {
    /// No header.
    Absent,
    /// A token this deployment signed, unexpired (revocation is checked by [`Caller`]).
    Verified(Arc<Claims>),
    /// A header that is not a valid token: why.
    Invalid(ApiError),
}

/// The subprotocol a browser's WebSocket offers to carry its token (a browser cannot set
/// `Authorization` on a WebSocket): `chronicle.bearer.<token>`, on an upgrade request.
pub fn bearer_subprotocol(headers: &axum::http::HeaderMap) -> Option<String> {
    let upgrade = headers
        .get(axum::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !upgrade {
        return None;
    }
    headers
        .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find(|p| p.starts_with(BEARER_SUBPROTOCOL))
        .map(str::to_owned)
}

const BEARER_SUBPROTOCOL: &str = "chronicle.bearer.";

/// Verifies the bearer token once per request, before the rate limit (which counts a
/// verified token by its id, anything else by the client's address) and the handlers.
pub async fn authenticate(
    axum::extract::State(signer): axum::extract::State<Arc<TokenSigner>>,
    mut req: Request,
    next: Next,
) -> Response {
    let bearer = match req.headers().get(axum::http::header::AUTHORIZATION) {
        None => match bearer_subprotocol(req.headers()) {
            Some(p) => match signer.verify(&p[BEARER_SUBPROTOCOL.len()..]) {
                Ok(claims) => Bearer::Verified(Arc::new(claims)),
                Err(e) => Bearer::Invalid(e),
            },
            None => Bearer::Absent,
        },
        Some(header) => match header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
        {
            None => Bearer::Invalid(ApiError::new(
                Code::Unauthenticated,
                "use `Authorization: Bearer <token>`",
            )),
            Some(token) => match signer.verify(token) {
                Ok(claims) => Bearer::Verified(Arc::new(claims)),
                Err(e) => Bearer::Invalid(e),
            },
        },
    };
    req.extensions_mut().insert(bearer);
    next.run(req).await
}

/// The authenticated caller of a `/v1` route.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub jti: Uuid,
    pub claims: Arc<Claims>,
}

impl Caller {
    pub fn user_id(&self) -> &str {
        &self.principal.user_id
    }

    pub fn role(&self) -> Role {
        self.principal.role
    }

    /// Whether the caller may read `what` (role and scopes).
    pub fn may_read(&self, what: Read) -> Result<(), ApiError> {
        permissions::may_read(&self.principal, what)
            .map_err(|why| ApiError::new(Code::Forbidden, why))
    }
}

impl Caller {
    /// The caller of a request whose bearer the middleware verified: refused when it is
    /// missing, invalid or revoked.
    pub fn from_bearer(
        bearer: Option<&Bearer>,
        revocations: &Revocations,
    ) -> Result<Caller, ApiError> {
        let claims = match bearer {
            Some(Bearer::Verified(claims)) => claims.clone(),
            Some(Bearer::Invalid(e)) => return Err(e.clone()),
            Some(Bearer::Absent) | None => {
                return Err(ApiError::new(
                    Code::Unauthenticated,
                    "a bearer token is required",
                ));
            }
        };
        if revocations.is_revoked(&claims.jti) {
            return Err(ApiError::new(
                Code::TokenRevoked,
                "the token has been revoked",
            ));
        }
        Ok(Caller {
            principal: claims.principal(),
            jti: claims.jti,
            claims,
        })
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Caller::from_bearer(parts.extensions.get::<Bearer>(), &state.revocations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration as ChronoDuration, Utc};

    const KEY: [u8; 32] = [
        7, 21, 3, 99, 42, 250, 17, 8, 61, 200, 13, 77, 5, 190, 33, 2, 144, 9, 71, 18, 222, 6, 55,
        120, 81, 240, 12, 66, 4, 170, 39, 101,
    ];

    fn issued(ttl: i64) -> TokenIssued {
        let now = Utc::now();
        TokenIssued {
            jti: Uuid::now_v7(),
            role: Role::Writer,
            scopes: vec!["jobs:write".into(), "jobs:read".into()],
            issued_at: now,
            expires_at: now + ChronoDuration::seconds(ttl),
        }
    }

    fn signer() -> TokenSigner {
        TokenSigner::new(&KEY, "chronicle", "chronicle")
    }

    #[test]
    fn a_minted_token_verifies_with_its_claims() {
        let signer = signer();
        let t = issued(60);
        let token = signer.mint("alice", &t).unwrap();
        assert_eq!(
            token,
            signer.mint("alice", &t).unwrap(),
            "minting is deterministic"
        );
        let claims = signer.verify(&token).unwrap();
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.jti, t.jti);
        assert_eq!(claims.scope, "jobs:write jobs:read");
        assert_eq!(
            (claims.iss.as_str(), claims.aud.as_str()),
            ("chronicle", "chronicle")
        );
    }

    #[test]
    fn foreign_keys_none_other_issuers_and_expired_tokens_are_refused() {
        let signer = signer();
        let mut other_key = KEY;
        other_key[0] ^= 1;
        let other = TokenSigner::new(&other_key, "chronicle", "chronicle");
        let token = other.mint("alice", &issued(60)).unwrap();
        assert_eq!(
            signer.verify(&token).unwrap_err().code,
            Code::Unauthenticated
        );
        // Same key, another issuer or audience.
        for (iss, aud) in [("elsewhere", "chronicle"), ("chronicle", "elsewhere")] {
            let token = TokenSigner::new(&KEY, iss, aud)
                .mint("alice", &issued(60))
                .unwrap();
            assert_eq!(
                signer.verify(&token).unwrap_err().code,
                Code::Unauthenticated,
                "{iss} {aud}"
            );
        }

        // alg: none, with the same claims.
        let claims = signer
            .verify(&signer.mint("alice", &issued(60)).unwrap())
            .unwrap();
        let b64 = |v: &serde_json::Value| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let none = format!(
            "{}.{}.",
            b64(&serde_json::json!({"alg": "none", "typ": "JWT"})),
            b64(&serde_json::to_value(&claims).unwrap())
        );
        assert_eq!(
            signer.verify(&none).unwrap_err().code,
            Code::Unauthenticated
        );

        let expired = signer.mint("alice", &issued(-5)).unwrap();
        assert_eq!(
            signer.verify(&expired).unwrap_err().code,
            Code::TokenExpired
        );
        assert_eq!(
            signer.verify("garbage").unwrap_err().code,
            Code::Unauthenticated
        );
    }

    #[test]
    fn revocations_are_forgotten_once_their_token_has_expired() {
        let r = Revocations::default();
        let now = Utc::now();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        r.revoke([a], now + ChronoDuration::seconds(10));
        r.revoke([b], now + ChronoDuration::seconds(1000));
        r.sweep(now + ChronoDuration::seconds(11));
        assert!(!r.is_revoked(&a));
        assert!(r.is_revoked(&b));
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn a_snapshot_round_trips_and_a_changed_one_is_refused() {
        let ring = Keyring::new(&KEY, &[]);
        let r = Revocations::default();
        let until = DateTime::from_timestamp(Utc::now().timestamp() + 100, 0).unwrap();
        let jtis: Vec<Uuid> = (0..50).map(|_| Uuid::now_v7()).collect();
        r.revoke(jtis.clone(), until);
        r.applied_through(1234);
        let bytes = r.encode(&ring);
        let back = Revocations::decode(&bytes, &ring).unwrap();
        assert_eq!(back.position(), 1234);
        assert!(jtis.iter().all(|j| back.is_revoked(j)));
        // Any byte changed (a revocation dropped, the position moved) is refused.
        for i in [10, 30, 60] {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(Revocations::decode(&bad, &ring).is_none(), "byte {i}");
        }
        let mut other = KEY;
        other[5] ^= 1;
        assert!(Revocations::decode(&bytes, &Keyring::new(&other, &[])).is_none());
        assert!(Revocations::decode(b"junk", &ring).is_none());
    }
}
