//! Governance of AI agents: each command has a complexity, each complexity a least
//! maturity, and an agent's command is ALLOWED, ESCALATED (one level short: a human must
//! approve), DENIED (further short) or BYPASSED (the emergency bypass is on). This module
//! holds that policy and the bypass switch's decider; the handler records every decision.

use chronicle_events::domain::GovernanceEvent;
use chronicle_events::domain::agent::{Complexity, Maturity, Outcome};
use chronicle_events::domain::governance::GovernanceBypassChanged;
use chrono::{DateTime, Utc};

use crate::{Decider, Rejection, require_text};

/// Every command of the contract, by what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::EnumIter)]
pub enum Action {
    IssueToken,
    RevokeToken,
    RevokeAllTokens,
    SubmitJob,
    StartJob,
    CompleteJob,
    FailJob,
    CancelJob,
    RetryJob,
    RequestApproval,
    ApproveApproval,
    RejectApproval,
    OpenAccount,
    CloseAccount,
    PostEntry,
    ReverseEntry,
    RegisterAgent,
    ChangeMaturity,
    SetBypass,
    IssueInvoice,
    DeliverInvoice,
    RecognizeRevenue,
    RecordPayment,
    VoidInvoice,
}

impl Action {
    pub fn name(self) -> &'static str {
        use Action::*;
        match self {
            IssueToken => "token.issue",
            RevokeToken => "token.revoke",
            RevokeAllTokens => "token.revoke_all",
            SubmitJob => "job.submit",
            StartJob => "job.start",
            CompleteJob => "job.complete",
            FailJob => "job.fail",
            CancelJob => "job.cancel",
            RetryJob => "job.retry",
            RequestApproval => "approval.request",
            ApproveApproval => "approval.approve",
            RejectApproval => "approval.reject",
            OpenAccount => "account.open",
            CloseAccount => "account.close",
            PostEntry => "entry.post",
            ReverseEntry => "entry.reverse",
            RegisterAgent => "agent.register",
            ChangeMaturity => "agent.change_maturity",
            SetBypass => "governance.bypass",
            IssueInvoice => "invoice.issue",
            DeliverInvoice => "invoice.deliver",
            RecognizeRevenue => "invoice.recognize",
            RecordPayment => "invoice.pay",
            VoidInvoice => "invoice.void",
        }
    }

    /// Whether the emergency bypass lets an agent do this without its maturity. The bypass
    /// covers an agent's work, never its powers: a maturity change is always held to the
    /// maturity the agent really has.
    pub fn bypassable(self) -> bool {
        use Action::*;
        match self {
            IssueToken | RevokeToken | RevokeAllTokens | SubmitJob | StartJob | CompleteJob
            | FailJob | CancelJob | RetryJob | RequestApproval | ApproveApproval
            | RejectApproval | OpenAccount | CloseAccount | PostEntry | ReverseEntry
            | SetBypass | IssueInvoice | DeliverInvoice | RecognizeRevenue | RecordPayment
            | VoidInvoice => true,
            RegisterAgent | ChangeMaturity => false,
        }
    }

    /// The complexity of the action when an agent asks for it; `None` for what agents may
    /// never do (approve or reject approvals, issue tokens, switch the bypass).
    pub fn complexity(self) -> Option<Complexity> {
        use Action::*;
        use Complexity::*;
        Some(match self {
            SubmitJob | StartJob | CompleteJob | FailJob | RequestApproval => Low,
            CancelJob | RetryJob | OpenAccount | IssueInvoice | VoidInvoice => Moderate,
            PostEntry | ReverseEntry | CloseAccount | RevokeToken | DeliverInvoice
            | RecognizeRevenue | RecordPayment => High,
            RevokeAllTokens | RegisterAgent | ChangeMaturity => Critical,
            ApproveApproval | RejectApproval | IssueToken | SetBypass => return None,
        })
    }
}

/// The least maturity that runs a command of this complexity alone.
pub fn required_maturity(c: Complexity) -> Maturity {
    match c {
        Complexity::Low => Maturity::Student,
        Complexity::Moderate => Maturity::Intern,
        Complexity::High => Maturity::Supervised,
        Complexity::Critical => Maturity::Autonomous,
    }
}

fn level(m: Maturity) -> i32 {
    match m {
        Maturity::Student => 0,
        Maturity::Intern => 1,
        Maturity::Supervised => 2,
        Maturity::Autonomous => 3,
    }
}

/// The outcome for an agent of `maturity` asking for a command of `complexity`, and why.
pub fn evaluate(maturity: Maturity, complexity: Complexity, bypass: bool) -> (Outcome, String) {
    let required = required_maturity(complexity);
    if bypass {
        return (Outcome::Bypassed, "the emergency bypass is on".to_owned());
    }
    let short = level(required) - level(maturity);
    let why = |verdict: &str| {
        format!(
            "{} needs {}; the agent is {}: {verdict}",
            complexity_name(complexity),
            required.as_str(),
            maturity.as_str()
        )
    };
    match short {
        s if s <= 0 => (Outcome::Allowed, why("allowed")),
        1 => (
            Outcome::Escalated,
            why("one level short, a human must approve"),
        ),
        _ => (Outcome::Denied, why("denied")),
    }
}

fn complexity_name(c: Complexity) -> &'static str {
    match c {
        Complexity::Low => "LOW",
        Complexity::Moderate => "MODERATE",
        Complexity::High => "HIGH",
        Complexity::Critical => "CRITICAL",
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetBypass {
    pub enabled: bool,
    pub reason: String,
    pub until: Option<DateTime<Utc>>,
    pub now: DateTime<Utc>,
}

/// The bypass switch.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Bypass {
    pub enabled: bool,
    pub until: Option<DateTime<Utc>>,
}

impl Bypass {
    pub fn active_at(&self, now: DateTime<Utc>) -> bool {
        self.enabled && self.until.is_none_or(|u| now < u)
    }
}

pub struct BypassDecider;

impl Decider for BypassDecider {
    type Command = SetBypass;
    type Event = GovernanceEvent;
    type State = Bypass;
    type Context = ();

    fn initial_state() -> Bypass {
        Bypass::default()
    }

    fn decide(c: &SetBypass, _state: &Bypass, _: &()) -> Result<Vec<GovernanceEvent>, Rejection> {
        require_text("reason", &c.reason, 2000)?;
        match (c.enabled, c.until) {
            (false, Some(_)) => {
                return Err(Rejection::invalid(
                    "until",
                    "until applies only when enabling the bypass",
                ));
            }
            (true, Some(until)) if until <= c.now => {
                return Err(Rejection::invalid("until", "until must be in the future"));
            }
            _ => {}
        }
        Ok(vec![
            GovernanceBypassChanged {
                enabled: c.enabled,
                reason: c.reason.clone(),
                until: c.until,
            }
            .into(),
        ])
    }

    fn evolve(_state: Bypass, event: &GovernanceEvent) -> Bypass {
        match event {
            GovernanceEvent::GovernanceBypassChanged(e) => Bypass {
                enabled: e.enabled,
                until: e.until,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_table() {
        use Action::*;
        use Maturity::*;
        let cases = [
            (StartJob, Student, Outcome::Allowed),
            (CancelJob, Student, Outcome::Escalated),
            (OpenAccount, Intern, Outcome::Allowed),
            (PostEntry, Intern, Outcome::Escalated),
            (PostEntry, Student, Outcome::Denied),
            (CloseAccount, Supervised, Outcome::Allowed),
            (RevokeToken, Autonomous, Outcome::Allowed),
            (RegisterAgent, Supervised, Outcome::Escalated),
            (ChangeMaturity, Intern, Outcome::Denied),
            (RevokeAllTokens, Autonomous, Outcome::Allowed),
            (IssueInvoice, Intern, Outcome::Allowed),
            (IssueInvoice, Student, Outcome::Escalated),
            (VoidInvoice, Intern, Outcome::Allowed),
            (DeliverInvoice, Intern, Outcome::Escalated),
            (RecognizeRevenue, Supervised, Outcome::Allowed),
            (RecordPayment, Student, Outcome::Denied),
        ];
        for (action, maturity, outcome) in cases {
            let c = action.complexity().unwrap();
            assert_eq!(
                evaluate(maturity, c, false).0,
                outcome,
                "{action:?} as {maturity:?}"
            );
            assert_eq!(evaluate(maturity, c, true).0, Outcome::Bypassed);
        }
        for never in [ApproveApproval, RejectApproval, IssueToken, SetBypass] {
            assert_eq!(never.complexity(), None);
        }
        assert!(!ChangeMaturity.bypassable() && !RegisterAgent.bypassable());
        assert!(PostEntry.bypassable());
    }

    #[test]
    fn switching_the_bypass() {
        use crate::spec::Spec;
        let now: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let until = now + chrono::Duration::hours(1);
        let set = |enabled, until| SetBypass {
            enabled,
            reason: "incident 42".into(),
            until,
            now,
        };
        let changed = |enabled, until| -> GovernanceEvent {
            GovernanceBypassChanged {
                enabled,
                reason: "incident 42".into(),
                until,
            }
            .into()
        };
        BypassDecider::given([])
            .when(set(true, Some(until)))
            .then([changed(true, Some(until))]);
        BypassDecider::given([changed(true, None)])
            .when(set(false, None))
            .then([changed(false, None)]);
        BypassDecider::given([])
            .when(set(true, Some(now)))
            .then_invalid("until");
        BypassDecider::given([])
            .when(set(false, Some(until)))
            .then_invalid("until");
        BypassDecider::given([])
            .when(SetBypass {
                reason: " ".into(),
                ..set(true, None)
            })
            .then_invalid("reason");
    }

    #[test]
    fn the_bypass_holds_only_while_on_and_before_until() {
        let now: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let until = now + chrono::Duration::hours(1);
        let on = BypassDecider::evolve(
            Bypass::default(),
            &GovernanceBypassChanged {
                enabled: true,
                reason: "r".into(),
                until: Some(until),
            }
            .into(),
        );
        assert!(on.active_at(now));
        assert!(!on.active_at(until));
        let off = BypassDecider::evolve(
            on,
            &GovernanceBypassChanged {
                enabled: false,
                reason: "r".into(),
                until: None,
            }
            .into(),
        );
        assert!(!off.active_at(now));
    }
}
