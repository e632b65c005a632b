-- Anti-fraud (issue #4): partner secret rotation, the blocklist, invalidations.

-- During a rotation a channel's previous secret still verifies partner tokens until
-- previous_expires_at (NULL with a previous secret: until the next rotation).
ALTER TABLE channels
    ADD COLUMN previous_secret      text NOT NULL DEFAULT '',
    ADD COLUMN previous_expires_at  timestamptz;

-- Voters and IP networks that may not vote. Never deleted: removal is stamped.
CREATE TABLE blocklist (
    id           bigserial PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('voter', 'ip')),
    value        text NOT NULL,            -- voter id (an HMAC) or a CIDR
    campaign_id  text REFERENCES campaigns (id) ON DELETE CASCADE,  -- NULL: every campaign
    reason       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text NOT NULL,
    expires_at   timestamptz,
    removed_at   timestamptz,
    removed_by   text,
    CHECK (kind <> 'ip' OR value::cidr IS NOT NULL)
);
CREATE INDEX blocklist_active ON blocklist (kind, value) WHERE removed_at IS NULL;

-- Append-only record of struck-out votes; votes.invalidation_id points here.
CREATE TABLE invalidations (
    id                 bigserial PRIMARY KEY,
    campaign_id        text NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    created_at         timestamptz NOT NULL DEFAULT now(),
    actor              text NOT NULL,
    reason             text NOT NULL,
    criteria           jsonb NOT NULL,
    cutoff             timestamptz NOT NULL,   -- votes cast after this are not touched
    votes_invalidated  bigint NOT NULL DEFAULT 0,
    by_candidate       jsonb NOT NULL DEFAULT '{}',
    per_shard          jsonb NOT NULL DEFAULT '{}',  -- what the Redis tallies lose
    redis_applied_at   timestamptz             -- NULL while the Redis step is pending
);
CREATE INDEX invalidations_campaign ON invalidations (campaign_id, id);
CREATE INDEX invalidations_pending ON invalidations (id) WHERE redis_applied_at IS NULL;

-- Invalidation by network and the suspicious-vote queries look votes up by address.
CREATE INDEX votes_campaign_ip ON votes (campaign_id, ip);
CREATE INDEX votes_invalidation ON votes (invalidation_id) WHERE invalidation_id IS NOT NULL;
