-- Campaigns, candidates, channels: the organisers' configuration.
CREATE TABLE campaigns (
    id           text PRIMARY KEY,
    title        text NOT NULL,
    timezone     text NOT NULL,
    opens_at     timestamptz NOT NULL,
    closes_at    timestamptz NOT NULL,
    status       text NOT NULL CHECK (status IN ('draft', 'open', 'paused', 'closed')),
    show_counts  boolean NOT NULL DEFAULT true,
    rules        jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE candidates (
    campaign_id  text NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    id           text NOT NULL,
    number       integer NOT NULL,
    name         text NOT NULL,
    gender       text NOT NULL DEFAULT '',
    region       text NOT NULL DEFAULT '',
    industry     text NOT NULL DEFAULT '',
    employer     text NOT NULL DEFAULT '',
    occupation   text NOT NULL DEFAULT '',
    summary      text NOT NULL DEFAULT '',
    deeds        text NOT NULL DEFAULT '',
    photo_url    text NOT NULL DEFAULT '',
    PRIMARY KEY (campaign_id, id)
);

CREATE TABLE channels (
    campaign_id      text NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    id               text NOT NULL,
    name             text NOT NULL,
    allowed_origins  text[] NOT NULL DEFAULT '{}',
    secret           text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, id)
);

-- The ledger: one row per accepted vote, written by the flusher. Rows are never deleted;
-- brushed votes are marked invalid.
CREATE TABLE votes (
    campaign_id   text NOT NULL,
    voter_id      text NOT NULL,
    vote_id       text NOT NULL,
    candidate_id  text NOT NULL,
    channel       text NOT NULL DEFAULT '',
    ip            inet,
    day           date NOT NULL,
    cast_at       timestamptz NOT NULL,
    stream_id     text NOT NULL,
    shard         integer NOT NULL,
    valid         boolean NOT NULL DEFAULT true,
    invalidation_id bigint,
    -- the day is part of the key: a client may reuse a vote_id once the idempotency window
    -- (3 days) has passed, and that is then a new vote; a redelivered entry is not
    PRIMARY KEY (campaign_id, voter_id, vote_id, day)
);
-- BRIN: rows arrive in time order, so a block-range index finds time windows (suspicious
-- signals, invalidations by time) at a fraction of a b-tree's cost on every flushed row
CREATE INDEX votes_cast_at ON votes USING brin (cast_at);

-- Counts of valid votes per candidate, kept in the same transaction as the ledger rows.
CREATE TABLE tallies (
    campaign_id   text NOT NULL,
    candidate_id  text NOT NULL,
    votes         bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, candidate_id)
);

CREATE TABLE audit_log (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text NOT NULL,
    action    text NOT NULL,
    target    text NOT NULL DEFAULT '',
    request   jsonb NOT NULL DEFAULT '{}'
);
