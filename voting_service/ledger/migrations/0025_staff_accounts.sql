-- Staff accounts, their console sessions and the machines' bearer tokens (issue 25 §3).
-- One role per account, so no account holds admin, ops and auditor at once.
CREATE TABLE staff_accounts (
    id            bigserial PRIMARY KEY,
    name          text NOT NULL UNIQUE CHECK (name ~ '^[a-z][a-z0-9._-]{1,31}$'),
    role          text NOT NULL CHECK (role IN ('admin', 'ops', 'auditor')),
    password_hash text NOT NULL,
    totp_secret   text,            -- base32; set once an enrolment is confirmed with a code
    totp_pending  text,            -- offered by the enrolment page, not yet confirmed
    totp_step     bigint NOT NULL DEFAULT 0,  -- the last time step accepted: no code twice
    disabled_at   timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text NOT NULL DEFAULT '',
    password_at   timestamptz NOT NULL DEFAULT now()
);

-- A session row per sign-in; the cookie holds the id, this table only its SHA-256.
CREATE TABLE staff_sessions (
    id_hash    bytea PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES staff_accounts (id) ON DELETE CASCADE,
    stage      text NOT NULL CHECK (stage IN ('second_factor', 'enrol', 'full')),
    address    text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    ended_at   timestamptz
);
CREATE INDEX staff_sessions_account ON staff_sessions (account_id) WHERE ended_at IS NULL;
CREATE INDEX staff_sessions_expires ON staff_sessions (expires_at);

-- Bearer tokens of machines (CI, scripts, Prometheus); the token itself is shown once.
CREATE TABLE machine_tokens (
    id         bigserial PRIMARY KEY,
    name       text NOT NULL UNIQUE CHECK (name ~ '^[a-z][a-z0-9._-]{1,47}$'),
    role       text NOT NULL CHECK (role IN ('admin', 'ops')),
    token_hash bytea NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL DEFAULT '',
    revoked_at timestamptz
);

-- the retention step deletes by age
CREATE INDEX audit_log_at ON audit_log (at);
