-- Audit records of changes, written in the same transaction as the change they describe, then
-- chained into audit_log by the audit writer (group commit) right after. A crash between the
-- two leaves the record here, and the writer chains it on its next pass: a committed change is
-- never without its audit record, and appending to the chain stays one serial point per batch.
CREATE TABLE audit_outbox (
    id              TEXT    PRIMARY KEY,      -- random, orders ties
    staged_at_us    INTEGER    NOT NULL,
    subject         TEXT    NOT NULL,
    roles           TEXT    NOT NULL,
    org             TEXT    NOT NULL,
    cert_thumbprint TEXT    NOT NULL,
    action          TEXT    NOT NULL,
    record_type     TEXT    NOT NULL,
    record_id       TEXT    NOT NULL,
    outcome         TEXT    NOT NULL,
    trace_id        TEXT    NOT NULL
);
