-- The ledger partitioned by day (issue #9): the flusher's COPY goes into the open day's
-- partition, which keeps only the cheap indexes (the compact primary key, the BRIN on
-- cast_at, the partial index of struck-out votes). The lookup b-trees (by voter, by address,
-- by vote id) are built on a partition in one sorted pass once its day is over
-- (ledger/partitions.py, run by the flusher): keeping random-key b-trees in step with every
-- COPY more than halved the rows a second PostgreSQL took. Lookups into the open day scan
-- that one partition.

ALTER TABLE votes RENAME TO votes_unpartitioned;
ALTER TABLE votes_unpartitioned DROP CONSTRAINT votes_pkey;
DROP INDEX votes_cast_at, votes_campaign_ip, votes_campaign_voter, votes_invalidation;

CREATE TABLE votes (
    campaign_id     text NOT NULL,
    voter_id        text NOT NULL,
    vote_id         text NOT NULL,
    candidate_id    text NOT NULL,
    channel         text NOT NULL DEFAULT '',
    ip              inet,
    day             date NOT NULL,             -- the campaign's local day: the partition key
    cast_at         timestamptz NOT NULL,
    stream_id       text NOT NULL,
    shard           integer NOT NULL,
    valid           boolean NOT NULL DEFAULT true,
    invalidation_id bigint,
    channel_signed  boolean NOT NULL DEFAULT false,
    -- an entry's place in its shard stream, led by what grows: each shard's rows append at
    -- the end of its own key range (with the campaign first, PostgreSQL took ~20 % fewer
    -- rows a second); the day is in the key because a partitioned table's unique keys must
    -- hold its partition key (a stream id is unique without it)
    PRIMARY KEY (shard, stream_id, campaign_id, day)
) PARTITION BY RANGE (day);
CREATE INDEX votes_cast_at ON votes USING brin (cast_at);
CREATE INDEX votes_invalidation ON votes (invalidation_id) WHERE invalidation_id IS NOT NULL;

-- The partition of day d (votes_pYYYYMMDD), created if missing. Writers call it before they
-- COPY a day's first rows. Made apart and then attached: ATTACH PARTITION takes only a SHARE
-- UPDATE EXCLUSIVE lock on votes, which neither readers (a long export) nor writers hold
-- against it, where CREATE TABLE ... PARTITION OF would queue behind them and block the rest.
-- Racing callers queue on the advisory lock; the later ones find the table made (the
-- exception: their catalog cache may not show it yet).
CREATE FUNCTION votes_partition(d date) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    name text := 'votes_p' || to_char(d, 'YYYYMMDD');
BEGIN
    IF to_regclass(name) IS NULL THEN
        PERFORM pg_advisory_xact_lock(hashtext('votes_partition'));
        BEGIN
            EXECUTE format('CREATE TABLE %I (LIKE votes INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                           name);
            EXECUTE format('ALTER TABLE votes ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                           name, d, d + 1);
        EXCEPTION WHEN duplicate_table OR unique_violation THEN
            NULL;  -- another writer made it
        END;
    END IF;
    RETURN name;
END
$$;

-- The rows flushed before: their days' partitions, then the rows. These days are over, so
-- the flusher's first sealing pass gives them their lookup indexes.
SELECT votes_partition(day) FROM (SELECT DISTINCT day FROM votes_unpartitioned) AS d;
INSERT INTO votes (campaign_id, voter_id, vote_id, candidate_id, channel, ip, day, cast_at,
                   stream_id, shard, valid, invalidation_id, channel_signed)
SELECT campaign_id, voter_id, vote_id, candidate_id, channel, ip, day, cast_at,
       stream_id, shard, valid, invalidation_id, channel_signed
FROM votes_unpartitioned;
DROP TABLE votes_unpartitioned;
