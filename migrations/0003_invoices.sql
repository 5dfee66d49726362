-- Invoices and revenue recognition (projection `ledger`, so that an invoice, its entries
-- and the accounts they move are always exact as of the same log position).

-- The aggregate whose command posted an entry (`invoice.<id>`); NULL for entries posted by
-- hand, which every entry before this migration was. Copied onto the lines, like the
-- effective date, for the revenue report's filters.
ALTER TABLE read.journal_entries ADD COLUMN source text;
CREATE INDEX journal_entries_source ON read.journal_entries (source, seq) WHERE source IS NOT NULL;
ALTER TABLE read.journal_lines ADD COLUMN source text;
CREATE INDEX journal_lines_account_date ON read.journal_lines (account, effective_date);

CREATE TABLE read.invoices (
    invoice_id         text PRIMARY KEY,
    customer           text NOT NULL,
    currency           text NOT NULL,
    issue_date         date NOT NULL,
    status             text NOT NULL CHECK (status IN ('DRAFT','OPEN','PARTIALLY_PAID','PAID','VOID')),
    -- ON_DELIVERY, or RATABLE over `months` months from `start_date`.
    method             text NOT NULL CHECK (method IN ('ON_DELIVERY','RATABLE')),
    start_date         date,
    months             int,
    lines              jsonb NOT NULL,
    -- Minor units. total = recognized + deferred = paid + outstanding (deferred and
    -- outstanding are 0 once VOID).
    total              bigint NOT NULL CHECK (total > 0),
    recognized         bigint NOT NULL DEFAULT 0 CHECK (recognized >= 0),
    deferred           bigint NOT NULL CHECK (deferred >= 0),
    paid               bigint NOT NULL DEFAULT 0 CHECK (paid >= 0),
    outstanding        bigint NOT NULL CHECK (outstanding >= 0),
    months_recognized  int NOT NULL DEFAULT 0,
    delivered_on       date,
    receivable_account text NOT NULL,
    deferred_account   text NOT NULL,
    revenue_account    text NOT NULL,
    cash_account       text NOT NULL,
    -- Its journal entries, the issue entry first.
    entry_ids          text[] NOT NULL,
    void_reason        text,
    voided_on          date,
    issued_by          text NOT NULL,
    issued_at          timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    seq                bigint NOT NULL UNIQUE,
    position           bigint NOT NULL
);
CREATE INDEX invoices_status ON read.invoices (status, seq);
CREATE INDEX invoices_customer ON read.invoices (customer, seq);
