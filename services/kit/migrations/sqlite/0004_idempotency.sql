-- Idempotency keys (common.proto) of every service, in one table (`telehealth_kit::idempotency`):
-- the first successful answer to a caller's request under a key, by the id of what it created,
-- recorded in the same transaction as the change. `request_hash` is the SHA-256 (hex) of the
-- request's content without the key, so the same key with another request is refused. Rows older
-- than `idempotency.retention_hours` are purged. A row with an empty key is not a key: it is the
-- lock a service takes to queue a caller's concurrent first attempts (`idempotency::lock`).
CREATE TABLE idempotency_records (
    subject         TEXT    NOT NULL,          -- the caller
    operation       TEXT    NOT NULL,          -- the RPC
    idempotency_key TEXT    NOT NULL,
    request_hash    TEXT    NOT NULL,
    result_id       TEXT    NOT NULL,
    created_at_us   INTEGER NOT NULL,
    PRIMARY KEY (subject, operation, idempotency_key)
);
CREATE INDEX idempotency_records_age ON idempotency_records (created_at_us);
