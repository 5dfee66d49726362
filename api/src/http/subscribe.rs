//! Live events (`GET /v1/subscribe` as Server-Sent Events, `GET /v1/subscribe/ws` as a
//! WebSocket): the log's events as they are appended, filtered by stream and type,
//! resumable after any position with nothing missed or repeated (see [`crate::live`]).
//!
//! Who sees what is decided before anything is sent (`403` otherwise): the role's sight of
//! each domain (`chronicle_commands::permissions::sight`), narrowed by the token's scopes;
//! an agent names each stream it follows, and only its own — its jobs, the approvals
//! carrying its escalated commands, its own agent stream.

use std::collections::HashSet;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chronicle_commands::approval::ApprovalDecider;
use chronicle_commands::job::JobDecider;
use chronicle_commands::permissions::{Sight, may_subscribe};
use chronicle_events::{Domain, EventLog, StreamId};
use futures::{Stream, StreamExt};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::{ApiError, Code};
use crate::http::schema::{EventType, Position, StreamFilter};
use crate::live::{End, Filter, Item, StreamPattern, Ticket};
use crate::state::AppState;

/// Comments (SSE) or pings (WebSocket) at least this often.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(subscribe))
        .routes(routes!(subscribe_ws))
}

/// A subscription as asked for, checked.
struct Asked {
    filter: Filter,
    from: u64,
}

/// Parses the query (`stream` and `type` may repeat) and the resume point, and decides
/// what the caller may see.
async fn ask(
    state: &AppState,
    caller: &Caller,
    query: Option<&str>,
    last_event_id: Option<&str>,
) -> Result<Asked, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|_| ApiError::new(Code::MalformedRequest, "the query string does not parse"))?;
    let mut streams = Vec::new();
    let mut types = Vec::new();
    let mut from_position = None;
    for (key, value) in pairs {
        match key.as_str() {
            "stream" => streams.push(StreamPattern::parse(&value).ok_or_else(|| {
                ApiError::bad_param("stream", "stream must be `<domain>.<id>` or `<domain>.*`")
            })?),
            "type" => {
                if !chronicle_events::Event::all_types().any(|(_, t)| t == value) {
                    return Err(ApiError::bad_param(
                        "type",
                        format!(
                            "no event type `{}`",
                            value.chars().take(64).collect::<String>()
                        ),
                    ));
                }
                types.push(value);
            }
            "from_position" => {
                from_position = Some(value.parse::<u64>().map_err(|_| {
                    ApiError::bad_param("from_position", "from_position must be a log position")
                })?)
            }
            other => {
                return Err(ApiError::bad_param(
                    other,
                    format!(
                        "`{}` is not a parameter of this route (stream, type, from_position)",
                        other.chars().take(64).collect::<String>()
                    ),
                ));
            }
        }
    }
    let last_event_id = last_event_id
        .map(|v| {
            v.trim().parse::<u64>().map_err(|_| {
                ApiError::bad_param("Last-Event-ID", "Last-Event-ID must be a log position")
            })
        })
        .transpose()?;
    let domains = allowed(state, caller, &streams).await?;
    let end = state.log.last_position().await?;
    let from = match last_event_id.or(from_position) {
        Some(p) if p > end => {
            return Err(ApiError::bad_param(
                "from_position",
                format!("position {p} is past the log's end ({end})"),
            ));
        }
        Some(p) => p,
        None => end,
    };
    Ok(Asked {
        filter: Filter {
            domains,
            streams,
            types,
        },
        from,
    })
}

/// The domains the caller may follow for these stream patterns: `403` for any it may not.
async fn allowed(
    state: &AppState,
    caller: &Caller,
    streams: &[StreamPattern],
) -> Result<HashSet<Domain>, ApiError> {
    let forbidden = |why: String| ApiError::new(Code::Forbidden, why);
    let role = caller.role().as_str();
    if streams.is_empty() {
        let mut every = HashSet::new();
        for d in Domain::ALL {
            match may_subscribe(&caller.principal, d) {
                Sight::Every => {
                    every.insert(d);
                }
                Sight::Own => {
                    return Err(forbidden(format!(
                        "the {role} role names each stream it follows (stream=...)"
                    )));
                }
                Sight::Nothing => {}
            }
        }
        if every.is_empty() {
            return Err(forbidden(format!("the {role} role may follow nothing")));
        }
        return Ok(every);
    }
    let mut domains = HashSet::new();
    for pattern in streams {
        let d = pattern.domain();
        match may_subscribe(&caller.principal, d) {
            Sight::Every => {}
            Sight::Nothing => {
                return Err(forbidden(format!(
                    "the {role} role (with its token's scopes) may not follow {d} events"
                )));
            }
            Sight::Own => {
                let StreamPattern::One(stream) = pattern else {
                    return Err(forbidden(format!(
                        "the {role} role follows only its own {d} streams, each named"
                    )));
                };
                if !owns(state, caller, stream).await? {
                    return Err(forbidden(format!("{stream} is not the caller's to follow")));
                }
            }
        }
        domains.insert(d);
    }
    Ok(domains)
}

/// Whether `stream` is the calling agent's own: its agent stream, a job submitted for it,
/// or an approval carrying one of its escalated commands.
async fn owns(state: &AppState, caller: &Caller, stream: &StreamId) -> Result<bool, ApiError> {
    let me = caller.user_id();
    Ok(match stream.domain() {
        Domain::Agent => stream.id() == me,
        Domain::Job => state
            .handler
            .load::<JobDecider>(stream, true)
            .await?
            .state
            .is_some_and(|j| j.agent_id == me),
        Domain::Approval => state
            .handler
            .load::<ApprovalDecider>(stream, true)
            .await?
            .state
            .is_some_and(|a| a.agent_id.as_deref() == Some(me)),
        _ => false,
    })
}

/// Opens a subscription: its ticket within the token's limit, then its items.
async fn open(
    state: &AppState,
    caller: &Caller,
    asked: Asked,
) -> Result<impl Stream<Item = Item> + Send + 'static, ApiError> {
    let ticket: Ticket = state.live.admit(caller.jti).await.map_err(|_| {
        ApiError::new(
            Code::RateLimited,
            "this token holds as many live subscriptions as it may; close one first",
        )
    })?;
    let expires_at = chrono::DateTime::from_timestamp(caller.claims.exp, 0).unwrap_or_default();
    Ok(state.live.subscribe(
        ticket,
        asked.filter,
        asked.from,
        state.revocations.clone(),
        caller.jti,
        expires_at,
    ))
}

/// Server-Sent Events: `id:` the position, `event:` the type, `data:` the envelope.
#[utoipa::path(
    get,
    path = "/v1/subscribe",
    tag = "live",
    summary = "Live events as Server-Sent Events, resumable after a position",
    description = "Each event: `id:` its log position, `event:` its type, `data:` the envelope as in /v1/audit/events. Resumes after `Last-Event-ID` (or `from_position`): the first event sent is the next one; without either, from the log's end. `stream` and `type` may repeat (OR within, AND across). `: keep-alive` at least every 15 s. A subscriber that falls behind gets `event: lagging` (`data:` the position it reached) and is closed; a revoked or expired token ends the stream.",
    params(
        ("stream" = inline(Option<Vec<StreamFilter>>), Query, nullable = false, explode = true),
        ("type" = inline(Option<Vec<EventType>>), Query, nullable = false, explode = true),
        ("from_position" = inline(Option<Position>), Query, nullable = false),
        ("Last-Event-ID" = inline(Option<Position>), Header, nullable = false),
    ),
    responses(
        (status = 200, description = "The stream of events", content_type = "text/event-stream", body = String),
        (status = "4XX", description = "Refused", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "LOG_UNAVAILABLE", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
async fn subscribe(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("x").to_owned());
    let asked = ask(&state, &caller, query.as_deref(), last_event_id.as_deref()).await?;
    let items = open(&state, &caller, asked).await?;
    let events = items.map(|item| {
        Ok::<_, Infallible>(match item {
            Item::Event(live) => Event::default()
                .id(live.position.to_string())
                .event(live.event_type.as_str())
                .data(&*live.json),
            Item::Lagging(at) => Event::default().event("lagging").data(at.to_string()),
            Item::Ended(why) => Event::default().comment(why.text()),
        })
    });
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response();
    // Proxies must pass each event on as it comes.
    response.headers_mut().insert(
        "x-accel-buffering",
        axum::http::HeaderValue::from_static("no"),
    );
    Ok(response)
}

/// The same over a WebSocket: one envelope a text frame.
#[utoipa::path(
    get,
    path = "/v1/subscribe/ws",
    tag = "live",
    summary = "Live events over a WebSocket, resumable after a position",
    description = "The same parameters and rules as /v1/subscribe; each text frame is one envelope (with `position` and `version`); resume with `from_position`. Authenticate with `Authorization: Bearer`, or (browsers) by offering the subprotocol `chronicle.bearer.<token>`. A subscriber that falls behind gets `{\"event\":\"lagging\",\"position\":N}` and a close frame (4000); a revoked or expired token, a close frame (4001); pings at least every 15 s.",
    params(
        ("stream" = inline(Option<Vec<StreamFilter>>), Query, nullable = false, explode = true),
        ("type" = inline(Option<Vec<EventType>>), Query, nullable = false, explode = true),
        ("from_position" = inline(Option<Position>), Query, nullable = false),
    ),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = "4XX", description = "Refused", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "LOG_UNAVAILABLE", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
async fn subscribe_ws(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|e| {
        ApiError::new(
            Code::MalformedRequest,
            format!("this route speaks WebSocket: {e}"),
        )
    })?;
    let asked = ask(&state, &caller, query.as_deref(), None).await?;
    let items = open(&state, &caller, asked).await?;
    // A browser that authenticated with a subprotocol must see it accepted.
    let offered = crate::auth::bearer_subprotocol(&headers);
    let upgrade = match offered {
        Some(p) => upgrade.protocols([p]),
        None => upgrade,
    };
    Ok(upgrade.on_upgrade(move |socket| relay(socket, items)))
}

/// Sends `items` over `socket` until either ends.
async fn relay(mut socket: WebSocket, items: impl Stream<Item = Item> + Send + 'static) {
    let mut items = std::pin::pin!(items);
    let mut ping = tokio::time::interval(KEEP_ALIVE);
    ping.tick().await;
    let close = |code: u16, reason: &str| {
        Message::Close(Some(CloseFrame {
            code,
            reason: reason.to_owned().into(),
        }))
    };
    loop {
        tokio::select! {
            item = items.next() => {
                let sent = match item {
                    Some(Item::Event(live)) => socket.send(Message::Text(live.json.to_string().into())).await,
                    Some(Item::Lagging(at)) => {
                        let note = serde_json::json!({"event": "lagging", "position": at}).to_string();
                        let _ = socket.send(Message::Text(note.into())).await;
                        let _ = socket.send(close(4000, "lagging")).await;
                        return;
                    }
                    Some(Item::Ended(why)) => {
                        let code = match why {
                            End::Revoked | End::Expired => 4001,
                            End::Stopping | End::LogUnavailable => 1001,
                        };
                        let _ = socket.send(close(code, why.text())).await;
                        return;
                    }
                    None => return,
                };
                if sent.is_err() {
                    return;
                }
            }
            incoming = socket.recv() => match incoming {
                // The client's frames carry nothing for us; a close or an error ends it.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
        }
    }
}
