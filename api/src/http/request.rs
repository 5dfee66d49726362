//! A command request, from the wire to the handler and back: the caller, the strictly
//! parsed body, `If-Match`, `Idempotency-Key`, the permission check (before anything else,
//! a replayed answer included), and the answer as JSON with its `ETag`.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chronicle_commands::{Answer, Command, Ctx, EscalatedResult, Executed};
use chronicle_events::{Actor, AppendedEvent, StreamId};
use chrono::Utc;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, Code};
use crate::idempotency::{Claim, Idempotency, StoredAnswer};
use crate::state::AppState;

/// What every route answers.
pub type Res = Result<Response, ApiError>;

/// A command's request: who asks, its headers and path, and its body, parsed into `B`
/// (and kept as sent, for `Idempotency-Key`).
pub struct CommandRequest<B> {
    state: AppState,
    caller: Caller,
    headers: HeaderMap,
    uri: Uri,
    raw: Bytes,
    body: B,
}

impl<B: DeserializeOwned + Send> FromRequest<AppState> for CommandRequest<B> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let (mut parts, body) = req.into_parts();
        let caller = Caller::from_request_parts(&mut parts, state).await?;
        let (headers, uri) = (parts.headers.clone(), parts.uri.clone());
        let raw = Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        Code::PayloadTooLarge,
                        format!("the body exceeds {} bytes", super::BODY_LIMIT),
                    )
                } else {
                    ApiError::new(Code::MalformedRequest, "the body could not be read")
                }
            })?;
        let body = parse(&headers, &raw)?;
        Ok(CommandRequest {
            state: state.clone(),
            caller,
            headers,
            uri,
            raw,
            body,
        })
    }
}

impl<B> CommandRequest<B> {
    /// Runs the command `build` makes of the body (and of the command id, from which ids
    /// the body leaves out are derived).
    pub async fn run(self, build: impl FnOnce(B, Uuid) -> Command) -> Res {
        let CommandRequest {
            state,
            caller,
            headers,
            uri,
            raw,
            body,
        } = self;
        let if_match = if_match(&headers)?;
        let key = headers
            .get("idempotency-key")
            .map(|v| {
                v.to_str().map_err(|_| {
                    ApiError::new(Code::MalformedRequest, "Idempotency-Key must be ASCII")
                })
            })
            .transpose()?;
        if let Some(key) = key {
            Idempotency::check_key(key)?;
        }
        let command_id = match key {
            None => Uuid::now_v7(),
            Some(key) => Idempotency::command_id(caller.user_id(), key),
        };
        let command = build(body, command_id);
        chronicle_commands::permissions::may_run(&caller.principal, &command)
            .map_err(|why| ApiError::new(Code::Forbidden, why))?;
        let kv_key = match key {
            None => None,
            Some(key) => match state
                .idempotency
                .claim(caller.user_id(), key, "POST", uri.path(), &raw)
                .await?
            {
                Claim::Replay(answer) => return into_response(&state, answer),
                Claim::Run { kv_key } => Some(kv_key),
            },
        };
        let result = execute(&state, &caller, &command, command_id, if_match, &headers).await;
        if let Some(kv_key) = kv_key {
            // A success is recorded and replayed for 24 h. An error releases the key: it
            // changed nothing, and the same request may succeed once the caller has fixed
            // what was wrong (or the log is back).
            state
                .idempotency
                .finish(&kv_key, result.as_ref().ok().cloned())
                .await;
        }
        into_response(&state, result?)
    }
}

/// Parses a JSON body (an empty body reads as `{}`). Bad JSON, wrong types and unknown
/// fields are `400 MALFORMED_REQUEST` with serde's description of what is wrong.
pub fn parse<T: DeserializeOwned>(headers: &HeaderMap, body: &Bytes) -> Result<T, ApiError> {
    let bytes: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                let ct = ct.split(';').next().unwrap_or("").trim();
                ct.eq_ignore_ascii_case("application/json") || ct.ends_with("+json")
            });
        if !json {
            return Err(ApiError::new(
                Code::MalformedRequest,
                "the body must be JSON with `Content-Type: application/json`",
            ));
        }
        body
    };
    let malformed = |e: serde_json::Error| {
        let mut detail = format!("the body does not fit this command: {e}");
        detail.truncate(300);
        ApiError::new(Code::MalformedRequest, detail)
    };
    // A NUL character cannot be stored by the read models (Postgres text and jsonb refuse
    // it): accepted into the log, it would stop a projection for good. JSON can only carry
    // one escaped, so the bytes are searched rather than parsed twice.
    if escapes_nul(bytes) {
        return Err(ApiError::new(
            Code::MalformedRequest,
            "strings may not contain the NUL character (\\u0000)",
        ));
    }
    serde_json::from_slice(bytes).map_err(malformed)
}

/// Whether JSON text holds the escape `\u0000`. Raw control characters are not valid JSON
/// (the parser refuses them), and every `\` starts an escape of the character after it,
/// so walking escape by escape finds exactly the NULs (and not a `\\` before `u0000`).
fn escapes_nul(json: &[u8]) -> bool {
    let mut i = 0;
    while let Some(at) = json[i..].iter().position(|b| *b == b'\\') {
        let escape = i + at;
        if json[escape + 1..].starts_with(b"u0000") {
            return true;
        }
        i = (escape + 2).min(json.len());
    }
    false
}

/// Ids a command creates when the body does not name them: derived from the command id,
/// so a retried request (same `Idempotency-Key`) names the same aggregate.
pub fn derived_id(command_id: Uuid, what: &str) -> String {
    Uuid::new_v5(&command_id, what.as_bytes()).to_string()
}

fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .map(|s| s.trim().trim_start_matches("W/").trim_matches('"'))
        .and_then(|s| s.parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::new(
                Code::MalformedRequest,
                "If-Match must be a version in quotes, e.g. \"3\"",
            )
        })
}

/// One appended event as an answer lists it.
#[derive(Serialize)]
struct EventRef<'a> {
    id: &'a Uuid,
    position: u64,
    stream: &'a StreamId,
    #[serde(rename = "type")]
    event_type: &'a str,
}

fn event_refs(events: &[AppendedEvent]) -> Vec<EventRef<'_>> {
    events
        .iter()
        .map(|e| EventRef {
            id: &e.id,
            position: e.position,
            stream: &e.stream,
            event_type: &e.event_type,
        })
        .collect()
}

/// What became of the command an approval carried.
#[derive(Serialize)]
#[serde(tag = "outcome", rename_all = "SCREAMING_SNAKE_CASE")]
enum EscalatedBody<'a> {
    Executed {
        command_id: &'a Uuid,
        events: Vec<EventRef<'a>>,
    },
    Rejected {
        code: String,
        detail: String,
    },
}

/// The body of an executed command's answer (members in the order they are sent).
#[derive(Serialize)]
struct ExecutedBody<'a> {
    command_id: &'a Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    escalated: Option<EscalatedBody<'a>>,
    events: Vec<EventRef<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<&'a chrono::DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jti: Option<&'a Uuid>,
    position: u64,
    stream: &'a StreamId,
    version: u64,
}

/// The body of a command held for approval.
#[derive(Serialize)]
struct EscalatedToApproval<'a> {
    approval_id: &'a str,
    command_id: &'a Uuid,
    events: Vec<EventRef<'a>>,
    position: u64,
    stream: &'a StreamId,
}

/// An answer's body, serialized once: these bytes are sent, and kept for a replay.
fn raw_body<T: Serialize>(body: &T) -> Box<RawValue> {
    // Our own plain types serialize into memory without fail.
    let json = serde_json::to_string(body).expect("answers serialize");
    RawValue::from_string(json).expect("serde_json writes valid JSON")
}

/// The answer of an executed command. An issued token is not part of what is stored (the
/// stored answer would keep a bearer credential at rest for a day): its claims are, and the
/// token is signed again from them on a replay.
fn executed_answer(state: &AppState, ex: &Executed) -> StoredAnswer {
    let issued = ex.issued.as_ref().map(|(_, issued)| issued);
    let body = ExecutedBody {
        command_id: &ex.command_id,
        escalated: ex.escalated.as_ref().map(|escalated| match escalated {
            EscalatedResult::Executed { command_id, events } => EscalatedBody::Executed {
                command_id,
                events: event_refs(events),
            },
            EscalatedResult::Rejected(r) => {
                let e = ApiError::from(r.clone());
                EscalatedBody::Rejected {
                    code: e.code.as_str(),
                    detail: e.detail,
                }
            }
        }),
        events: event_refs(&ex.events),
        expires_at: issued.map(|i| &i.expires_at),
        jti: issued.map(|i| &i.jti),
        position: ex.position,
        stream: &ex.stream,
        version: ex.version,
    };
    StoredAnswer {
        status: if ex.created { 201 } else { 200 },
        etag: Some(format!("\"{}\"", ex.version)),
        body: raw_body(&body),
        token: ex
            .issued
            .as_ref()
            .map(|(user_id, issued)| state.signer.claims(user_id, issued)),
    }
}

/// The response of an answer, fresh or replayed; an issued token is signed here.
fn into_response(state: &AppState, answer: StoredAnswer) -> Res {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let body: String = match &answer.token {
        None => Box::<str>::from(answer.body).into_string(),
        Some(claims) => {
            // Only token issues: the stored body without the token, the token added.
            let mut body: Value = serde_json::from_str(answer.body.get())
                .map_err(|e| ApiError::new(Code::Internal, format!("a stored answer: {e}")))?;
            body["token"] = json!(state.signer.sign(claims)?);
            body.to_string()
        }
    };
    let mut response = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    if let Some(etag) = answer.etag.and_then(|e| HeaderValue::from_str(&e).ok()) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Ok(response)
}

async fn execute(
    state: &AppState,
    caller: &Caller,
    command: &Command,
    command_id: Uuid,
    if_match: Option<u64>,
    headers: &HeaderMap,
) -> Result<StoredAnswer, ApiError> {
    let correlation_id = headers
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<Uuid>().ok())
        .unwrap_or(command_id);
    let ctx = Ctx {
        command_id,
        correlation_id,
        causation_id: None,
        actor: match caller.principal.agent_id() {
            Some(agent) => Actor::agent(agent),
            None => Actor::user(caller.user_id()),
        },
        principal: caller.principal.clone(),
        if_match,
        now: Utc::now(),
    };
    // A revocation this command appends (directly, or by an approval running an escalated
    // one) takes effect in this process as it is appended: see the handler's observer in
    // `server::connect`. Other processes follow the log.
    Ok(match state.handler.execute(&ctx, command).await? {
        Answer::Done(ex) => executed_answer(state, &ex),
        Answer::Escalated {
            approval_id,
            executed,
        } => StoredAnswer {
            status: 202,
            etag: None,
            body: raw_body(&EscalatedToApproval {
                approval_id: &approval_id,
                command_id: &executed.command_id,
                events: event_refs(&executed.events),
                position: executed.position,
                stream: &executed.stream,
            }),
            token: None,
        },
    })
}
