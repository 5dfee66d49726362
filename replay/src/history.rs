//! Reading history: the log with the auditor's filters, and one stream's state as of any
//! time or position, folded with the deciders' own `evolve`.

use chronicle_commands::Decider;
use chronicle_commands::agent::AgentDecider;
use chronicle_commands::approval::ApprovalDecider;
use chronicle_commands::chart::ChartDecider;
use chronicle_commands::entry::EntryDecider;
use chronicle_commands::governance::BypassDecider;
use chronicle_commands::invoice::InvoiceDecider;
use chronicle_commands::job::JobDecider;
use chronicle_commands::user::UserDecider;
use chronicle_events::domain::{DomainEvent, Event, SealEvent};
use chronicle_events::{
    Domain, EventLog, EventStream, JetStreamLog, LogError, RecordedEvent, StreamId,
};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;
use serde_json::{Value, json};

/// Which events to read.
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    /// A stream (`job.42`) or every stream of a domain (`job.*`).
    pub stream: Option<String>,
    pub event_type: Option<String>,
    pub from_position: Option<u64>,
    pub to_position: Option<u64>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// The actor's id (a user, an agent, `system`): what did this one do.
    pub actor: Option<String>,
    /// One command's events.
    pub command_id: Option<uuid::Uuid>,
    /// Everything one request caused.
    pub correlation_id: Option<uuid::Uuid>,
}

impl HistoryFilter {
    /// Checks the filter; answers what is wrong with which field.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if let Some(s) = &self.stream {
            let ok = match s.split_once('.') {
                Some((d, "*")) => d.parse::<Domain>().is_ok(),
                _ => s.parse::<StreamId>().is_ok(),
            };
            if !ok {
                return Err((
                    "stream",
                    "stream must be `<domain>.<id>` or `<domain>.*`".into(),
                ));
            }
        }
        if let Some(t) = &self.event_type
            && !Event::all_types().any(|(_, name)| name == t)
        {
            return Err((
                "type",
                format!("no event type `{}`", t.chars().take(64).collect::<String>()),
            ));
        }
        if let Some(a) = &self.actor
            && !chronicle_events::stream_id::valid_id(a)
        {
            return Err((
                "actor",
                "actor must be an actor's id: 1 to 128 of A-Z, a-z, 0-9, '-', '_', ':', '@'".into(),
            ));
        }
        if let (Some(f), Some(t)) = (self.from_position, self.to_position)
            && f > t
        {
            return Err(("from_position", "from_position is after to_position".into()));
        }
        if let (Some(s), Some(u)) = (self.since, self.until)
            && s > u
        {
            return Err(("since", "since is after until".into()));
        }
        Ok(())
    }

    fn keeps(&self, e: &RecordedEvent) -> bool {
        self.event_type
            .as_ref()
            .is_none_or(|t| &e.envelope.event_type == t)
            && self.since.is_none_or(|s| e.envelope.occurred_at >= s)
            && self.until.is_none_or(|u| e.envelope.occurred_at <= u)
            && self
                .actor
                .as_ref()
                .is_none_or(|a| &e.envelope.actor.id == a)
            && self.command_id.is_none_or(|c| e.envelope.command_id == c)
            && self
                .correlation_id
                .is_none_or(|c| e.envelope.correlation_id == c)
    }
}

/// The events matching `filter`, in log order, streamed (constant memory).
pub async fn history(log: &JetStreamLog, filter: HistoryFilter) -> Result<EventStream, LogError> {
    let from = filter.from_position.unwrap_or(1);
    let to = filter.to_position.unwrap_or(u64::MAX);
    let events = chronicle_events::events_only(
        log.read_from(from, filter.stream.as_deref()).await?,
        "history",
    );
    Ok(events
        .take_while(move |e| {
            let go_on = e.as_ref().map_or(true, |e| e.position <= to);
            futures::future::ready(go_on)
        })
        .filter(move |e| futures::future::ready(e.as_ref().map_or(true, |e| filter.keeps(e))))
        .boxed())
}

/// One event as an auditor reads it: the envelope with its position and version, as JSON
/// text (written straight from the envelope, no intermediate `Value`).
pub fn record_json(e: &RecordedEvent) -> String {
    use std::fmt::Write as _;
    let mut text = serde_json::to_string(&e.envelope).unwrap_or_default();
    if !text.starts_with('{') || !text.ends_with('}') {
        text = "{}".into();
    }
    // Reopen the object and close it after two more fields.
    text.pop();
    if text.len() > 1 {
        text.push(',');
    }
    let _ = write!(
        text,
        "\"position\":{},\"version\":{}}}",
        e.position, e.version
    );
    text
}

/// Up to which point to fold.
#[derive(Debug, Clone, Copy)]
pub enum AsOf {
    Now,
    Time(DateTime<Utc>),
    Position(u64),
}

/// A stream's state at a point.
#[derive(Debug, Clone, Serialize)]
pub struct StateAt {
    pub stream: StreamId,
    /// Events folded, and the position of the last one (0 when none).
    pub version: u64,
    pub position: u64,
    pub exists: bool,
    pub state: Value,
}

fn fold<D: Decider>(events: &[Event]) -> Value
where
    D::State: Serialize,
{
    let state = events
        .iter()
        .filter_map(D::Event::from_event)
        .fold(D::initial_state(), |s, e| D::evolve(s, e));
    serde_json::to_value(state).unwrap_or(Value::Null)
}

/// Folds `stream` up to `as_of` with its decider's `evolve`.
pub async fn state_at(
    log: &JetStreamLog,
    stream: &StreamId,
    as_of: AsOf,
) -> Result<StateAt, LogError> {
    let all = log.read_stream(stream, 1).await?;
    let upto: Vec<&RecordedEvent> = all
        .iter()
        .take_while(|e| match as_of {
            AsOf::Now => true,
            AsOf::Time(t) => e.envelope.occurred_at <= t,
            AsOf::Position(p) => e.position <= p,
        })
        .collect();
    let mut events = Vec::with_capacity(upto.len());
    for e in &upto {
        events.push(e.decode().map_err(|d| LogError::Corrupt {
            position: e.position,
            message: d.to_string(),
        })?);
    }
    let state = match stream.domain() {
        Domain::User => fold::<UserDecider>(&events),
        Domain::Job => fold::<JobDecider>(&events),
        Domain::Approval => fold::<ApprovalDecider>(&events),
        Domain::Chart => fold::<ChartDecider>(&events),
        Domain::Entry => fold::<EntryDecider>(&events),
        Domain::Agent => fold::<AgentDecider>(&events),
        Domain::Invoice => fold::<InvoiceDecider>(&events),
        Domain::Governance => fold::<BypassDecider>(&events),
        Domain::Seal => {
            let seals: Vec<_> = events
                .iter()
                .filter_map(|e| match e {
                    Event::Seal(SealEvent::SealRecorded(s)) => Some(s),
                    _ => None,
                })
                .collect();
            json!({ "seals": seals.len(), "sealed_to": seals.last().map(|s| s.to_position) })
        }
    };
    Ok(StateAt {
        stream: stream.clone(),
        version: upto.last().map_or(0, |e| e.version),
        position: upto.last().map_or(0, |e| e.position),
        exists: !upto.is_empty(),
        state,
    })
}
