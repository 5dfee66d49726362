//! The command handler: load, decide, append — with governance for agents.
//!
//! [`CommandHandler::execute`] is the command side's entry point. For each command it
//! checks who may run it ([`crate::permissions`]), plans it ([`plan`]: loads the states it
//! needs and decides with the pure deciders), for an agent evaluates governance
//! ([`governance`]), and appends every stream the command writes in one atomic append,
//! against the heads it decided on. States are cached ([`cache`]): a stale one is caught by
//! the append's expected head (the command is then decided again on what the log holds, a
//! bounded number of times), and an answer that appends nothing — "nothing to do", "no such
//! thing" — is never taken on a cached state alone.

use std::sync::Arc;

use chronicle_events::domain::user::TokenIssued;
use chronicle_events::domain::{DomainEvent, Event, UserEvent};
use chronicle_events::{
    Actor, AppendOutcome, AppendRequest, AppendedEvent, EventLog, LogError, PendingEvent,
    StreamHead, StreamId,
};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::command::Command;
use crate::permissions::{Principal, may_run};
use crate::{Decider, Rejection};

pub mod cache;
mod governance;
mod invoicing;
mod plan;
pub mod snapshot;

pub use cache::Loaded;
use cache::StateCache;
use plan::Plan;

/// How many times a command is decided again after losing a race for its stream.
const MAX_ATTEMPTS: usize = 16;

/// Who asks, and the ids that tie the command's events together.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub command_id: Uuid,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    pub actor: Actor,
    /// Who asks, with their role and scopes: what they may run is checked against it, and
    /// when they are an agent governance applies.
    pub principal: Principal,
    /// `If-Match`: the version the caller expects the aggregate at.
    pub if_match: Option<u64>,
    pub now: DateTime<Utc>,
}

impl Ctx {
    fn pending(&self, event: impl Into<Event>) -> PendingEvent {
        PendingEvent {
            event: event.into(),
            actor: self.actor.clone(),
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
        }
    }
}

/// What a command did.
#[derive(Debug, Clone)]
pub struct Executed {
    pub command_id: Uuid,
    pub stream: StreamId,
    /// The aggregate's version and the log position after the command.
    pub version: u64,
    pub position: u64,
    /// Every event the command appended (none when it changed nothing).
    pub events: Vec<AppendedEvent>,
    pub created: bool,
    /// The command had been executed before (same command id): nothing was appended now.
    pub duplicate: bool,
    /// For `IssueToken`: the token's claims, to sign.
    pub issued: Option<(String, TokenIssued)>,
    /// For an approval that carried an escalated command: what became of it.
    pub escalated: Option<EscalatedResult>,
}

#[derive(Debug, Clone)]
pub enum EscalatedResult {
    Executed {
        command_id: Uuid,
        events: Vec<AppendedEvent>,
    },
    Rejected(Rejection),
}

#[derive(Debug, Clone)]
pub enum Answer {
    Done(Executed),
    /// Governance escalated an agent's command: a human must approve `approval_id`.
    Escalated {
        approval_id: String,
        executed: Executed,
    },
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum HandlerError {
    #[error("{0}")]
    Rejected(Rejection),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    GovernanceDenied(String),
    #[error("{stream} is at version {actual}, not {expected}")]
    VersionConflict {
        stream: StreamId,
        expected: u64,
        actual: u64,
    },
    #[error(transparent)]
    Log(LogError),
}

impl From<Rejection> for HandlerError {
    fn from(r: Rejection) -> Self {
        HandlerError::Rejected(r)
    }
}

impl From<LogError> for HandlerError {
    fn from(e: LogError) -> Self {
        HandlerError::Log(e)
    }
}

/// Told of every event this handler appends, whatever command (or approval) appended it:
/// how a process applies the local effects of its own writes at once (a revocation).
pub type AppendObserver = Arc<dyn Fn(&[PendingEvent]) + Send + Sync>;

/// Executes commands against an event log.
pub struct CommandHandler {
    log: Arc<dyn EventLog>,
    cache: StateCache,
    observers: Vec<AppendObserver>,
    snapshots: Option<snapshot::Snapshots>,
}

impl CommandHandler {
    pub fn new(log: Arc<dyn EventLog>) -> Self {
        CommandHandler {
            log,
            cache: StateCache::new(cache::CAPACITY),
            observers: Vec::new(),
            snapshots: None,
        }
    }

    /// Takes a snapshot of a stream's state every `snapshots.every` events and starts
    /// uncached loads from it (see [`snapshot`]).
    pub fn with_snapshots(mut self, snapshots: snapshot::Snapshots) -> Self {
        self.snapshots = (snapshots.every > 0).then_some(snapshots);
        self
    }

    /// Calls `observer` with the events of every append this handler makes.
    pub fn observe(mut self, observer: AppendObserver) -> Self {
        self.observers.push(observer);
        self
    }

    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.log
    }

    /// The state of `stream`: from the cache when `latest` is false and it is there;
    /// otherwise brought up to the log's head (reading only what the cache lacks).
    pub async fn load<D: Decider + 'static>(
        &self,
        stream: &StreamId,
        latest: bool,
    ) -> Result<Loaded<D::State>, LogError>
    where
        D::State: Send + Sync + 'static,
    {
        let cached = self.cache.get::<D>(stream);
        if !latest && let Some(c) = cached {
            return Ok(c);
        }
        let was_cached = cached.is_some();
        let from_snapshot = match (&cached, &self.snapshots) {
            (None, Some(s)) => s.load::<D>(&*self.log, stream).await,
            _ => None,
        };
        let mut loaded = cached.or(from_snapshot).unwrap_or(Loaded {
            head: StreamHead::EMPTY,
            state: D::initial_state(),
        });
        let read = self.log.read_stream_after(stream, &loaded.head).await?;
        if read.head == loaded.head && loaded.head != StreamHead::EMPTY {
            if !was_cached {
                // From a snapshot: kept, so the next command does not read it again.
                self.cache.put::<D>(stream, &loaded);
            }
            return Ok(loaded);
        }
        for recorded in &read.events {
            let event = recorded.decode().map_err(|e| LogError::Corrupt {
                position: recorded.position,
                message: e.to_string(),
            })?;
            let e = D::Event::from_event(&event).ok_or_else(|| LogError::Corrupt {
                position: recorded.position,
                message: format!("{} is not an event of {stream}", event.event_type()),
            })?;
            loaded.state = D::evolve(loaded.state, e);
        }
        loaded.head = read.head;
        self.cache.put::<D>(stream, &loaded);
        Ok(loaded)
    }

    /// Executes `command` for the caller described by `ctx`.
    pub async fn execute(&self, ctx: &Ctx, command: &Command) -> Result<Answer, HandlerError> {
        let started = std::time::Instant::now();
        let result = self.execute_inner(ctx, command).await;
        let action = command.action().name();
        let outcome = match &result {
            Ok(Answer::Done(_)) => "ok",
            Ok(Answer::Escalated { .. }) => "escalated",
            Err(HandlerError::Rejected(_)) => "rejected",
            Err(HandlerError::Forbidden(_)) => "forbidden",
            Err(HandlerError::GovernanceDenied(_)) => "denied",
            Err(HandlerError::VersionConflict { .. }) => "conflict",
            Err(HandlerError::Log(_)) => "log_error",
        };
        metrics::counter!("chronicle_commands_total", "command" => action, "outcome" => outcome)
            .increment(1);
        metrics::histogram!("chronicle_command_duration_seconds", "command" => action)
            .record(started.elapsed().as_secs_f64());
        result
    }

    async fn execute_inner(&self, ctx: &Ctx, command: &Command) -> Result<Answer, HandlerError> {
        may_run(&ctx.principal, command).map_err(HandlerError::Forbidden)?;
        let mut conflicts = 0;
        let mut latest = false;
        loop {
            match self.attempt(ctx, command, latest).await {
                Err(HandlerError::Log(LogError::VersionConflict {
                    stream,
                    expected,
                    actual,
                })) => {
                    conflicts += 1;
                    latest = true;
                    metrics::counter!("chronicle_command_conflicts_total").increment(1);
                    if (ctx.if_match.is_some() && stream == command.stream()?)
                        || conflicts >= MAX_ATTEMPTS
                    {
                        return Err(HandlerError::VersionConflict {
                            stream,
                            expected,
                            actual,
                        });
                    }
                }
                // An answer that says "there is nothing to do" or "no such thing" is a
                // claim about the log, not about this process's cache: a stale cached state
                // would revoke nothing, or not find a token another process issued. Such
                // answers are decided again on the streams as the log has them. (An append
                // needs no such check: its expected version is checked by the log.)
                Err(HandlerError::Rejected(_)) if !latest => latest = true,
                Ok(Answer::Done(ref ex)) if ex.events.is_empty() && !latest => latest = true,
                other => return other,
            }
        }
    }

    /// One try: plan (and govern) the command on the states as cached (or, `latest`, as
    /// the log has them), then append.
    async fn attempt(
        &self,
        ctx: &Ctx,
        command: &Command,
        latest: bool,
    ) -> Result<Answer, HandlerError> {
        match ctx.principal.agent_id() {
            Some(agent_id) => self.governed(ctx, agent_id, command, latest).await,
            None => {
                let plan = self.plan(ctx, command, latest).await?;
                self.commit(ctx, command, plan).await.map(Answer::Done)
            }
        }
    }

    async fn append(&self, ctx: &Ctx, plan: &Plan) -> Result<AppendOutcome, LogError> {
        let request = AppendRequest {
            command_id: ctx.command_id,
            writes: plan.writes.clone(),
        };
        let started = std::time::Instant::now();
        let outcome = self.log.append(request.clone()).await;
        metrics::histogram!("chronicle_append_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        let outcome = outcome?;
        for due in self
            .cache
            .advance(&request, &outcome, self.snapshots.as_ref())
        {
            if let Some(s) = &self.snapshots {
                s.save(due);
            }
        }
        if !self.observers.is_empty() {
            let events: Vec<PendingEvent> = request
                .writes
                .iter()
                .flat_map(|w| w.events.iter().cloned())
                .collect();
            for observe in &self.observers {
                observe(&events);
            }
        }
        Ok(outcome)
    }

    /// Appends a plan and describes the result.
    async fn commit(
        &self,
        ctx: &Ctx,
        command: &Command,
        plan: Plan,
    ) -> Result<Executed, HandlerError> {
        let primary = plan.primary.clone();
        if plan.writes.is_empty() {
            // Nothing to change (a repeated revoke): answer where the aggregate stands.
            let head = self.load_head(&primary).await?;
            return Ok(Executed {
                command_id: ctx.command_id,
                stream: primary,
                version: head.version,
                position: head.position,
                events: vec![],
                created: false,
                duplicate: false,
                issued: None,
                escalated: None,
            });
        }
        let outcome = self.append(ctx, &plan).await?;
        let head = outcome.head_of(&primary).unwrap_or_else(|| StreamHead {
            version: 0,
            position: outcome.last_position(),
            hash: None,
        });
        let mut issued = plan.issued;
        if outcome.duplicate && issued.is_some() {
            issued = self.issued_token(&primary, &outcome).await?;
        }
        let escalated = plan
            .escalated
            .map(|(command_id, rejection)| match rejection {
                Some(r) => EscalatedResult::Rejected(r),
                None => EscalatedResult::Executed {
                    command_id,
                    events: outcome
                        .events
                        .iter()
                        .filter(|e| e.stream != primary)
                        .cloned()
                        .collect(),
                },
            });
        Ok(Executed {
            command_id: ctx.command_id,
            stream: primary,
            version: head.version,
            position: if head.position > 0 {
                head.position
            } else {
                outcome.last_position()
            },
            events: outcome.events,
            created: command.creates() && plan.escalation.is_none(),
            duplicate: outcome.duplicate,
            issued,
            escalated,
        })
    }

    async fn load_head(&self, stream: &StreamId) -> Result<StreamHead, LogError> {
        match self.cache.head(stream) {
            Some(head) => Ok(head),
            None => self.log.stream_head(stream).await,
        }
    }

    /// The token a repeated `IssueToken` issued the first time.
    async fn issued_token(
        &self,
        stream: &StreamId,
        outcome: &AppendOutcome,
    ) -> Result<Option<(String, TokenIssued)>, LogError> {
        let Some(first) = outcome.events.first() else {
            return Ok(None);
        };
        let events = self.log.read_stream(stream, first.version).await?;
        for e in events {
            if e.envelope.id == first.id
                && let Ok(Event::User(UserEvent::TokenIssued(t))) = e.decode()
            {
                return Ok(Some((stream.id().to_owned(), t)));
            }
        }
        Ok(None)
    }
}

/// The id an escalated command runs under once approved: derived from the command that
/// was escalated, so it is the same whichever process runs it.
pub fn escalated_command_id(command_id: Uuid) -> Uuid {
    Uuid::new_v5(&command_id, b"escalated")
}

#[cfg(test)]
mod tests;
