-- The read models behind the query routes. Each table belongs to one projection (see
-- migrations/README.md), which is the only writer; `position` columns are log positions.

-- projection `tokens` --------------------------------------------------------------
CREATE TABLE read.tokens (
    jti            uuid PRIMARY KEY,
    user_id        text NOT NULL,
    role           text NOT NULL,
    scopes         text[] NOT NULL DEFAULT '{}',
    issued_at      timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    revoke_reason  text,
    seq            bigint NOT NULL UNIQUE,
    position       bigint NOT NULL
);
CREATE INDEX tokens_user ON read.tokens (user_id, seq);

-- projection `jobs` ----------------------------------------------------------------
CREATE TABLE read.jobs (
    job_id       text PRIMARY KEY,
    agent_id     text NOT NULL,
    kind         text NOT NULL,
    status       text NOT NULL CHECK (status IN ('PENDING','RUNNING','COMPLETED','FAILED','CANCELLED')),
    input        jsonb NOT NULL,
    result       jsonb,
    error        text,
    cancel_reason text,
    submitted_at timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    version      bigint NOT NULL,
    seq          bigint NOT NULL UNIQUE,
    position     bigint NOT NULL
);
CREATE INDEX jobs_status ON read.jobs (status, seq);
CREATE INDEX jobs_agent ON read.jobs (agent_id, seq);
CREATE INDEX jobs_kind ON read.jobs (kind, seq);

CREATE TABLE read.job_history (
    job_id      text NOT NULL,
    version     bigint NOT NULL,
    event_type  text NOT NULL,
    status      text NOT NULL,
    actor_kind  text NOT NULL,
    actor_id    text NOT NULL,
    detail      jsonb,
    occurred_at timestamptz NOT NULL,
    position    bigint NOT NULL,
    PRIMARY KEY (job_id, version)
);

-- projection `approvals` -----------------------------------------------------------
CREATE TABLE read.approvals (
    approval_id          text PRIMARY KEY,
    action               text NOT NULL,
    payload              jsonb NOT NULL,
    reason               text NOT NULL,
    status               text NOT NULL CHECK (status IN ('PENDING','APPROVED','REJECTED')),
    requested_by         text NOT NULL,
    requested_at         timestamptz NOT NULL,
    decided_by           text,
    decided_at           timestamptz,
    decision_reason      text,
    agent_id             text,
    escalated_command_id uuid,
    seq                  bigint NOT NULL UNIQUE,
    position             bigint NOT NULL
);
CREATE INDEX approvals_status ON read.approvals (status, seq);

-- projection `ledger` --------------------------------------------------------------
CREATE TABLE read.accounts (
    code        text PRIMARY KEY,
    name        text NOT NULL,
    type        text NOT NULL CHECK (type IN ('ASSET','LIABILITY','EQUITY','REVENUE','EXPENSE')),
    currency    text NOT NULL,
    status      text NOT NULL CHECK (status IN ('OPEN','CLOSED')),
    -- Sums of the lines on the account, in minor units; numeric so that no sum overflows.
    debits      numeric(40,0) NOT NULL DEFAULT 0,
    credits     numeric(40,0) NOT NULL DEFAULT 0,
    opened_at   timestamptz NOT NULL,
    closed_at   timestamptz,
    seq         bigint NOT NULL UNIQUE,
    position    bigint NOT NULL
);

CREATE TABLE read.journal_entries (
    entry_id       text PRIMARY KEY,
    effective_date date NOT NULL,
    memo           text NOT NULL,
    reverses       text,
    reversed_by    text,
    reverse_reason text,
    posted_by      text NOT NULL,
    posted_at      timestamptz NOT NULL,
    seq            bigint NOT NULL UNIQUE,
    position       bigint NOT NULL
);
CREATE INDEX journal_entries_date ON read.journal_entries (effective_date, seq);

CREATE TABLE read.journal_lines (
    entry_id       text NOT NULL,
    line_no        int NOT NULL,
    account        text NOT NULL,
    debit          bigint CHECK (debit > 0),
    credit         bigint CHECK (credit > 0),
    currency       text NOT NULL,
    effective_date date NOT NULL,
    seq            bigint NOT NULL,
    PRIMARY KEY (entry_id, line_no),
    CHECK ((debit IS NULL) <> (credit IS NULL))
);
CREATE INDEX journal_lines_account ON read.journal_lines (account, seq);
CREATE INDEX journal_lines_date ON read.journal_lines (effective_date);

-- projection `agents` --------------------------------------------------------------
CREATE TABLE read.agents (
    agent_id      text PRIMARY KEY,
    name          text NOT NULL,
    maturity      text NOT NULL CHECK (maturity IN ('STUDENT','INTERN','SUPERVISED','AUTONOMOUS')),
    registered_at timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    seq           bigint NOT NULL UNIQUE,
    position      bigint NOT NULL
);

CREATE TABLE read.governance_decisions (
    position     bigint PRIMARY KEY,
    agent_id     text NOT NULL,
    action       text NOT NULL,
    complexity   text NOT NULL,
    maturity     text NOT NULL,
    outcome      text NOT NULL CHECK (outcome IN ('ALLOWED','DENIED','ESCALATED','BYPASSED')),
    reason       text NOT NULL,
    command_id   uuid NOT NULL,
    approval_id  text,
    occurred_at  timestamptz NOT NULL
);
CREATE INDEX governance_decisions_agent ON read.governance_decisions (agent_id, position);
CREATE INDEX governance_decisions_outcome ON read.governance_decisions (outcome, position);
CREATE INDEX governance_decisions_time ON read.governance_decisions (occurred_at);
