-- The open day's partition keeps only cheap indexes (0006), and the log's position index was
-- not one: a b-tree on (campaign_id, log_index) kept in step with every COPY cost the flusher
-- about a quarter of its PostgreSQL rows a second (make bench, table B2). Positions grow with
-- the heap (the COPY appends them in order), so a BRIN answers a range of them nearly as well:
-- it reads the 16-page ranges that hold it. The tree builder summarizes the new ranges before
-- it reads them (transparency.build); a range not summarized yet is read whole. A sealed day
-- gets the b-tree with its lookup indexes (ledger/partitions.py, LOOKUPS "log").
DROP INDEX votes_log;
CREATE INDEX votes_log ON votes USING brin (log_index)
    WITH (pages_per_range = 16, autosummarize = on);
