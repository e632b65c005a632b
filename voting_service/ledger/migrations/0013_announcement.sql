-- The year's last step (issue 24): after the 公示 period the organisers announce the
-- selection; when, by whom and with what note.
ALTER TABLE publications
    ADD COLUMN announced_at  timestamptz,
    ADD COLUMN announced_by  text NOT NULL DEFAULT '',
    ADD COLUMN announce_note text NOT NULL DEFAULT '';
