-- The schema that holds every read model, the analysts' role, and the projections'
-- own bookkeeping. Read models are rebuilt from the log; nothing here is a source of
-- truth.

CREATE SCHEMA IF NOT EXISTS read;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'chronicle_analyst') THEN
        CREATE ROLE chronicle_analyst NOLOGIN;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA read TO chronicle_analyst;
ALTER DEFAULT PRIVILEGES IN SCHEMA read GRANT SELECT ON TABLES TO chronicle_analyst;

-- One row per projection: how far into the log it has applied, moved in the same
-- transaction as its rows.
CREATE TABLE read.projection_checkpoints (
    name        text PRIMARY KEY,
    position    bigint NOT NULL DEFAULT 0 CHECK (position >= 0),
    state       text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'failed', 'rebuilding')),
    error       text,
    error_position bigint,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
