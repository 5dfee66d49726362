//! Planning a command: which streams it writes, decided by which decider, on which state
//! and with what it consults. The rules are the deciders'; this module only loads what
//! each decision needs (the aggregate, and its context: the accounts an entry names, the
//! agent a token is issued to) and turns the decided events into writes with the heads
//! they were decided on.

use std::collections::BTreeSet;

use chronicle_events::domain::UserEvent;
use chronicle_events::domain::user::{Role, TokenIssued};
use chronicle_events::{Domain, Expected, PendingEvent, StreamHead, StreamId, StreamWrite};
use uuid::Uuid;

use super::{CommandHandler, Ctx, HandlerError, Loaded};
use crate::agent::{AgentCommand, AgentDecider};
use crate::approval::{ApprovalCommand, ApprovalDecider};
use crate::chart::{ChartCommand, ChartDecider};
use crate::command::{BYPASS_STREAM_ID, Command};
use crate::entry::{Chart, EntryCommand, EntryDecider};
use crate::governance::{BypassDecider, SetBypass};
use crate::job::{JobCommand, JobDecider};
use crate::user::{UserCommand, UserDecider};
use crate::{Decider, Rejection};

/// A decision: the state it was made on, and the events it gave.
type Decided<D> = (Loaded<<D as Decider>::State>, Vec<<D as Decider>::Event>);

/// The writes of one command, before they are appended.
pub(super) struct Plan {
    pub writes: Vec<StreamWrite>,
    /// The aggregate the command is about: its answer's `stream`.
    pub primary: StreamId,
    pub issued: Option<(String, TokenIssued)>,
    /// An approval's escalated command: its id, and its rejection if it no longer holds.
    pub escalated: Option<(Uuid, Option<Rejection>)>,
    /// The approval an agent's escalated command now waits on.
    pub escalation: Option<String>,
}

impl Plan {
    pub fn new(primary: StreamId) -> Self {
        Plan {
            writes: Vec::new(),
            primary,
            issued: None,
            escalated: None,
            escalation: None,
        }
    }

    pub fn write(&mut self, stream: StreamId, expected: Expected, events: Vec<PendingEvent>) {
        if !events.is_empty() {
            self.writes.push(StreamWrite {
                stream,
                expected,
                events,
            });
        }
    }

    /// Writes `events` decided on `loaded` to `stream`, expecting the head they were
    /// decided on.
    pub(super) fn decided<E: Into<chronicle_events::Event>, S>(
        &mut self,
        ctx: &Ctx,
        stream: StreamId,
        loaded: &Loaded<S>,
        events: Vec<E>,
    ) {
        self.write(
            stream,
            Expected::Head(loaded.head.clone()),
            events.into_iter().map(|e| ctx.pending(e)).collect(),
        );
    }
}

impl CommandHandler {
    /// Decides `command` on the current states and says what to append.
    pub(super) async fn plan(
        &self,
        ctx: &Ctx,
        command: &Command,
        latest: bool,
    ) -> Result<Plan, HandlerError> {
        let stream = command.stream()?;
        let mut plan = Plan::new(stream.clone());
        macro_rules! simple {
            ($decider:ty, $cmd:expr) => {{
                let (loaded, events) = self
                    .decide::<$decider>(ctx, &stream, latest, $cmd, &Default::default())
                    .await?;
                plan.decided(ctx, stream.clone(), &loaded, events);
            }};
        }
        match command {
            Command::IssueToken {
                user_id,
                role,
                scopes,
                ttl_seconds,
            } => {
                // An agent token is issued only to a registered agent: the decision consults
                // the agent of the same id, as the log has it.
                let agent = match role {
                    Role::Agent => match StreamId::new(Domain::Agent, user_id.as_str()) {
                        Ok(s) => self.load::<AgentDecider>(&s, true).await?.state,
                        Err(_) => None,
                    },
                    _ => None,
                };
                let issue = UserCommand::IssueToken {
                    user_id: user_id.clone(),
                    jti: Uuid::now_v7(),
                    role: *role,
                    scopes: scopes.clone(),
                    ttl_seconds: *ttl_seconds,
                    now: ctx.now,
                };
                let (loaded, events) = self
                    .decide::<UserDecider>(ctx, &stream, latest, issue, &agent)
                    .await?;
                if let Some(UserEvent::TokenIssued(t)) = events.first() {
                    plan.issued = Some((user_id.clone(), t.clone()));
                }
                plan.decided(ctx, stream.clone(), &loaded, events);
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
                let approve = ApprovalCommand::Approve {
                    reason: reason.clone(),
                };
                let (loaded, events) = self
                    .decide::<ApprovalDecider>(ctx, &stream, latest, approve, &())
                    .await?;
                let approval = loaded.state.clone();
                plan.decided(ctx, stream.clone(), &loaded, events);
                // An escalated command runs now, as the agent, caused by this approval,
                // in the same append: it runs exactly once because the approval can be
                // granted only once.
                if let Some(approval) = approval
                    && let (Some(escalated_id), Some(agent_id)) =
                        (approval.escalated_command_id, approval.agent_id)
                {
                    let rejection = self
                        .plan_escalated(ctx, &approval.payload, escalated_id, &agent_id, &mut plan)
                        .await?;
                    plan.escalated = Some((escalated_id, rejection));
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
                let post = EntryCommand::Post {
                    entry_id: entry_id.clone(),
                    effective_date: *effective_date,
                    memo: memo.clone(),
                    lines: lines.clone(),
                    source: None,
                };
                let (loaded, events) = self
                    .decide::<EntryDecider>(ctx, &stream, latest, post, &chart)
                    .await?;
                plan.decided(ctx, stream.clone(), &loaded, events);
            }
            Command::ReverseEntry {
                reversal_entry_id,
                reason,
                ..
            } => {
                // Two decisions: the reversal on the entry (with the chart its mirror would
                // post to today), and the mirror on the reversal's own stream.
                let loaded = self
                    .load_for_decision::<EntryDecider>(ctx, &stream, latest)
                    .await?;
                let lines = loaded.state.as_ref().map(|e| e.posted.lines.clone());
                let chart = self
                    .chart_for(lines.iter().flatten().map(|l| l.account.as_str()))
                    .await?;
                let reverse = EntryCommand::Reverse {
                    reason: reason.clone(),
                    reversal_entry_id: reversal_entry_id.clone(),
                    on_behalf_of: None,
                };
                let events = EntryDecider::decide(&reverse, &loaded.state, &chart)?;
                let original = loaded.state.clone().map(|e| e.posted).ok_or_else(|| {
                    Rejection::new(crate::RejectionCode::NotFound, "no such entry")
                })?;
                plan.decided(ctx, stream.clone(), &loaded, events);
                let reversal_stream = StreamId::new(Domain::Entry, reversal_entry_id.as_str())
                    .map_err(|_| Rejection::bad_id("reversal_entry_id"))?;
                let mirror = EntryCommand::Mirror {
                    original,
                    reversal_entry_id: reversal_entry_id.clone(),
                    on: ctx.now.date_naive(),
                };
                let (loaded, events) = self
                    .decide::<EntryDecider>(ctx, &reversal_stream, true, mirror, &chart)
                    .await?;
                plan.decided(ctx, reversal_stream, &loaded, events);
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
            Command::IssueInvoice { .. }
            | Command::DeliverInvoice { .. }
            | Command::RecognizeRevenue { .. }
            | Command::RecordPayment { .. }
            | Command::VoidInvoice { .. } => {
                self.plan_invoice(ctx, command, &stream, latest, &mut plan)
                    .await?
            }
        }
        Ok(plan)
    }

    /// Decides `command` for `stream` with `D`: on the empty state when the stream is new
    /// to this process and that accepts it (see [`CommandHandler::assume_new`]), else on
    /// the state [`CommandHandler::load_for_decision`] gives.
    pub(super) async fn decide<D: Decider + 'static>(
        &self,
        ctx: &Ctx,
        stream: &StreamId,
        latest: bool,
        command: D::Command,
        context: &D::Context,
    ) -> Result<Decided<D>, HandlerError>
    where
        D::State: Send + Sync + 'static,
    {
        if let Some(decided) = self.assume_new::<D>(ctx, stream, latest, &command, context) {
            return Ok(decided);
        }
        let loaded = self.load_for_decision::<D>(ctx, stream, latest).await?;
        let events = D::decide(&command, &loaded.state, context)?;
        Ok((loaded, events))
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
        context: &D::Context,
    ) -> Option<Decided<D>>
    where
        D::State: Send + Sync + 'static,
    {
        if latest || ctx.if_match.is_some() || self.cache.contains(stream) {
            return None;
        }
        let state = D::initial_state();
        let events = D::decide(command, &state, context).ok()?;
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
    pub(super) async fn load_for_decision<D: Decider + 'static>(
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

    /// The accounts named by an entry's lines, as the log has them now (only consulted, so
    /// no append would catch a stale one).
    pub(super) async fn chart_for<'a>(
        &self,
        codes: impl Iterator<Item = &'a str>,
    ) -> Result<Chart, HandlerError> {
        let codes: BTreeSet<&str> = codes.collect();
        let mut chart = Chart::new();
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
}

/// The stream of the global governance switches.
pub(super) fn bypass_stream() -> StreamId {
    StreamId::new(Domain::Governance, BYPASS_STREAM_ID).expect("a valid constant id")
}
