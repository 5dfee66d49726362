//! The command handler: load, decide, append — with governance for agents.
//!
//! For each command it loads the states it needs (folded from the log with the deciders'
//! `evolve`), decides, and appends the events with the versions it decided on, all
//! streams of one command in one atomic append. Recently used states are kept in memory
//! with their stream head: the aggregate a command changes is decided on its cached state
//! (the append's expected-version check catches a stale one, and the handler then reloads
//! and decides again, a bounded number of times); aggregates only consulted (the accounts
//! of an entry, the caller agent, the bypass switch) are brought up to date first.

use std::any::Any;
use std::collections::{BTreeSet, HashMap};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use chronicle_events::domain::agent::{GovernanceDecisionRecorded, Outcome};
use chronicle_events::domain::user::{Role, TokenIssued};
use chronicle_events::domain::{DomainEvent, Event, UserEvent};
use chronicle_events::{
    Actor, AppendOutcome, AppendRequest, AppendedEvent, Domain, EventLog, Expected, LogError,
    PendingEvent, StreamHead, StreamId, StreamWrite,
};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::agent::{AgentCommand, AgentDecider};
use crate::approval::{ApprovalCommand, ApprovalDecider};
use crate::chart::{Account, ChartCommand, ChartDecider};
use crate::command::{BYPASS_STREAM_ID, Command, not_found};
use crate::entry::{EntryCommand, EntryDecider, mirror};
use crate::governance::{BypassDecider, SetBypass, evaluate};
use crate::job::{JobCommand, JobDecider};
use crate::permissions::{Principal, may_run};
use crate::user::{UserCommand, UserDecider};
use crate::{Decider, Rejection, RejectionCode};

/// How many times a command is decided again after losing a race for its stream.
const MAX_ATTEMPTS: usize = 16;
/// How many aggregate states are kept in memory.
const CACHE_CAPACITY: usize = 50_000;

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

/// A state in the cache, whatever its decider: it can take the events appended to it.
trait CachedState: Send + Sync {
    fn apply(&mut self, event: &Event);
    fn as_any(&self) -> &dyn Any;
}

struct Cached<D: Decider>(D::State);

impl<D: Decider + 'static> CachedState for Cached<D>
where
    D::State: Send + Sync + 'static,
{
    fn apply(&mut self, event: &Event) {
        if let Some(e) = D::Event::from_event(event) {
            self.0 = D::evolve(self.0.clone(), e);
        }
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

struct Entry {
    head: StreamHead,
    state: Box<dyn CachedState>,
}

/// A decision: the state it was made on and the events it produced.
type Decided<D> = (Loaded<<D as Decider>::State>, Vec<<D as Decider>::Event>);

/// A state loaded for deciding, with the head it stands at.
#[derive(Debug, Clone)]
pub struct Loaded<S> {
    pub head: StreamHead,
    pub state: S,
}

/// The writes of one command, before they are appended.
struct Plan {
    writes: Vec<StreamWrite>,
    primary: StreamId,
    issued: Option<(String, TokenIssued)>,
    escalated: Option<(Uuid, Option<Rejection>)>,
    escalation: Option<String>,
}

impl Plan {
    fn new(primary: StreamId) -> Self {
        Plan {
            writes: Vec::new(),
            primary,
            issued: None,
            escalated: None,
            escalation: None,
        }
    }

    fn write(&mut self, stream: StreamId, expected: Expected, events: Vec<PendingEvent>) {
        if !events.is_empty() {
            self.writes.push(StreamWrite {
                stream,
                expected,
                events,
            });
        }
    }
}

/// Told of every event this handler appends, whatever command (or approval) appended it:
/// how a process applies the local effects of its own writes at once (a revocation).
pub type AppendObserver = Arc<dyn Fn(&[PendingEvent]) + Send + Sync>;

/// Executes commands against an event log.
pub struct CommandHandler {
    log: Arc<dyn EventLog>,
    cache: Mutex<lru::LruCache<StreamId, Entry>>,
    observers: Vec<AppendObserver>,
}

impl CommandHandler {
    pub fn new(log: Arc<dyn EventLog>) -> Self {
        CommandHandler {
            log,
            cache: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(CACHE_CAPACITY).expect("non-zero"),
            )),
            observers: Vec::new(),
        }
    }

    /// Calls `observer` with the events of every append this handler makes.
    pub fn observe(mut self, observer: AppendObserver) -> Self {
        self.observers.push(observer);
        self
    }

    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.log
    }

    fn cached<D: Decider + 'static>(&self, stream: &StreamId) -> Option<Loaded<D::State>>
    where
        D::State: Send + Sync + 'static,
    {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let entry = cache.get(stream)?;
        let state = entry.state.as_any().downcast_ref::<Cached<D>>()?;
        Some(Loaded {
            head: entry.head.clone(),
            state: state.0.clone(),
        })
    }

    fn remember<D: Decider + 'static>(&self, stream: &StreamId, loaded: &Loaded<D::State>)
    where
        D::State: Send + Sync + 'static,
    {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.put(
            stream.clone(),
            Entry {
                head: loaded.head.clone(),
                state: Box::new(Cached::<D>(loaded.state.clone())),
            },
        );
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
        let cached = self.cached::<D>(stream);
        if !latest && let Some(c) = cached {
            return Ok(c);
        }
        let mut loaded = cached.unwrap_or(Loaded {
            head: StreamHead::EMPTY,
            state: D::initial_state(),
        });
        let read = self.log.read_stream_after(stream, &loaded.head).await?;
        if read.head == loaded.head && loaded.head != StreamHead::EMPTY {
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
        self.remember::<D>(stream, &loaded);
        Ok(loaded)
    }

    /// After an append: the cached states of the streams written move on with it.
    fn advance_cache(&self, request: &AppendRequest, outcome: &AppendOutcome) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        for write in &request.writes {
            let Some(entry) = cache.get_mut(&write.stream) else {
                continue;
            };
            let Expected::Head(expected) = &write.expected else {
                continue;
            };
            if &entry.head != expected || outcome.duplicate {
                cache.pop(&write.stream);
                continue;
            }
            for e in &write.events {
                entry.state.apply(&e.event);
            }
            if let Some(head) = outcome.head_of(&write.stream) {
                entry.head = head;
            }
        }
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
                    if ctx.if_match.is_some() && stream == command.stream()? {
                        return Err(HandlerError::VersionConflict {
                            stream,
                            expected,
                            actual,
                        });
                    }
                    if conflicts >= MAX_ATTEMPTS {
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

    async fn attempt(
        &self,
        ctx: &Ctx,
        command: &Command,
        latest: bool,
    ) -> Result<Answer, HandlerError> {
        let action = command.action();
        let Some(agent_id) = ctx.principal.agent_id().map(str::to_owned) else {
            let plan = self.plan(ctx, command, latest).await?;
            return self.commit(ctx, command, plan).await.map(Answer::Done);
        };
        let agent_id = &agent_id;

        // Governance: the caller is an agent.
        let complexity = action
            .complexity()
            .ok_or_else(|| HandlerError::Forbidden(format!("agents may not {}", action.name())))?;
        let agent_stream = StreamId::new(Domain::Agent, agent_id.as_str())
            .map_err(|_| HandlerError::Forbidden("the caller is not a known agent".into()))?;
        let agent = self.load::<AgentDecider>(&agent_stream, true).await?;
        let Some(agent) = agent.state else {
            return Err(HandlerError::Forbidden(
                "the caller is not a registered agent".into(),
            ));
        };
        let (outcome, reason) = self
            .governance(agent.maturity, action, complexity, ctx.now)
            .await?;
        let decision = |approval_id: Option<String>| GovernanceDecisionRecorded {
            agent_id: agent_id.clone(),
            action: action.name().to_owned(),
            complexity,
            maturity: agent.maturity,
            outcome,
            reason: reason.clone(),
            command_id: ctx.command_id,
            approval_id,
        };
        match outcome {
            Outcome::Allowed | Outcome::Bypassed => {
                let mut plan = self.plan(ctx, command, latest).await?;
                // The decision lands with the command's events, in the agent's stream,
                // without a version expectation: an agent's parallel commands never
                // conflict over it.
                if let Some(w) = plan.writes.iter_mut().find(|w| w.stream == agent_stream) {
                    w.events.push(ctx.pending(decision(None)));
                } else {
                    plan.write(
                        agent_stream,
                        Expected::Any,
                        vec![ctx.pending(decision(None))],
                    );
                }
                self.commit(ctx, command, plan).await.map(Answer::Done)
            }
            Outcome::Denied => {
                let mut plan = Plan::new(agent_stream.clone());
                plan.write(
                    agent_stream,
                    Expected::Any,
                    vec![ctx.pending(decision(None))],
                );
                self.append(ctx, &plan).await?;
                Err(HandlerError::GovernanceDenied(reason))
            }
            Outcome::Escalated => {
                let approval_id = Uuid::now_v7().to_string();
                let approval_stream = StreamId::new(Domain::Approval, approval_id.as_str())
                    .expect("a uuid is a valid id");
                let request = ApprovalDecider::decide(
                    &ApprovalCommand::Request {
                        approval_id: approval_id.clone(),
                        action: action.name().to_owned(),
                        payload: serde_json::to_value(command).unwrap_or_default(),
                        reason: reason.clone(),
                        escalated_command_id: Some(escalated_command_id(ctx.command_id)),
                        agent_id: Some(agent_id.clone()),
                    },
                    &None,
                )?;
                let mut plan = Plan::new(approval_stream.clone());
                plan.write(
                    agent_stream,
                    Expected::Any,
                    vec![ctx.pending(decision(Some(approval_id.clone())))],
                );
                plan.write(
                    approval_stream,
                    Expected::NO_STREAM,
                    request.into_iter().map(|e| ctx.pending(e)).collect(),
                );
                plan.escalation = Some(approval_id.clone());
                let executed = self.commit(ctx, command, plan).await?;
                let approval_id = executed
                    .events
                    .iter()
                    .find(|e| e.stream.domain() == Domain::Approval)
                    .map(|e| e.stream.id().to_owned())
                    .unwrap_or(approval_id);
                Ok(Answer::Escalated {
                    approval_id,
                    executed,
                })
            }
        }
    }

    /// Governance's outcome for an agent of `maturity` asking for `action` now. The bypass
    /// counts only for what it may cover (an agent's work, not its powers).
    async fn governance(
        &self,
        maturity: chronicle_events::domain::agent::Maturity,
        action: crate::governance::Action,
        complexity: chronicle_events::domain::agent::Complexity,
        now: DateTime<Utc>,
    ) -> Result<(Outcome, String), HandlerError> {
        let bypass_stream =
            StreamId::new(Domain::Governance, BYPASS_STREAM_ID).expect("a valid constant id");
        let bypass = self.load::<BypassDecider>(&bypass_stream, true).await?;
        Ok(evaluate(
            maturity,
            complexity,
            action.bypassable() && bypass.state.active_at(now),
        ))
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
        self.advance_cache(&request, &outcome);
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
        if let Some(entry) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .peek(stream)
        {
            return Ok(entry.head.clone());
        }
        self.log.stream_head(stream).await
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

    /// Decides `command` on the current states and says what to append.
    async fn plan(&self, ctx: &Ctx, command: &Command, latest: bool) -> Result<Plan, HandlerError> {
        let stream = command.stream()?;
        let mut plan = Plan::new(stream.clone());
        macro_rules! decide {
            ($decider:ty, $cmd:expr) => {{
                let cmd = $cmd;
                match self.assume_new::<$decider>(ctx, &stream, latest, &cmd) {
                    Some(decided) => decided,
                    None => {
                        let loaded = self
                            .load_for_decision::<$decider>(ctx, &stream, latest)
                            .await?;
                        let events = <$decider>::decide(&cmd, &loaded.state)?;
                        (loaded, events)
                    }
                }
            }};
        }
        macro_rules! simple {
            ($decider:ty, $cmd:expr) => {{
                let (loaded, events) = decide!($decider, $cmd);
                plan.write(
                    stream.clone(),
                    Expected::Head(loaded.head),
                    events.into_iter().map(|e| ctx.pending(e)).collect(),
                );
            }};
        }
        match command {
            Command::IssueToken {
                user_id,
                role,
                scopes,
                ttl_seconds,
            } => {
                if *role == Role::Agent {
                    let agent = StreamId::new(Domain::Agent, user_id.as_str())
                        .map_err(|_| unknown_agent(user_id))?;
                    if self
                        .load::<AgentDecider>(&agent, true)
                        .await?
                        .state
                        .is_none()
                    {
                        return Err(unknown_agent(user_id).into());
                    }
                }
                let (loaded, events) = decide!(
                    UserDecider,
                    UserCommand::IssueToken {
                        jti: Uuid::now_v7(),
                        role: *role,
                        scopes: scopes.clone(),
                        ttl_seconds: *ttl_seconds,
                        now: ctx.now,
                    }
                );
                if let Some(UserEvent::TokenIssued(t)) = events.first() {
                    plan.issued = Some((user_id.clone(), t.clone()));
                }
                plan.write(
                    stream.clone(),
                    Expected::Head(loaded.head),
                    events.into_iter().map(|e| ctx.pending(e)).collect(),
                );
            }
            Command::RevokeToken { jti, reason, .. } => simple!(
                UserDecider,
                UserCommand::RevokeToken {
                    jti: *jti,
                    reason: reason.clone()
                }
            ),
            Command::RevokeAllTokens { reason, .. } => simple!(
                UserDecider,
                UserCommand::RevokeAll {
                    reason: reason.clone(),
                    now: ctx.now
                }
            ),
            Command::SubmitJob {
                job_id,
                agent_id,
                kind,
                input,
            } => simple!(
                JobDecider,
                JobCommand::Submit {
                    job_id: job_id.clone(),
                    agent_id: agent_id.clone(),
                    kind: kind.clone(),
                    input: input.clone()
                }
            ),
            Command::StartJob { .. } => simple!(JobDecider, JobCommand::Start),
            Command::CompleteJob { result, .. } => simple!(
                JobDecider,
                JobCommand::Complete {
                    result: result.clone()
                }
            ),
            Command::FailJob { error, .. } => simple!(
                JobDecider,
                JobCommand::Fail {
                    error: error.clone()
                }
            ),
            Command::CancelJob { reason, .. } => simple!(
                JobDecider,
                JobCommand::Cancel {
                    reason: reason.clone()
                }
            ),
            Command::RetryJob { .. } => simple!(JobDecider, JobCommand::Retry),
            Command::RequestApproval {
                approval_id,
                action,
                payload,
                reason,
            } => simple!(
                ApprovalDecider,
                ApprovalCommand::Request {
                    approval_id: approval_id.clone(),
                    action: action.clone(),
                    payload: payload.clone(),
                    reason: reason.clone(),
                    escalated_command_id: None,
                    agent_id: None,
                }
            ),
            Command::ApproveApproval { reason, .. } => {
                let (loaded, events) = decide!(
                    ApprovalDecider,
                    ApprovalCommand::Approve {
                        reason: reason.clone()
                    }
                );
                let approval = loaded.state.clone().ok_or_else(|| not_found("approval"))?;
                plan.write(
                    stream.clone(),
                    Expected::Head(loaded.head),
                    events.into_iter().map(|e| ctx.pending(e)).collect(),
                );
                // An escalated command runs now, as the agent, caused by this approval,
                // in the same append: it runs exactly once because the approval can be
                // granted only once.
                if let (Some(escalated_id), Some(agent_id)) =
                    (approval.escalated_command_id, approval.agent_id.clone())
                {
                    plan.escalated = Some((
                        escalated_id,
                        self.plan_escalated(
                            ctx,
                            &approval.payload,
                            escalated_id,
                            &agent_id,
                            &mut plan,
                        )
                        .await?,
                    ));
                }
            }
            Command::RejectApproval { reason, .. } => simple!(
                ApprovalDecider,
                ApprovalCommand::Reject {
                    reason: reason.clone()
                }
            ),
            Command::OpenAccount {
                code,
                name,
                account_type,
                currency,
            } => simple!(
                ChartDecider,
                ChartCommand::Open {
                    code: code.clone(),
                    name: name.clone(),
                    account_type: *account_type,
                    currency: currency.clone()
                }
            ),
            Command::CloseAccount { .. } => simple!(ChartDecider, ChartCommand::Close),
            Command::PostEntry {
                entry_id,
                effective_date,
                memo,
                lines,
            } => {
                let chart = self
                    .chart_for(lines.iter().map(|l| l.account.as_str()))
                    .await?;
                let loaded = self
                    .load_for_decision::<EntryDecider>(ctx, &stream, latest)
                    .await?;
                let events = EntryDecider::decide_with_chart(
                    &EntryCommand::Post {
                        entry_id: entry_id.clone(),
                        effective_date: *effective_date,
                        memo: memo.clone(),
                        lines: lines.clone(),
                    },
                    &loaded.state,
                    &chart,
                )?;
                plan.write(
                    stream.clone(),
                    Expected::Head(loaded.head),
                    events.into_iter().map(|e| ctx.pending(e)).collect(),
                );
            }
            Command::ReverseEntry {
                reversal_entry_id,
                reason,
                ..
            } => {
                let reversal_stream = StreamId::new(Domain::Entry, reversal_entry_id.as_str())
                    .map_err(|_| Rejection::invalid("reversal_entry_id", "not a valid entry id"))?;
                let loaded = self
                    .load_for_decision::<EntryDecider>(ctx, &stream, latest)
                    .await?;
                let entry = loaded.state.clone().ok_or_else(|| not_found("entry"))?;
                let chart = self
                    .chart_for(entry.posted.lines.iter().map(|l| l.account.as_str()))
                    .await?;
                let events = EntryDecider::decide_with_chart(
                    &EntryCommand::Reverse {
                        reason: reason.clone(),
                        reversal_entry_id: reversal_entry_id.clone(),
                    },
                    &loaded.state,
                    &chart,
                )?;
                let existing = self.load::<EntryDecider>(&reversal_stream, true).await?;
                if existing.state.is_some() {
                    return Err(Rejection::new(
                        RejectionCode::AlreadyExists,
                        format!("entry {reversal_entry_id} already exists"),
                    )
                    .into());
                }
                plan.write(
                    stream.clone(),
                    Expected::Head(loaded.head),
                    events.into_iter().map(|e| ctx.pending(e)).collect(),
                );
                let posted = mirror(&entry.posted, reversal_entry_id, ctx.now.date_naive());
                plan.write(
                    reversal_stream,
                    Expected::Head(existing.head),
                    vec![ctx.pending(posted)],
                );
            }
            Command::RegisterAgent {
                agent_id,
                name,
                maturity,
            } => simple!(
                AgentDecider,
                AgentCommand::Register {
                    agent_id: agent_id.clone(),
                    name: name.clone(),
                    maturity: *maturity
                }
            ),
            Command::ChangeMaturity {
                maturity, reason, ..
            } => simple!(
                AgentDecider,
                AgentCommand::ChangeMaturity {
                    maturity: *maturity,
                    reason: reason.clone()
                }
            ),
            Command::SetBypass {
                enabled,
                reason,
                until,
            } => simple!(
                BypassDecider,
                SetBypass {
                    enabled: *enabled,
                    reason: reason.clone(),
                    until: *until,
                    now: ctx.now
                }
            ),
        }
        Ok(plan)
    }

    /// A stream this process has not cached is most often a new one (a job just
    /// submitted, a token's first user): decide on the empty state and, when that accepts,
    /// append expecting no stream. If the stream does exist the log refuses the append as
    /// a version conflict and the command is decided again on the state read from the log,
    /// so the answer is the same as reading first; a creation saves that read.
    fn assume_new<D: Decider + 'static>(
        &self,
        ctx: &Ctx,
        stream: &StreamId,
        latest: bool,
        command: &D::Command,
    ) -> Option<Decided<D>>
    where
        D::State: Send + Sync + 'static,
    {
        if latest || ctx.if_match.is_some() {
            return None;
        }
        if self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(stream)
        {
            return None;
        }
        let state = D::initial_state();
        let events = D::decide(command, &state).ok()?;
        if events.is_empty() {
            return None;
        }
        Some((
            Loaded {
                head: StreamHead::EMPTY,
                state,
            },
            events,
        ))
    }

    /// The state a command decides on: cached at first; with `If-Match` or after a lost
    /// race, the latest.
    async fn load_for_decision<D: Decider + 'static>(
        &self,
        ctx: &Ctx,
        stream: &StreamId,
        latest: bool,
    ) -> Result<Loaded<D::State>, HandlerError>
    where
        D::State: Send + Sync + 'static,
    {
        let mut loaded = self.load::<D>(stream, latest).await?;
        if let Some(expected) = ctx.if_match
            && loaded.head.version != expected
            && !latest
        {
            loaded = self.load::<D>(stream, true).await?;
        }
        if let Some(expected) = ctx.if_match
            && loaded.head.version != expected
        {
            return Err(HandlerError::VersionConflict {
                stream: stream.clone(),
                expected,
                actual: loaded.head.version,
            });
        }
        Ok(loaded)
    }

    /// The accounts named by an entry's lines, as of now.
    async fn chart_for<'a>(
        &self,
        codes: impl Iterator<Item = &'a str>,
    ) -> Result<HashMap<String, Account>, HandlerError> {
        let codes: BTreeSet<&str> = codes.collect();
        let mut chart = HashMap::new();
        for code in codes {
            let Ok(stream) = StreamId::new(Domain::Chart, code) else {
                continue; // Not a valid code: the decider reports it as unknown.
            };
            if let Some(account) = self.load::<ChartDecider>(&stream, true).await?.state {
                chart.insert(code.to_owned(), account);
            }
        }
        Ok(chart)
    }

    /// Adds an escalated command's writes to an approval's plan, as the agent. Answers the
    /// command's rejection when it no longer holds (the approval is granted regardless).
    async fn plan_escalated(
        &self,
        ctx: &Ctx,
        payload: &serde_json::Value,
        command_id: Uuid,
        agent_id: &str,
        plan: &mut Plan,
    ) -> Result<Option<Rejection>, HandlerError> {
        let Ok(command) = serde_json::from_value::<Command>(payload.clone()) else {
            return Ok(Some(Rejection::invalid(
                "payload",
                "the escalated command cannot be read",
            )));
        };
        // Approving never widens anyone's powers: the approver must be allowed to run the
        // command themselves, may not be the agent, and governance must still let the
        // agent ask for it (its maturity may have dropped since). Otherwise nothing is
        // appended, the approval included.
        if ctx.principal.user_id == agent_id {
            return Err(HandlerError::Forbidden(
                "nobody approves a command of their own".into(),
            ));
        }
        may_run(&ctx.principal, &command).map_err(|why| {
            HandlerError::Forbidden(format!("the approver may not run this command: {why}"))
        })?;
        let agent_principal = Principal::new(agent_id, Role::Agent, vec![]);
        may_run(&agent_principal, &command).map_err(HandlerError::Forbidden)?;
        let action = command.action();
        let complexity = action
            .complexity()
            .ok_or_else(|| HandlerError::Forbidden(format!("agents may not {}", action.name())))?;
        let agent_stream = StreamId::new(Domain::Agent, agent_id)
            .map_err(|_| HandlerError::Forbidden("the agent is not registered".into()))?;
        let Some(agent) = self.load::<AgentDecider>(&agent_stream, true).await?.state else {
            return Err(HandlerError::Forbidden(
                "the agent is no longer registered".into(),
            ));
        };
        let (outcome, reason) = self
            .governance(agent.maturity, action, complexity, ctx.now)
            .await?;
        if outcome == Outcome::Denied {
            return Err(HandlerError::GovernanceDenied(format!(
                "at approval time: {reason}"
            )));
        }
        let as_agent = Ctx {
            command_id,
            correlation_id: ctx.correlation_id,
            causation_id: Some(ctx.command_id),
            actor: Actor::agent(agent_id),
            principal: agent_principal,
            if_match: None,
            now: ctx.now,
        };
        let inner = match Box::pin(self.plan(&as_agent, &command, true)).await {
            Ok(inner) => inner,
            Err(HandlerError::Rejected(r)) => return Ok(Some(r)),
            Err(e) => return Err(e),
        };
        for w in inner.writes {
            if plan.writes.iter().any(|p| p.stream == w.stream) {
                return Ok(Some(Rejection::new(
                    RejectionCode::InvalidTransition,
                    "the escalated command writes to its own approval",
                )));
            }
            plan.writes.push(w);
        }
        Ok(None)
    }
}

/// The id an escalated command runs under once approved: derived from the command that
/// was escalated, so it is the same whichever process runs it.
pub fn escalated_command_id(command_id: Uuid) -> Uuid {
    Uuid::new_v5(&command_id, b"escalated")
}

fn unknown_agent(agent_id: &str) -> Rejection {
    Rejection::new(
        RejectionCode::UnknownAgent,
        format!(
            "no registered agent {}",
            agent_id.chars().take(128).collect::<String>()
        ),
    )
}
