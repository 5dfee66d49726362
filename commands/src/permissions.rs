//! Who may do what: one table per role over every command and every kind of read, with no
//! wildcard, so that a new command does not compile until its roles are stated; and the
//! scopes a token may carry to narrow its role's powers.
//!
//! A token without scopes has its role's full powers. A token with scopes may do only what
//! its role allows *and* one of its scopes covers: `<area>:write` covers the commands of an
//! area, `<area>:read` its queries, `<area>:*` both, `*` everything. Revoking one's own
//! tokens is always allowed, whatever the scopes (a holder must always be able to give a
//! credential up). Agents are further held to governance (see [`crate::governance`]).

use chronicle_events::Domain;
use chronicle_events::domain::user::Role;

use crate::command::Command;
use crate::governance::Action;

/// Who is asking: the subject of a verified token (or the system itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: String,
    pub role: Role,
    /// Empty: the role's full powers.
    pub scopes: Vec<String>,
}

impl Principal {
    pub fn new(user_id: impl Into<String>, role: Role, scopes: Vec<String>) -> Self {
        Principal {
            user_id: user_id.into(),
            role,
            scopes,
        }
    }

    /// Chronicle itself (`chronicle token issue`, start-up): an administrator.
    pub fn system(name: &str) -> Self {
        Principal::new(name, Role::Admin, vec![])
    }

    /// The agent a token of role `agent` belongs to.
    pub fn agent_id(&self) -> Option<&str> {
        (self.role == Role::Agent).then_some(self.user_id.as_str())
    }
}

/// The areas scopes name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    Tokens,
    Jobs,
    Approvals,
    Ledger,
    Invoices,
    Agents,
    Governance,
    Audit,
}

impl Area {
    pub const ALL: [Area; 8] = [
        Area::Tokens,
        Area::Jobs,
        Area::Approvals,
        Area::Ledger,
        Area::Invoices,
        Area::Agents,
        Area::Governance,
        Area::Audit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Area::Tokens => "tokens",
            Area::Jobs => "jobs",
            Area::Approvals => "approvals",
            Area::Ledger => "ledger",
            Area::Invoices => "invoices",
            Area::Agents => "agents",
            Area::Governance => "governance",
            Area::Audit => "audit",
        }
    }
}

/// Whether `scope` is one a token may carry.
pub fn valid_scope(scope: &str) -> bool {
    if scope == "*" {
        return true;
    }
    let Some((area, access)) = scope.split_once(':') else {
        return false;
    };
    Area::ALL.iter().any(|a| a.as_str() == area) && matches!(access, "read" | "write" | "*")
}

/// Every scope a token may carry, for messages and documentation.
pub fn all_scopes() -> Vec<String> {
    let mut out = vec!["*".to_owned()];
    for a in Area::ALL {
        for access in ["read", "write", "*"] {
            out.push(format!("{}:{access}", a.as_str()));
        }
    }
    out
}

fn covers(scopes: &[String], area: Area, access: &str) -> bool {
    scopes.is_empty()
        || scopes.iter().any(|s| {
            s == "*"
                || s.split_once(':')
                    .is_some_and(|(a, x)| a == area.as_str() && (x == access || x == "*"))
        })
}

/// What a role may do with one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Allowed,
    Never,
    /// Only on the caller's own tokens.
    OwnOnly,
    /// An agent's: allowed as far as governance allows.
    Governed,
    /// An agent's: governed, but never about the agent itself (its own maturity).
    GovernedNotSelf,
}

/// The table: what `role` may do with `action`.
pub fn rule(role: Role, action: Action) -> Rule {
    use Action::*;
    use Rule::*;
    match role {
        Role::Admin => match action {
            IssueToken | RevokeToken | RevokeAllTokens | SubmitJob | StartJob | CompleteJob
            | FailJob | CancelJob | RetryJob | RequestApproval | ApproveApproval
            | RejectApproval | OpenAccount | CloseAccount | PostEntry | ReverseEntry
            | RegisterAgent | ChangeMaturity | SetBypass | IssueInvoice | DeliverInvoice
            | RecognizeRevenue | RecordPayment | VoidInvoice => Allowed,
        },
        Role::Writer => match action {
            SubmitJob | StartJob | CompleteJob | FailJob | CancelJob | RetryJob
            | RequestApproval | ApproveApproval | RejectApproval | OpenAccount | CloseAccount
            | PostEntry | ReverseEntry | IssueInvoice | DeliverInvoice | RecognizeRevenue
            | RecordPayment | VoidInvoice => Allowed,
            RevokeToken | RevokeAllTokens => OwnOnly,
            IssueToken | RegisterAgent | ChangeMaturity | SetBypass => Never,
        },
        Role::Analyst | Role::Auditor => match action {
            RevokeToken | RevokeAllTokens => OwnOnly,
            IssueToken | SubmitJob | StartJob | CompleteJob | FailJob | CancelJob | RetryJob
            | RequestApproval | ApproveApproval | RejectApproval | OpenAccount | CloseAccount
            | PostEntry | ReverseEntry | RegisterAgent | ChangeMaturity | SetBypass
            | IssueInvoice | DeliverInvoice | RecognizeRevenue | RecordPayment | VoidInvoice => {
                Never
            }
        },
        // An agent works; it never widens anyone's powers: it does not issue tokens,
        // decide approvals, register agents, switch the bypass or change its own maturity.
        Role::Agent => match action {
            RevokeToken | RevokeAllTokens | SubmitJob | StartJob | CompleteJob | FailJob
            | CancelJob | RetryJob | RequestApproval | OpenAccount | CloseAccount | PostEntry
            | ReverseEntry | IssueInvoice | DeliverInvoice | RecognizeRevenue | RecordPayment
            | VoidInvoice => Governed,
            ChangeMaturity => GovernedNotSelf,
            IssueToken | ApproveApproval | RejectApproval | RegisterAgent | SetBypass => Never,
        },
    }
}

/// The area a command belongs to.
pub fn area(command: &Command) -> Area {
    use Command::*;
    match command {
        IssueToken { .. } | RevokeToken { .. } | RevokeAllTokens { .. } => Area::Tokens,
        SubmitJob { .. }
        | StartJob { .. }
        | CompleteJob { .. }
        | FailJob { .. }
        | CancelJob { .. }
        | RetryJob { .. } => Area::Jobs,
        RequestApproval { .. } | ApproveApproval { .. } | RejectApproval { .. } => Area::Approvals,
        OpenAccount { .. } | CloseAccount { .. } | PostEntry { .. } | ReverseEntry { .. } => {
            Area::Ledger
        }
        RegisterAgent { .. } | ChangeMaturity { .. } => Area::Agents,
        SetBypass { .. } => Area::Governance,
        IssueInvoice { .. }
        | DeliverInvoice { .. }
        | RecognizeRevenue { .. }
        | RecordPayment { .. }
        | VoidInvoice { .. } => Area::Invoices,
    }
}

/// The user whose tokens a command is about, if it is about tokens of a user.
fn token_owner(command: &Command) -> Option<&str> {
    match command {
        Command::RevokeToken { user_id, .. } | Command::RevokeAllTokens { user_id, .. } => {
            Some(user_id)
        }
        _ => None,
    }
}

/// Whether `principal` may run `command` (governance aside). `Err` says why not.
pub fn may_run(principal: &Principal, command: &Command) -> Result<(), String> {
    let action = command.action();
    let own_tokens = token_owner(command) == Some(principal.user_id.as_str());
    let refused = || {
        format!(
            "the {} role may not {}",
            principal.role.as_str(),
            action.name()
        )
    };
    let allowed = match rule(principal.role, action) {
        Rule::Allowed | Rule::Governed => true,
        Rule::OwnOnly => own_tokens,
        Rule::Never => false,
        Rule::GovernedNotSelf => match command {
            Command::ChangeMaturity { agent_id, .. } if agent_id == &principal.user_id => {
                return Err("an agent may never change its own maturity".into());
            }
            _ => true,
        },
    };
    if !allowed {
        return Err(refused());
    }
    if own_tokens || covers(&principal.scopes, area(command), "write") {
        Ok(())
    } else {
        Err(format!(
            "the token's scopes ({}) do not cover {} (needs {}:write)",
            principal.scopes.join(" "),
            action.name(),
            area(command).as_str()
        ))
    }
}

/// What a read is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    Tokens,
    Jobs,
    Approvals,
    Ledger,
    /// Invoices and the revenue report.
    Invoices,
    Agents,
    /// Where the projections stand: any reader may ask.
    Projections,
    Audit,
}

/// Whether `principal` may read `what`. `Err` says why not.
pub fn may_read(principal: &Principal, what: Read) -> Result<(), String> {
    let role_may = match what {
        Read::Tokens
        | Read::Jobs
        | Read::Approvals
        | Read::Ledger
        | Read::Invoices
        | Read::Agents
        | Read::Projections => match principal.role {
            Role::Analyst | Role::Auditor | Role::Admin => true,
            Role::Writer | Role::Agent => false,
        },
        Read::Audit => match principal.role {
            Role::Auditor | Role::Admin => true,
            Role::Analyst | Role::Writer | Role::Agent => false,
        },
    };
    if !role_may {
        return Err(format!(
            "the {} role may not do this",
            principal.role.as_str()
        ));
    }
    let area = match what {
        Read::Tokens => Area::Tokens,
        Read::Jobs => Area::Jobs,
        Read::Approvals => Area::Approvals,
        Read::Ledger => Area::Ledger,
        Read::Invoices => Area::Invoices,
        Read::Agents => Area::Agents,
        Read::Audit => Area::Audit,
        Read::Projections => return Ok(()),
    };
    if covers(&principal.scopes, area, "read") {
        Ok(())
    } else {
        Err(format!(
            "the token's scopes ({}) do not cover this read (needs {}:read)",
            principal.scopes.join(" "),
            area.as_str()
        ))
    }
}

/// What a role sees of a domain's live events (`GET /v1/subscribe`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sight {
    /// Every stream of the domain.
    Every,
    /// Only the caller's own aggregates, each named: an agent's jobs, the approvals
    /// carrying its escalated commands, its own stream.
    Own,
    Nothing,
}

/// The table of live sight: role by domain, with no wildcard.
pub fn sight(role: Role, domain: Domain) -> Sight {
    use Domain::*;
    match role {
        Role::Admin | Role::Auditor => match domain {
            User | Job | Approval | Chart | Entry | Agent | Invoice | Governance | Seal => {
                Sight::Every
            }
        },
        Role::Writer | Role::Analyst => match domain {
            Job | Approval | Chart | Entry | Invoice | Agent | Governance => Sight::Every,
            User | Seal => Sight::Nothing,
        },
        Role::Agent => match domain {
            Job | Approval | Agent => Sight::Own,
            User | Chart | Entry | Invoice | Governance | Seal => Sight::Nothing,
        },
    }
}

/// The area whose scopes cover reading a domain.
pub fn domain_area(domain: Domain) -> Area {
    match domain {
        Domain::User => Area::Tokens,
        Domain::Job => Area::Jobs,
        Domain::Approval => Area::Approvals,
        Domain::Chart | Domain::Entry => Area::Ledger,
        Domain::Invoice => Area::Invoices,
        Domain::Agent => Area::Agents,
        Domain::Governance => Area::Governance,
        Domain::Seal => Area::Audit,
    }
}

/// What `principal` sees of `domain` live: the role's sight, narrowed to nothing when the
/// token's scopes do not cover reading the domain.
pub fn may_subscribe(principal: &Principal, domain: Domain) -> Sight {
    if covers(&principal.scopes, domain_area(domain), "read") {
        sight(principal.role, domain)
    } else {
        Sight::Nothing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(role: Role, scopes: &[&str]) -> Principal {
        Principal::new("u1", role, scopes.iter().map(|s| s.to_string()).collect())
    }

    /// A command of each action: an exhaustive match, so that a new action has an example
    /// (and is in every table test below) before it compiles.
    fn example(action: Action) -> Command {
        use chronicle_events::domain::agent::Maturity;
        use chronicle_events::domain::chart::AccountType;
        use chronicle_events::domain::invoice::{InvoiceLine, Recognition};
        use chronicle_events::domain::money::MinorUnits;
        let id = || "x".to_owned();
        let day = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        match action {
            Action::IssueToken => Command::IssueToken {
                user_id: id(),
                role: Role::Writer,
                scopes: vec![],
                ttl_seconds: None,
            },
            Action::RevokeToken => Command::RevokeToken {
                user_id: id(),
                jti: uuid::Uuid::nil(),
                reason: id(),
            },
            Action::RevokeAllTokens => Command::RevokeAllTokens {
                user_id: id(),
                reason: id(),
            },
            Action::SubmitJob => Command::SubmitJob {
                job_id: id(),
                agent_id: id(),
                kind: id(),
                input: json!({}),
            },
            Action::StartJob => Command::StartJob { job_id: id() },
            Action::CompleteJob => Command::CompleteJob {
                job_id: id(),
                result: json!(1),
            },
            Action::FailJob => Command::FailJob {
                job_id: id(),
                error: id(),
            },
            Action::CancelJob => Command::CancelJob {
                job_id: id(),
                reason: id(),
            },
            Action::RetryJob => Command::RetryJob { job_id: id() },
            Action::RequestApproval => Command::RequestApproval {
                approval_id: id(),
                action: id(),
                payload: json!({}),
                reason: id(),
            },
            Action::ApproveApproval => Command::ApproveApproval {
                approval_id: id(),
                reason: None,
            },
            Action::RejectApproval => Command::RejectApproval {
                approval_id: id(),
                reason: id(),
            },
            Action::OpenAccount => Command::OpenAccount {
                code: id(),
                name: id(),
                account_type: AccountType::Asset,
                currency: "EUR".into(),
            },
            Action::CloseAccount => Command::CloseAccount { code: id() },
            Action::PostEntry => Command::PostEntry {
                entry_id: id(),
                effective_date: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
                memo: id(),
                lines: vec![],
            },
            Action::ReverseEntry => Command::ReverseEntry {
                entry_id: id(),
                reversal_entry_id: id(),
                reason: id(),
            },
            Action::RegisterAgent => Command::RegisterAgent {
                agent_id: id(),
                name: id(),
                maturity: Maturity::Student,
            },
            Action::ChangeMaturity => Command::ChangeMaturity {
                agent_id: id(),
                maturity: Maturity::Intern,
                reason: id(),
            },
            Action::SetBypass => Command::SetBypass {
                enabled: true,
                reason: id(),
                until: None,
            },
            Action::IssueInvoice => Command::IssueInvoice {
                invoice_id: id(),
                customer: id(),
                currency: "EUR".into(),
                issue_date: day,
                lines: vec![InvoiceLine {
                    description: id(),
                    amount: MinorUnits(1),
                }],
                recognition: Recognition::OnDelivery,
                accounts: crate::invoice::default_accounts(),
            },
            Action::DeliverInvoice => Command::DeliverInvoice {
                invoice_id: id(),
                delivered_on: day,
            },
            Action::RecognizeRevenue => Command::RecognizeRevenue {
                invoice_id: id(),
                through: day,
            },
            Action::RecordPayment => Command::RecordPayment {
                invoice_id: id(),
                amount: MinorUnits(1),
                paid_on: day,
            },
            Action::VoidInvoice => Command::VoidInvoice {
                invoice_id: id(),
                reason: id(),
            },
        }
    }

    fn one_of_each() -> Vec<Command> {
        use strum::IntoEnumIterator;
        Action::iter().map(example).collect()
    }

    /// The roles table, as the README states it: which commands each role may run on
    /// someone else's aggregates (`x`, not the caller `u1`).
    #[test]
    fn the_roles_table() {
        use Action::*;
        let expect = |role: Role, allowed: &[Action]| {
            for c in one_of_each() {
                let ok = may_run(&p(role, &[]), &c).is_ok();
                assert_eq!(
                    ok,
                    allowed.contains(&c.action()),
                    "{role:?} {:?}",
                    c.action()
                );
            }
        };
        let all: Vec<Action> = one_of_each().iter().map(Command::action).collect();
        assert_eq!(all.len(), 24, "one command of each kind");
        expect(Role::Admin, &all);
        expect(
            Role::Writer,
            &[
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
                IssueInvoice,
                DeliverInvoice,
                RecognizeRevenue,
                RecordPayment,
                VoidInvoice,
            ],
        );
        expect(Role::Analyst, &[]);
        expect(Role::Auditor, &[]);
        expect(
            Role::Agent,
            &[
                RevokeToken,
                RevokeAllTokens,
                SubmitJob,
                StartJob,
                CompleteJob,
                FailJob,
                CancelJob,
                RetryJob,
                RequestApproval,
                OpenAccount,
                CloseAccount,
                PostEntry,
                ReverseEntry,
                ChangeMaturity,
                IssueInvoice,
                DeliverInvoice,
                RecognizeRevenue,
                RecordPayment,
                VoidInvoice,
            ],
        );
    }

    #[test]
    fn everyone_may_revoke_their_own_tokens_whatever_their_scopes() {
        let own = Command::RevokeAllTokens {
            user_id: "u1".into(),
            reason: "r".into(),
        };
        for role in [
            Role::Admin,
            Role::Writer,
            Role::Analyst,
            Role::Auditor,
            Role::Agent,
        ] {
            assert!(may_run(&p(role, &["jobs:read"]), &own).is_ok(), "{role:?}");
        }
    }

    #[test]
    fn an_agent_never_changes_its_own_maturity() {
        let own = Command::ChangeMaturity {
            agent_id: "u1".into(),
            maturity: chronicle_events::domain::agent::Maturity::Autonomous,
            reason: "r".into(),
        };
        assert!(may_run(&p(Role::Agent, &[]), &own).is_err());
        assert!(may_run(&p(Role::Admin, &[]), &own).is_ok());
    }

    #[test]
    fn scopes_narrow_a_role_and_never_widen_it() {
        let post = one_of_each()
            .into_iter()
            .find(|c| c.action() == Action::PostEntry)
            .unwrap();
        let start = Command::StartJob { job_id: "j".into() };
        let w = p(Role::Writer, &["jobs:write"]);
        assert!(may_run(&w, &start).is_ok());
        assert!(may_run(&w, &post).is_err());
        assert!(may_run(&p(Role::Writer, &["ledger:*"]), &post).is_ok());
        assert!(may_run(&p(Role::Writer, &["*"]), &post).is_ok());
        assert!(may_run(&p(Role::Writer, &["jobs:read"]), &start).is_err());
        // A scope never gives what the role does not have.
        let issue = one_of_each()
            .into_iter()
            .find(|c| c.action() == Action::IssueToken)
            .unwrap();
        assert!(may_run(&p(Role::Writer, &["tokens:write"]), &issue).is_err());

        assert!(may_read(&p(Role::Analyst, &["jobs:read"]), Read::Jobs).is_ok());
        assert!(may_read(&p(Role::Analyst, &["jobs:read"]), Read::Ledger).is_err());
        assert!(may_read(&p(Role::Analyst, &["jobs:write"]), Read::Jobs).is_err());
        assert!(may_read(&p(Role::Analyst, &[]), Read::Audit).is_err());
        assert!(may_read(&p(Role::Auditor, &["audit:read"]), Read::Audit).is_ok());
        assert!(may_read(&p(Role::Writer, &[]), Read::Jobs).is_err());
        assert!(may_read(&p(Role::Analyst, &["jobs:read"]), Read::Projections).is_ok());
    }

    /// The contract's table of who sees what live.
    #[test]
    fn the_live_sight_table() {
        use Domain::*;
        let seen = |role: Role, sight_: Sight| -> Vec<Domain> {
            Domain::ALL
                .into_iter()
                .filter(|d| sight(role, *d) == sight_)
                .collect()
        };
        assert_eq!(seen(Role::Admin, Sight::Every), Domain::ALL.to_vec());
        assert_eq!(seen(Role::Auditor, Sight::Every), Domain::ALL.to_vec());
        for role in [Role::Writer, Role::Analyst] {
            assert_eq!(
                seen(role, Sight::Every),
                [Job, Approval, Chart, Entry, Agent, Invoice, Governance]
            );
        }
        assert_eq!(seen(Role::Agent, Sight::Own), [Job, Approval, Agent]);
        assert!(seen(Role::Agent, Sight::Every).is_empty());
        // Scopes narrow it.
        let scoped = p(Role::Analyst, &["jobs:read"]);
        assert_eq!(may_subscribe(&scoped, Job), Sight::Every);
        assert_eq!(may_subscribe(&scoped, Entry), Sight::Nothing);
        assert_eq!(may_subscribe(&p(Role::Analyst, &[]), Entry), Sight::Every);
    }

    #[test]
    fn only_known_scopes_are_valid() {
        for s in all_scopes() {
            assert!(valid_scope(&s), "{s}");
        }
        for bad in [
            "jobs",
            "jobs:delete",
            "payroll:read",
            "",
            "jobs:write:x",
            "**",
        ] {
            assert!(!valid_scope(bad), "{bad}");
        }
    }
}
