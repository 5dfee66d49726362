-- The log's Merkle tree (RFC 9162 over every position's chain hash), stored as C2SP
-- tlog-tiles, and the signed checkpoints of it. Derived from the log like a read model and
-- kept by the sealer; dropped rows are rebuilt from the log. Not in schema `read`:
-- auditors reach it through the audit routes, analysts have no use for it.

CREATE SCHEMA IF NOT EXISTS audit;

-- Tile `level`/`idx`: the hashes (32 bytes each, up to 256) of the tree's perfect subtrees
-- of height 8·level with indices 256·idx onward. Only the right-most tile of a level
-- grows; the others are full and never change.
CREATE TABLE audit.tree_tiles (
    level   smallint NOT NULL CHECK (level >= 0),
    idx     bigint   NOT NULL CHECK (idx >= 0),
    hashes  bytea    NOT NULL CHECK (length(hashes) BETWEEN 32 AND 8192 AND length(hashes) % 32 = 0),
    PRIMARY KEY (level, idx)
);
-- Hashes do not compress: store them out of line without trying.
ALTER TABLE audit.tree_tiles ALTER COLUMN hashes SET STORAGE EXTERNAL;

-- How many leaves the tiles hold (one row), and their root; moved in the same transaction
-- as the tiles.
CREATE TABLE audit.tree (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    size        bigint NOT NULL CHECK (size >= 0),
    root        bytea NOT NULL CHECK (length(root) = 32),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Positions no event key authenticates (messages Chronicle did not write), found while
-- the tree grows: the next seal records them rather than vouch for them.
CREATE TABLE audit.unauthenticated (
    position bigint PRIMARY KEY
);

-- Every checkpoint a seal in the log signed, checked against the tree before it is kept:
-- the C2SP signed note, and the seal's own position.
CREATE TABLE audit.checkpoints (
    size          bigint PRIMARY KEY CHECK (size > 0),
    root          bytea NOT NULL CHECK (length(root) = 32),
    note          text NOT NULL,
    seal_position bigint NOT NULL,
    sealed_at     timestamptz NOT NULL
);
