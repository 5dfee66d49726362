//! The read models: one projection per group of tables, each turning an event into the
//! SQL statements that fold it in. Statements only write (no read-modify-write), so a
//! batch can be sent pipelined, in order, inside one transaction.

use chronicle_events::domain::invoice::Recognition;
use chronicle_events::domain::{
    AgentEvent, ApprovalEvent, ChartEvent, EntryEvent, Event, InvoiceEvent, JobEvent, UserEvent,
};
use chronicle_events::{Domain, RecordedEvent};
use tokio_postgres::types::ToSql;

/// One statement with its parameters.
pub struct Stmt {
    pub sql: &'static str,
    pub params: Vec<Box<dyn ToSql + Sync + Send>>,
}

macro_rules! stmt {
    ($sql:expr $(, $p:expr)* $(,)?) => {
        Stmt { sql: $sql, params: vec![$(Box::new($p) as Box<dyn ToSql + Sync + Send>),*] }
    };
}

/// A read model: the events it folds and how. Its SQL names tables without a schema:
/// the runtime sets `search_path` to `read` (or, during a rebuild, to the schema the new
/// tables are built in).
pub trait Projection: Send + Sync + 'static {
    /// Its name: the key of its checkpoint.
    fn name(&self) -> &'static str;
    /// The domains whose events it folds; it skips the others (but moves past them).
    fn domains(&self) -> &'static [Domain];
    /// The tables it owns, in an order in which they can be emptied.
    fn tables(&self) -> &'static [&'static str];
    /// The statements that fold `event` in.
    fn apply(&self, recorded: &RecordedEvent, event: &Event, out: &mut Vec<Stmt>);
    /// The statements that fold a batch of events (in log order, of this projection's
    /// domains) in. By default each event's own statements; a projection may coalesce
    /// them (a few set-based statements for the whole batch) provided the tables end up
    /// exactly as if each event had been applied in turn, and a batch holding an event
    /// that [`Projection::apply`] would have the database refuse is refused too (the
    /// runtime then applies the batch one event at a time to find it).
    fn apply_batch(&self, events: &[(&RecordedEvent, Event)], out: &mut Vec<Stmt>) {
        for (r, e) in events {
            self.apply(r, e, out);
        }
    }
}

/// Every projection, by name.
pub fn all() -> Vec<Box<dyn Projection>> {
    vec![
        Box::new(Tokens),
        Box::new(Jobs),
        Box::new(Approvals),
        Box::new(Ledger),
        Box::new(Agents),
    ]
}

pub const NAMES: [&str; 5] = ["tokens", "jobs", "approvals", "ledger", "agents"];

fn pos(e: &RecordedEvent) -> i64 {
    e.position as i64
}

/// Tokens by user and by id.
pub struct Tokens;

impl Projection for Tokens {
    fn name(&self) -> &'static str {
        "tokens"
    }
    fn domains(&self) -> &'static [Domain] {
        &[Domain::User]
    }
    fn tables(&self) -> &'static [&'static str] {
        &["tokens"]
    }
    fn apply(&self, r: &RecordedEvent, event: &Event, out: &mut Vec<Stmt>) {
        let Event::User(e) = event else { return };
        let user = r.envelope.stream.id().to_owned();
        match e {
            UserEvent::TokenIssued(t) => out.push(stmt!(
                "INSERT INTO tokens (jti, user_id, role, scopes, issued_at, expires_at, seq, position)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                t.jti,
                user,
                t.role.as_str(),
                t.scopes.clone(),
                t.issued_at,
                t.expires_at,
                pos(r),
            )),
            UserEvent::TokenRevoked(t) => out.push(stmt!(
                "UPDATE tokens SET revoked_at = $2, revoke_reason = $3, position = $4
                 WHERE jti = $1 AND revoked_at IS NULL",
                t.jti,
                r.envelope.occurred_at,
                t.reason.clone(),
                pos(r),
            )),
            UserEvent::AllTokensRevoked(t) => out.push(stmt!(
                "UPDATE tokens SET revoked_at = $2, revoke_reason = $3, position = $4
                 WHERE jti = ANY($1) AND revoked_at IS NULL",
                t.jtis.clone(),
                r.envelope.occurred_at,
                t.reason.clone(),
                pos(r),
            )),
        }
    }
}

/// Jobs with their status history.
pub struct Jobs;

impl Projection for Jobs {
    fn name(&self) -> &'static str {
        "jobs"
    }
    fn domains(&self) -> &'static [Domain] {
        &[Domain::Job]
    }
    fn tables(&self) -> &'static [&'static str] {
        &["job_history", "jobs"]
    }
    fn apply_batch(&self, events: &[(&RecordedEvent, Event)], out: &mut Vec<Stmt>) {
        crate::coalesce::jobs(events, out);
    }
    fn apply(&self, r: &RecordedEvent, event: &Event, out: &mut Vec<Stmt>) {
        let Event::Job(e) = event else { return };
        let job = r.envelope.stream.id().to_owned();
        let at = r.envelope.occurred_at;
        let version = r.version as i64;
        let status = match e {
            JobEvent::JobSubmitted(s) => {
                out.push(stmt!(
                    "INSERT INTO jobs (job_id, agent_id, kind, status, input, submitted_at, updated_at, version, seq, position)
                     VALUES ($1, $2, $3, 'PENDING', $4, $5, $5, $6, $7, $7)",
                    job.clone(),
                    s.agent_id.clone(),
                    s.kind.clone(),
                    s.input.clone(),
                    at,
                    version,
                    pos(r),
                ));
                "PENDING"
            }
            JobEvent::JobStarted(_) => {
                out.push(stmt!(
                    "UPDATE jobs SET status = 'RUNNING', updated_at = $2, version = $3, position = $4 WHERE job_id = $1",
                    job.clone(), at, version, pos(r),
                ));
                "RUNNING"
            }
            JobEvent::JobCompleted(c) => {
                out.push(stmt!(
                    "UPDATE jobs SET status = 'COMPLETED', result = $5, updated_at = $2, version = $3, position = $4 WHERE job_id = $1",
                    job.clone(), at, version, pos(r), c.result.clone(),
                ));
                "COMPLETED"
            }
            JobEvent::JobFailed(f) => {
                out.push(stmt!(
                    "UPDATE jobs SET status = 'FAILED', error = $5, updated_at = $2, version = $3, position = $4 WHERE job_id = $1",
                    job.clone(), at, version, pos(r), f.error.clone(),
                ));
                "FAILED"
            }
            JobEvent::JobCancelled(c) => {
                out.push(stmt!(
                    "UPDATE jobs SET status = 'CANCELLED', cancel_reason = $5, updated_at = $2, version = $3, position = $4 WHERE job_id = $1",
                    job.clone(), at, version, pos(r), c.reason.clone(),
                ));
                "CANCELLED"
            }
            JobEvent::JobRetried(_) => {
                out.push(stmt!(
                    "UPDATE jobs SET status = 'PENDING', error = NULL, result = NULL, updated_at = $2, version = $3, position = $4 WHERE job_id = $1",
                    job.clone(), at, version, pos(r),
                ));
                "PENDING"
            }
        };
        out.push(stmt!(
            "INSERT INTO job_history (job_id, version, event_type, status, actor_kind, actor_id, detail, occurred_at, position)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            job,
            version,
            r.envelope.event_type.clone(),
            status,
            r.envelope.actor.kind.as_str(),
            r.envelope.actor.id.clone(),
            r.envelope.data.clone(),
            at,
            pos(r),
        ));
    }
}

/// Approvals and their decisions.
pub struct Approvals;

impl Projection for Approvals {
    fn name(&self) -> &'static str {
        "approvals"
    }
    fn domains(&self) -> &'static [Domain] {
        &[Domain::Approval]
    }
    fn tables(&self) -> &'static [&'static str] {
        &["approvals"]
    }
    fn apply(&self, r: &RecordedEvent, event: &Event, out: &mut Vec<Stmt>) {
        let Event::Approval(e) = event else { return };
        let id = r.envelope.stream.id().to_owned();
        let at = r.envelope.occurred_at;
        let who = r.envelope.actor.id.clone();
        match e {
            ApprovalEvent::ApprovalRequested(a) => out.push(stmt!(
                "INSERT INTO approvals (approval_id, action, payload, reason, status, requested_by, requested_at, agent_id, escalated_command_id, seq, position)
                 VALUES ($1, $2, $3, $4, 'PENDING', $5, $6, $7, $8, $9, $9)",
                id,
                a.action.clone(),
                a.payload.clone(),
                a.reason.clone(),
                who,
                at,
                a.agent_id.clone(),
                a.escalated_command_id,
                pos(r),
            )),
            ApprovalEvent::ApprovalGranted(a) => out.push(stmt!(
                "UPDATE approvals SET status = 'APPROVED', decided_by = $2, decided_at = $3, decision_reason = $4, position = $5 WHERE approval_id = $1",
                id,
                who,
                at,
                a.reason.clone(),
                pos(r),
            )),
            ApprovalEvent::ApprovalRejected(a) => out.push(stmt!(
                "UPDATE approvals SET status = 'REJECTED', decided_by = $2, decided_at = $3, decision_reason = $4, position = $5 WHERE approval_id = $1",
                id,
                who,
                at,
                Some(a.reason.clone()),
                pos(r),
            )),
        }
    }
}

/// The chart of accounts with balances, journal entries and their lines, and invoices: one
/// projection, so that an invoice and the entries it posted are exact as of the same
/// position.
pub struct Ledger;

impl Projection for Ledger {
    fn name(&self) -> &'static str {
        "ledger"
    }
    fn domains(&self) -> &'static [Domain] {
        &[Domain::Chart, Domain::Entry, Domain::Invoice]
    }
    fn tables(&self) -> &'static [&'static str] {
        &["invoices", "journal_lines", "journal_entries", "accounts"]
    }
    fn apply(&self, r: &RecordedEvent, event: &Event, out: &mut Vec<Stmt>) {
        let at = r.envelope.occurred_at;
        match event {
            Event::Chart(ChartEvent::AccountOpened(a)) => out.push(stmt!(
                "INSERT INTO accounts (code, name, type, currency, status, opened_at, seq, position)
                 VALUES ($1, $2, $3, $4, 'OPEN', $5, $6, $6)",
                a.code.clone(),
                a.name.clone(),
                a.account_type.as_str(),
                a.currency.clone(),
                at,
                pos(r),
            )),
            Event::Chart(ChartEvent::AccountClosed(_)) => out.push(stmt!(
                "UPDATE accounts SET status = 'CLOSED', closed_at = $2, position = $3 WHERE code = $1",
                r.envelope.stream.id().to_owned(),
                at,
                pos(r),
            )),
            Event::Entry(EntryEvent::JournalEntryPosted(p)) => {
                out.push(stmt!(
                    "INSERT INTO journal_entries (entry_id, effective_date, memo, reverses, posted_by, posted_at, source, seq, position)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
                    p.entry_id.clone(),
                    p.effective_date,
                    p.memo.clone(),
                    p.reverses.clone(),
                    r.envelope.actor.id.clone(),
                    at,
                    p.source.clone(),
                    pos(r),
                ));
                for (i, line) in p.lines.iter().enumerate() {
                    let debit = line.debit.map(|m| m.0);
                    let credit = line.credit.map(|m| m.0);
                    out.push(stmt!(
                        "INSERT INTO journal_lines (entry_id, line_no, account, debit, credit, currency, effective_date, source, seq)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                        p.entry_id.clone(),
                        i as i32 + 1,
                        line.account.clone(),
                        debit,
                        credit,
                        line.currency.clone(),
                        p.effective_date,
                        p.source.clone(),
                        pos(r),
                    ));
                    out.push(stmt!(
                        "UPDATE accounts SET debits = debits + COALESCE($2::bigint, 0), credits = credits + COALESCE($3::bigint, 0), position = $4 WHERE code = $1",
                        line.account.clone(),
                        debit,
                        credit,
                        pos(r),
                    ));
                }
            }
            Event::Entry(EntryEvent::JournalEntryReversed(e)) => out.push(stmt!(
                "UPDATE journal_entries SET reversed_by = $2, reverse_reason = $3, position = $4 WHERE entry_id = $1",
                r.envelope.stream.id().to_owned(),
                e.reversal_entry_id.clone(),
                e.reason.clone(),
                pos(r),
            )),
            Event::Invoice(e) => invoice(r, e, out),
            _ => {}
        }
    }
}

/// An invoice's row: amounts moved by increments, so each statement only writes.
fn invoice(r: &RecordedEvent, event: &InvoiceEvent, out: &mut Vec<Stmt>) {
    let at = r.envelope.occurred_at;
    let id = r.envelope.stream.id().to_owned();
    match event {
        InvoiceEvent::InvoiceIssued(i) => {
            let (method, start, months) = match i.recognition {
                Recognition::OnDelivery => ("ON_DELIVERY", None, None),
                Recognition::Ratable { start, months } => {
                    ("RATABLE", Some(start), Some(months as i32))
                }
            };
            out.push(stmt!(
                "INSERT INTO invoices (invoice_id, customer, currency, issue_date, status, method, start_date, months, lines,
                                       total, deferred, outstanding, receivable_account, deferred_account, revenue_account,
                                       cash_account, entry_ids, issued_by, issued_at, updated_at, seq, position)
                 VALUES ($1, $2, $3, $4, 'DRAFT', $5, $6, $7, $8, $9, $9, $9, $10, $11, $12, $13, ARRAY[$14::text], $15, $16, $16, $17, $17)",
                id,
                i.customer.clone(),
                i.currency.clone(),
                i.issue_date,
                method,
                start,
                months,
                serde_json::to_value(&i.lines).unwrap_or_default(),
                i.total.0,
                i.accounts.receivable.clone(),
                i.accounts.deferred.clone(),
                i.accounts.revenue.clone(),
                i.accounts.cash.clone(),
                i.entry_id.clone(),
                r.envelope.actor.id.clone(),
                at,
                pos(r),
            ));
        }
        InvoiceEvent::RevenueRecognized(e) => out.push(stmt!(
            "UPDATE invoices SET recognized = recognized + $2, deferred = deferred - $2,
                    months_recognized = COALESCE($3, months_recognized), delivered_on = COALESCE($4, delivered_on),
                    status = CASE WHEN status = 'DRAFT' THEN 'OPEN' ELSE status END,
                    entry_ids = array_append(entry_ids, $5::text), updated_at = $6, position = $7
             WHERE invoice_id = $1",
            id,
            e.amount.0,
            e.month.map(|m| m as i32),
            e.delivered_on,
            e.entry_id.clone(),
            at,
            pos(r),
        )),
        InvoiceEvent::PaymentReceived(e) => out.push(stmt!(
            "UPDATE invoices SET paid = paid + $2, outstanding = outstanding - $2,
                    status = CASE WHEN outstanding = $2 THEN 'PAID' ELSE 'PARTIALLY_PAID' END,
                    entry_ids = array_append(entry_ids, $3::text), updated_at = $4, position = $5
             WHERE invoice_id = $1",
            id,
            e.amount.0,
            e.entry_id.clone(),
            at,
            pos(r),
        )),
        InvoiceEvent::InvoiceVoided(e) => out.push(stmt!(
            "UPDATE invoices SET status = 'VOID', deferred = 0, outstanding = 0, void_reason = $2, voided_on = $3,
                    entry_ids = array_append(entry_ids, $4::text), updated_at = $5, position = $6
             WHERE invoice_id = $1",
            id,
            e.reason.clone(),
            e.voided_on,
            e.entry_id.clone(),
            at,
            pos(r),
        )),
    }
}

/// Agents and every governance decision.
pub struct Agents;

impl Projection for Agents {
    fn name(&self) -> &'static str {
        "agents"
    }
    fn domains(&self) -> &'static [Domain] {
        &[Domain::Agent]
    }
    fn tables(&self) -> &'static [&'static str] {
        &["governance_decisions", "agents"]
    }
    fn apply(&self, r: &RecordedEvent, event: &Event, out: &mut Vec<Stmt>) {
        let Event::Agent(e) = event else { return };
        let at = r.envelope.occurred_at;
        match e {
            AgentEvent::AgentRegistered(a) => out.push(stmt!(
                "INSERT INTO agents (agent_id, name, maturity, registered_at, updated_at, seq, position)
                 VALUES ($1, $2, $3, $4, $4, $5, $5)",
                a.agent_id.clone(),
                a.name.clone(),
                a.maturity.as_str(),
                at,
                pos(r),
            )),
            AgentEvent::AgentMaturityChanged(m) => out.push(stmt!(
                "UPDATE agents SET maturity = $2, updated_at = $3, position = $4 WHERE agent_id = $1",
                r.envelope.stream.id().to_owned(),
                m.to.as_str(),
                at,
                pos(r),
            )),
            AgentEvent::GovernanceDecisionRecorded(d) => out.push(stmt!(
                "INSERT INTO governance_decisions (position, agent_id, action, complexity, maturity, outcome, reason, command_id, approval_id, occurred_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                pos(r),
                d.agent_id.clone(),
                d.action.clone(),
                serde_json::to_value(d.complexity)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                d.maturity.as_str(),
                d.outcome.as_str(),
                d.reason.clone(),
                d.command_id,
                d.approval_id.clone(),
                at,
            )),
        }
    }
}
