-- 异议 (issue 24 §2): objections to a candidate during the 公示, made under a real name.
-- The objection and its handling here; the submitter's personal data (needed to answer in
-- writing or by phone) in objection_submitters, read only by the admin role in the console
-- and deleted by `voting-service purge-objections` once purge_after has passed.
CREATE TABLE objections (
    id             bigserial PRIMARY KEY,
    campaign_id    text NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    candidate_id   text NOT NULL,
    submitted_at   timestamptz NOT NULL DEFAULT now(),
    text           text NOT NULL,
    phone_verified boolean NOT NULL DEFAULT false,
    status         text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'answered', 'closed')),
    answer         text NOT NULL DEFAULT '',
    answered_at    timestamptz,
    answered_by    text NOT NULL DEFAULT '',
    closed_at      timestamptz,
    closed_by      text NOT NULL DEFAULT '',
    purge_after    timestamptz NOT NULL
);
CREATE INDEX objections_by_candidate ON objections (campaign_id, candidate_id);

CREATE TABLE objection_submitters (
    objection_id     bigint PRIMARY KEY REFERENCES objections (id) ON DELETE CASCADE,
    name             text NOT NULL,
    phone            text NOT NULL,
    address          text NOT NULL,
    attachment       bytea,
    attachment_name  text NOT NULL DEFAULT '',
    attachment_type  text NOT NULL DEFAULT ''
);
