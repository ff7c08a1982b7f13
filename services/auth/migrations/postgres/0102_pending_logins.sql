-- Sign-ins started and not yet finished: what the provider's callback must match, used once.
-- Kept minutes only (expires_us); the state is stored as its SHA-256.
CREATE TABLE auth_pending_logins (
    state_hash          TEXT PRIMARY KEY,
    provider            TEXT NOT NULL,
    nonce               TEXT NOT NULL,
    pkce_verifier       TEXT NOT NULL,
    device_thumbprint   TEXT NOT NULL,
    created_us          BIGINT NOT NULL,
    expires_us          BIGINT NOT NULL
);
CREATE INDEX auth_pending_logins_by_expiry ON auth_pending_logins (expires_us);
