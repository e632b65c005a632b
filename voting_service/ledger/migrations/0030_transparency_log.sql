-- The transparency log (issue #26): one RFC 9162 Merkle tree per campaign over the committed
-- ledger, signed tree heads, and what makes proofs fast. See docs/verification.md.

-- A vote's place in its campaign's log: assigned in the flusher's commit (ledger/batch.py),
-- consecutive from log_state.size, so the positions below log_state.size are exactly the
-- committed ones. NULL for rows flushed with the log off.
ALTER TABLE votes ADD COLUMN log_index bigint;
-- Monotonic within a campaign: the COPY appends at the right edge of the b-tree.
CREATE INDEX votes_log ON votes (campaign_id, log_index) WHERE log_index IS NOT NULL;

-- The log's size: the next free position. Every writer of log leaves (the flusher's commit,
-- an invalidation, a publication) moves it in its own transaction; the row lock orders them.
CREATE TABLE log_state (
    campaign_id  text PRIMARY KEY,
    size         bigint NOT NULL DEFAULT 0 CHECK (size >= 0)
);

-- The leaves that are not votes: invalidations and the published results, as their exact
-- leaf bytes.
CREATE TABLE log_records (
    campaign_id  text NOT NULL,
    idx          bigint NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('invalidation', 'results')),
    body         bytea NOT NULL,
    PRIMARY KEY (campaign_id, idx)
);

-- Complete, aligned subtrees of 2^level leaves (level >= 8): node (level, idx) is the MTH of
-- leaves [idx * 2^level, (idx + 1) * 2^level). Below level 8 a proof reads the 256 leaves of
-- one chunk. log_trees.built: leaves whose chunk nodes are stored (a multiple of 256).
CREATE TABLE log_nodes (
    campaign_id  text NOT NULL,
    level        smallint NOT NULL,
    idx          bigint NOT NULL,
    hash         bytea NOT NULL,
    PRIMARY KEY (campaign_id, level, idx)
);
CREATE TABLE log_trees (
    campaign_id  text PRIMARY KEY,
    built        bigint NOT NULL DEFAULT 0
);

-- Signed tree heads, kept forever: one per size (an operator signing two roots for one size
-- would need two rows, which the key refuses; a second signature is provable misconduct).
CREATE TABLE log_heads (
    campaign_id  text NOT NULL,
    size         bigint NOT NULL,
    root         bytea NOT NULL,
    signed_at    timestamptz NOT NULL,
    key_id       text NOT NULL,
    signature    bytea NOT NULL,
    PRIMARY KEY (campaign_id, size)
);
