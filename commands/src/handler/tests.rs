//! The handler against the in-memory log (held to JetStream's contract in
//! `events/tests/log.rs`), with no server: retries after a lost race, creations that skip
//! the read, `If-Match`, answers never taken on a stale cache, governance and escalation,
//! and the observer of appended events.

use std::sync::{Arc, Mutex};

use chronicle_events::domain::agent::Maturity;
use chronicle_events::domain::user::Role;
use chronicle_events::domain::{Event, UserEvent};
use chronicle_events::{Actor, Domain, EventLog};
use chronicle_testkit::MemoryLog;
use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::RejectionCode;

fn ctx_as(principal: Principal) -> Ctx {
    let actor = match principal.agent_id() {
        Some(a) => Actor::agent(a),
        None => Actor::user(principal.user_id.clone()),
    };
    Ctx {
        command_id: Uuid::new_v4(),
        correlation_id: Uuid::new_v4(),
        causation_id: None,
        actor,
        principal,
        if_match: None,
        now: Utc::now(),
    }
}

fn admin() -> Ctx {
    ctx_as(Principal::new("root", Role::Admin, vec![]))
}

fn submit(job: &str) -> Command {
    Command::SubmitJob {
        job_id: job.into(),
        agent_id: "a".into(),
        kind: "k".into(),
        input: json!({}),
    }
}

fn start(job: &str) -> Command {
    Command::StartJob { job_id: job.into() }
}

fn done(answer: Result<Answer, HandlerError>) -> Executed {
    match answer {
        Ok(Answer::Done(ex)) => ex,
        other => panic!("{other:?}"),
    }
}

fn rejected(answer: Result<Answer, HandlerError>) -> RejectionCode {
    match answer {
        Err(HandlerError::Rejected(r)) => r.code,
        other => panic!("{other:?}"),
    }
}

fn handlers() -> (MemoryLog, CommandHandler, CommandHandler) {
    let log = MemoryLog::new();
    let a = CommandHandler::new(Arc::new(log.clone()));
    let b = CommandHandler::new(Arc::new(log.clone()));
    (log, a, b)
}

#[tokio::test]
async fn a_creation_skips_the_read_and_a_second_one_is_refused_from_the_log() {
    let (log, a, b) = handlers();
    let ex = done(a.execute(&admin(), &submit("j1")).await);
    assert!(ex.created);
    assert_eq!((ex.version, ex.position), (1, 1));
    assert_eq!(log.reads(), 0, "a creation appends without reading");
    // B has never seen j1: its creation is refused by the log, then decided on what the
    // log holds.
    assert_eq!(
        rejected(b.execute(&admin(), &submit("j1")).await),
        RejectionCode::AlreadyExists
    );
    assert_eq!(log.len(), 1);
}

#[tokio::test]
async fn a_lost_race_is_decided_again_on_the_log() {
    let (log, a, b) = handlers();
    done(a.execute(&admin(), &submit("j1")).await);
    // A caches j1 as PENDING; B starts it.
    done(b.execute(&admin(), &start("j1")).await);
    // A decides on its stale PENDING, the append's expected head catches it, and the
    // command is decided again on RUNNING.
    assert_eq!(
        rejected(a.execute(&admin(), &start("j1")).await),
        RejectionCode::InvalidTransition
    );
    assert_eq!(log.len(), 2);
    let ex = done(
        a.execute(
            &admin(),
            &Command::CompleteJob {
                job_id: "j1".into(),
                result: json!(1),
            },
        )
        .await,
    );
    assert_eq!(ex.version, 3);
}

#[tokio::test]
async fn if_match_is_checked_against_the_log_and_never_retried() {
    let (_, a, b) = handlers();
    done(a.execute(&admin(), &submit("j1")).await);
    done(b.execute(&admin(), &start("j1")).await);
    let mut ctx = admin();
    ctx.if_match = Some(1);
    match a
        .execute(
            &ctx,
            &Command::CancelJob {
                job_id: "j1".into(),
                reason: "r".into(),
            },
        )
        .await
    {
        Err(HandlerError::VersionConflict {
            expected: 1,
            actual: 2,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    ctx.if_match = Some(2);
    let ex = done(
        a.execute(
            &ctx,
            &Command::CancelJob {
                job_id: "j1".into(),
                reason: "r".into(),
            },
        )
        .await,
    );
    assert_eq!(ex.version, 3);
}

#[tokio::test]
async fn an_answer_of_nothing_to_do_is_never_taken_on_a_stale_cache() {
    let (_, a, b) = handlers();
    let revoke_all = Command::RevokeAllTokens {
        user_id: "u".into(),
        reason: "offboarding".into(),
    };
    // A revokes all of a user with no token: it now holds the user's (empty) state.
    let ex = done(a.execute(&admin(), &revoke_all).await);
    assert!(ex.events.is_empty());
    // A token issued through B.
    let issued = done(
        b.execute(
            &admin(),
            &Command::IssueToken {
                user_id: "u".into(),
                role: Role::Writer,
                scopes: vec![],
                ttl_seconds: None,
            },
        )
        .await,
    );
    let (_, token) = issued.issued.unwrap();
    // Revoking it by id through A finds it; revoke-all through A revokes... nothing left.
    let by_id = done(
        a.execute(
            &admin(),
            &Command::RevokeToken {
                user_id: "u".into(),
                jti: token.jti,
                reason: "lost".into(),
            },
        )
        .await,
    );
    assert_eq!(by_id.events.len(), 1);
    done(
        b.execute(
            &admin(),
            &Command::IssueToken {
                user_id: "u".into(),
                role: Role::Writer,
                scopes: vec![],
                ttl_seconds: None,
            },
        )
        .await,
    );
    let ex = done(a.execute(&admin(), &revoke_all).await);
    assert_eq!(ex.events[0].event_type, "AllTokensRevoked");
}

#[tokio::test]
async fn an_agent_is_governed_and_its_escalated_command_runs_on_approval() {
    let (log, h, _) = handlers();
    done(
        h.execute(
            &admin(),
            &Command::RegisterAgent {
                agent_id: "bot".into(),
                name: "bot".into(),
                maturity: Maturity::Student,
            },
        )
        .await,
    );
    let bot = || ctx_as(Principal::new("bot", Role::Agent, vec![]));
    // LOW: allowed, with the decision.
    let ex = done(h.execute(&bot(), &submit("j1")).await);
    let types: Vec<&str> = ex.events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, vec!["JobSubmitted", "GovernanceDecisionRecorded"]);
    // MODERATE for a STUDENT: escalated, the job untouched.
    let cancel = Command::CancelJob {
        job_id: "j1".into(),
        reason: "stuck".into(),
    };
    let approval_id = match h.execute(&bot(), &cancel).await {
        Ok(Answer::Escalated { approval_id, .. }) => approval_id,
        other => panic!("{other:?}"),
    };
    let job = StreamId::new(Domain::Job, "j1").unwrap();
    assert_eq!(log.read_stream(&job, 1).await.unwrap().len(), 1);
    // HIGH for a STUDENT: denied, the decision recorded.
    let before = log.len();
    match h
        .execute(
            &bot(),
            &Command::CloseAccount {
                code: "1000".into(),
            },
        )
        .await
    {
        Err(HandlerError::GovernanceDenied(_)) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(log.len(), before + 1);
    // A person approves: the command runs as the agent, once.
    let approve = Command::ApproveApproval {
        approval_id: approval_id.clone(),
        reason: None,
    };
    let ex = done(h.execute(&admin(), &approve).await);
    match ex.escalated {
        Some(EscalatedResult::Executed { events, .. }) => {
            assert_eq!(events[0].event_type, "JobCancelled")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        rejected(h.execute(&admin(), &approve).await),
        RejectionCode::InvalidTransition
    );
    assert_eq!(log.read_stream(&job, 1).await.unwrap().len(), 2);
}

#[tokio::test]
async fn the_observer_sees_every_append_an_approval_s_included() {
    let log = MemoryLog::new();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let saw = seen.clone();
    let h = CommandHandler::new(Arc::new(log.clone())).observe(Arc::new(move |events| {
        let mut s = saw.lock().unwrap();
        s.extend(events.iter().map(|e| e.event.event_type().to_owned()));
    }));
    done(
        h.execute(
            &admin(),
            &Command::RegisterAgent {
                agent_id: "bot".into(),
                name: "bot".into(),
                maturity: Maturity::Intern,
            },
        )
        .await,
    );
    let issued = done(
        h.execute(
            &admin(),
            &Command::IssueToken {
                user_id: "u".into(),
                role: Role::Analyst,
                scopes: vec![],
                ttl_seconds: None,
            },
        )
        .await,
    );
    let jti = issued.issued.unwrap().1.jti;
    let bot = ctx_as(Principal::new("bot", Role::Agent, vec![]));
    let revoke = Command::RevokeToken {
        user_id: "u".into(),
        jti,
        reason: "leaked".into(),
    };
    let approval_id = match h.execute(&bot, &revoke).await {
        Ok(Answer::Escalated { approval_id, .. }) => approval_id,
        other => panic!("{other:?}"),
    };
    seen.lock().unwrap().clear();
    done(
        h.execute(
            &admin(),
            &Command::ApproveApproval {
                approval_id,
                reason: None,
            },
        )
        .await,
    );
    assert!(
        seen.lock().unwrap().contains(&"TokenRevoked".to_owned()),
        "{:?}",
        seen.lock().unwrap()
    );
    let user = StreamId::new(Domain::User, "u").unwrap();
    let last = log.read_stream(&user, 1).await.unwrap().pop().unwrap();
    assert!(matches!(
        last.decode().unwrap(),
        Event::User(UserEvent::TokenRevoked(_))
    ));
}

#[tokio::test]
async fn what_a_role_may_not_run_is_refused_before_anything_is_read() {
    let (log, h, _) = handlers();
    let writer = ctx_as(Principal::new("w", Role::Writer, vec![]));
    match h
        .execute(
            &writer,
            &Command::SetBypass {
                enabled: true,
                reason: "r".into(),
                until: None,
            },
        )
        .await
    {
        Err(HandlerError::Forbidden(_)) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!((log.len(), log.reads()), (0, 0));
}

#[tokio::test]
async fn a_log_that_is_down_is_an_error_never_an_answer() {
    let (log, h, _) = handlers();
    log.set_down(true);
    match h.execute(&admin(), &submit("j1")).await {
        Err(HandlerError::Log(LogError::Unavailable(_))) => {}
        other => panic!("{other:?}"),
    }
    log.set_down(false);
    done(h.execute(&admin(), &submit("j1")).await);
}
