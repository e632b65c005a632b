-- Issue 25 §4: what the public pages' footer says about a campaign (主办单位, a contact
-- line), and the record of each retention purge (voter ids pseudonymised, addresses
-- dropped, a configurable time after publication).
ALTER TABLE campaigns ADD COLUMN notice jsonb NOT NULL DEFAULT '{}'::jsonb;

CREATE TABLE purges (
    campaign_id   text PRIMARY KEY REFERENCES campaigns (id) ON DELETE CASCADE,
    purged_at     timestamptz NOT NULL DEFAULT now(),
    actor         text NOT NULL,
    counts        jsonb NOT NULL      -- rows changed, by table
);
