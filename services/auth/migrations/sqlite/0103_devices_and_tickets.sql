-- Enrolled devices, sign-ins verified and waiting for the organisation choice, and device
-- sign-ins waiting for the person's approval. Instants are Unix microseconds (UTC).

-- A device certificate the service issued; revoked ones stay (the CRL is rebuilt from them).
CREATE TABLE auth_devices (
    device_id       TEXT PRIMARY KEY,
    org_id          TEXT NOT NULL,
    subject         TEXT NOT NULL,
    name            TEXT NOT NULL,
    thumbprint      TEXT NOT NULL UNIQUE,   -- x5t#S256 of its certificate
    serial_hex      TEXT NOT NULL,
    enrolled_us     INTEGER NOT NULL,
    expires_us      INTEGER NOT NULL,
    revoked_us      INTEGER
);
CREATE INDEX auth_devices_by_person ON auth_devices (org_id, subject);

-- The provider vouched for the person; CompleteSignIn takes the ticket (stored as its
-- SHA-256) once, for the device key that started the sign-in.
CREATE TABLE auth_sign_in_tickets (
    ticket_hash     TEXT PRIMARY KEY,
    provider        TEXT NOT NULL,
    device_key      TEXT NOT NULL,          -- SHA-256 of the device's public key
    rpps_number     TEXT NOT NULL,
    expires_us      INTEGER NOT NULL
);
CREATE INDEX auth_sign_in_tickets_by_expiry ON auth_sign_in_tickets (expires_us);

-- Device sign-ins (RFC 8628) not yet approved: the provider's answer, polled no faster than
-- next_poll_us. Keyed by the SHA-256 of the secret id the device polls with.
CREATE TABLE auth_device_logins (
    id_hash         TEXT PRIMARY KEY,
    provider        TEXT NOT NULL,
    device_key      TEXT NOT NULL,
    provider_answer TEXT NOT NULL,          -- the provider's device authorization response (JSON)
    interval_s      INTEGER NOT NULL,
    next_poll_us    INTEGER NOT NULL,
    expires_us      INTEGER NOT NULL
);
CREATE INDEX auth_device_logins_by_expiry ON auth_device_logins (expires_us);
