-- The audit trail of every read or change of patient data (DESIGN §5), shared by every service.
-- Append-only: each record carries the SHA-256 of the previous one (prev_hash) and its own
-- (hash); audit_head holds the last sequence number and hash so that deleting the newest records
-- is detected too. `telehealth audit verify` recomputes the chain.
CREATE TABLE audit_log (
    seq             INTEGER PRIMARY KEY,      -- 1, 2, 3... without gaps
    recorded_at_us  INTEGER NOT NULL,         -- unix time, microseconds, UTC
    subject         TEXT    NOT NULL,         -- who acted (JWT sub, or the calling service)
    roles           TEXT    NOT NULL,         -- comma-separated roles
    org             TEXT    NOT NULL,         -- centre or hospital of the actor
    cert_thumbprint TEXT    NOT NULL,         -- x5t#S256 of the client certificate
    action          TEXT    NOT NULL,         -- gRPC method or operation name
    record_type     TEXT    NOT NULL,         -- e.g. appointment, wound
    record_id       TEXT    NOT NULL,
    outcome         TEXT    NOT NULL,         -- ok, denied, not_found, invalid, failed
    trace_id        TEXT    NOT NULL,         -- W3C trace id, or empty
    prev_hash       TEXT    NOT NULL,
    hash            TEXT    NOT NULL
);

CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash TEXT    NOT NULL
);

INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
