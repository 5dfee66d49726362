//! Governance at the handler: an agent's command is ALLOWED, ESCALATED, DENIED or BYPASSED
//! by [`crate::governance::evaluate`], and the decision is recorded as an event whatever it
//! is — with the command's events when it runs, alone when it is denied, with the approval
//! request when it is escalated. When a person approves an escalated command, it runs here
//! too, under the checks that keep approvals from widening anyone's powers.

use chronicle_events::domain::agent::{Complexity, GovernanceDecisionRecorded, Maturity, Outcome};
use chronicle_events::domain::user::Role;
use chronicle_events::{Actor, Domain, Expected, StreamId};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::plan::{Plan, bypass_stream};
use super::{Answer, CommandHandler, Ctx, HandlerError, escalated_command_id};
use crate::agent::AgentDecider;
use crate::approval::{ApprovalCommand, ApprovalDecider};
use crate::command::Command;
use crate::governance::{Action, BypassDecider, evaluate};
use crate::permissions::{Principal, may_run};
use crate::{Decider, Rejection, RejectionCode};

impl CommandHandler {
    /// One try at an agent's command: governance decides whether it runs now, waits for
    /// a person, or is denied; the decision lands in the agent's stream in every case.
    pub(super) async fn governed(
        &self,
        ctx: &Ctx,
        agent_id: &str,
        command: &Command,
        latest: bool,
    ) -> Result<Answer, HandlerError> {
        let action = command.action();
        let complexity = action
            .complexity()
            .ok_or_else(|| HandlerError::Forbidden(format!("agents may not {}", action.name())))?;
        let agent_stream = StreamId::new(Domain::Agent, agent_id)
            .map_err(|_| HandlerError::Forbidden("the caller is not a known agent".into()))?;
        let Some(agent) = self.load::<AgentDecider>(&agent_stream, true).await?.state else {
            return Err(HandlerError::Forbidden(
                "the caller is not a registered agent".into(),
            ));
        };
        let (outcome, reason) = self
            .governance(agent.maturity, action, complexity, ctx.now)
            .await?;
        let decision = |approval_id: Option<String>| GovernanceDecisionRecorded {
            agent_id: agent_id.to_owned(),
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
                        agent_id: Some(agent_id.to_owned()),
                    },
                    &None,
                    &(),
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
    pub(super) async fn governance(
        &self,
        maturity: Maturity,
        action: Action,
        complexity: Complexity,
        now: DateTime<Utc>,
    ) -> Result<(Outcome, String), HandlerError> {
        let bypass = self.load::<BypassDecider>(&bypass_stream(), true).await?;
        Ok(evaluate(
            maturity,
            complexity,
            action.bypassable() && bypass.state.active_at(now),
        ))
    }

    /// Adds an escalated command's writes to an approval's plan, as the agent. Answers the
    /// command's rejection when it no longer holds (the approval is granted regardless).
    ///
    /// Approving never widens anyone's powers: the approver must be allowed to run the
    /// command themselves, may not be the agent, and governance must still let the agent
    /// ask for it (its maturity may have dropped since). Otherwise nothing is appended, the
    /// approval included.
    pub(super) async fn plan_escalated(
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
