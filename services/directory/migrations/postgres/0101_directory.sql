-- The care directory: who is a member of which organisation, from which authority.
-- Instants are Unix microseconds (UTC). Roles are a comma-separated list of role names.

CREATE TABLE members (
    org_id          TEXT NOT NULL,
    subject         TEXT NOT NULL,
    roles           TEXT NOT NULL,      -- doctor,nurse,specialist,coordinator,admin
    specialty       TEXT,
    since_us        BIGINT NOT NULL,
    until_us        BIGINT,            -- exclusive; NULL: no end
    source          TEXT NOT NULL,      -- token, administrator
    version         BIGINT NOT NULL,
    updated_at_us   BIGINT NOT NULL,
    updated_by      TEXT NOT NULL,
    PRIMARY KEY (org_id, subject)
);
CREATE INDEX members_by_subject ON members (subject);
