-- Sign-in sessions and their refresh tokens. Instants are Unix microseconds (UTC).

-- One sign-in of a person, for one organisation, on one device.
CREATE TABLE auth_sessions (
    session_id          TEXT PRIMARY KEY,
    subject             TEXT NOT NULL,
    org_id              TEXT NOT NULL,
    roles               TEXT NOT NULL,      -- doctor,nurse,specialist,coordinator,admin
    specialty           TEXT,
    device_thumbprint   TEXT NOT NULL,      -- x5t#S256 of the device certificate
    provider            TEXT NOT NULL,
    created_us          INTEGER NOT NULL,
    last_used_us        INTEGER NOT NULL,
    expires_us          INTEGER NOT NULL,   -- the session's absolute end
    ended_us            INTEGER,
    end_reason          TEXT
);
CREATE INDEX auth_sessions_by_person ON auth_sessions (subject, org_id);
CREATE INDEX auth_sessions_by_org ON auth_sessions (org_id);

-- Refresh tokens, stored as their SHA-256 only; each is used once, the next one replaces it.
CREATE TABLE auth_refresh_tokens (
    token_hash      TEXT PRIMARY KEY,
    session_id      TEXT NOT NULL REFERENCES auth_sessions (session_id),
    generation      INTEGER NOT NULL,
    issued_us       INTEGER NOT NULL,
    used_us         INTEGER
);
CREATE INDEX auth_refresh_tokens_by_session ON auth_refresh_tokens (session_id);
