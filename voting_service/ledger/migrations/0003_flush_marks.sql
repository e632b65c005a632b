-- The flusher's watermark (issue #9) and signed channel attribution (issue #8.5).

-- Per shard stream: the id of the last ledger entry committed here. The flusher moves it in
-- the same transaction as the rows it COPYs, and only from the value it read (compare and
-- set), so an entry is written once whoever flushes it; entries up to it are trimmed from
-- the stream afterwards. Stream id = "<last_ms>-<last_seq>".
CREATE TABLE flush_marks (
    campaign_id  text NOT NULL,
    shard        integer NOT NULL,
    last_ms      bigint NOT NULL DEFAULT 0,
    last_seq     bigint NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, shard)
);
-- A ledger flushed before: start each shard after the newest entry already here.
INSERT INTO flush_marks (campaign_id, shard, last_ms, last_seq)
SELECT DISTINCT ON (campaign_id, shard) campaign_id, shard,
       split_part(stream_id, '-', 1)::bigint, split_part(stream_id, '-', 2)::bigint
FROM votes
ORDER BY campaign_id, shard, split_part(stream_id, '-', 1)::bigint DESC,
         split_part(stream_id, '-', 2)::bigint DESC;

-- The channel came from a partner's signed token (true) or only from the request (false).
ALTER TABLE votes ADD COLUMN channel_signed boolean NOT NULL DEFAULT false;

-- An entry's identity is its place in its shard stream: a compact key that grows at the end
-- of 16 ranges per campaign, instead of wide random text keys that make every COPY slow.
-- Lookups by voter (invalidations, suspicious groups) get their own index.
ALTER TABLE votes DROP CONSTRAINT votes_pkey;
ALTER TABLE votes ADD PRIMARY KEY (campaign_id, shard, stream_id);
CREATE INDEX votes_campaign_voter ON votes (campaign_id, voter_id);
