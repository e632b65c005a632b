-- The published ledger file's length and SHA-256, recorded once at publication: every pod
-- serves its own local copy of the file (ledger/frozen.py) under the same strong ETag and
-- checks the copy against them. NULL for a campaign published before this migration: the
-- first pod that copies its file records them.
ALTER TABLE publications
    ADD COLUMN ledger_bytes  bigint,
    ADD COLUMN ledger_sha256 text;
