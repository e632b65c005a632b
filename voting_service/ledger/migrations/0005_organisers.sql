-- The organisers' year (issue #11): candidate facts, withdrawals, recommenders' quotas,
-- publication of the results (公示) and of the ledger's digests.

ALTER TABLE candidates
    ADD COLUMN recommender       text NOT NULL DEFAULT '',
    ADD COLUMN recommender_kind  text NOT NULL DEFAULT ''
        CHECK (recommender_kind IN ('', 'city', 'provincial_unit')),
    ADD COLUMN deed_type         text NOT NULL DEFAULT '',
    ADD COLUMN honors            text[] NOT NULL DEFAULT '{}',
    ADD COLUMN video_url         text NOT NULL DEFAULT '',
    ADD COLUMN status            text NOT NULL DEFAULT 'active'
        CHECK (status IN ('active', 'withdrawn')),
    ADD COLUMN withdrawn_reason  text NOT NULL DEFAULT '',
    ADD COLUMN withdrawn_at      timestamptz,
    -- keyed HMAC of the person (identity number, else name + employer): finds the same
    -- person recommended twice; '' for candidates loaded from a campaign document
    ADD COLUMN person_key        text NOT NULL DEFAULT '';

-- 推荐名额分配表: how many candidates each recommender may put forward.
CREATE TABLE candidate_quotas (
    campaign_id  text NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    recommender  text NOT NULL,
    quota        integer NOT NULL CHECK (quota >= 0),
    PRIMARY KEY (campaign_id, recommender)
);

-- 公示: the frozen results and the ledger's day digests, written once after the vote.
CREATE TABLE publications (
    campaign_id   text PRIMARY KEY REFERENCES campaigns (id) ON DELETE CASCADE,
    published_at  timestamptz NOT NULL DEFAULT now(),
    actor         text NOT NULL,
    note          text NOT NULL DEFAULT '',
    results       jsonb NOT NULL,
    days          jsonb NOT NULL,     -- [{day, votes, digest}] in order
    digest        text NOT NULL       -- the last day's chained digest
);

-- The public ledger file as published (NDJSON, zlib-compressed parts in order): downloads
-- read it back; its digests are those of publications.results.
CREATE TABLE published_ledger (
    campaign_id  text NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    part         integer NOT NULL,
    body         bytea NOT NULL,
    PRIMARY KEY (campaign_id, part)
);
