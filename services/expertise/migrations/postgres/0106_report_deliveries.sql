-- The answer report's deliveries by secure mail (MSSanté), one per recipient, recorded with the
-- answer in the same transaction; replicas send what is due and record each attempt.
CREATE TABLE report_deliveries (
    request_id          TEXT NOT NULL,
    recipient           TEXT NOT NULL,      -- requester, general_practitioner
    address             TEXT NOT NULL,
    status              TEXT NOT NULL,      -- pending, retrying, delivered, failed
    attempts            BIGINT NOT NULL,
    last_error          TEXT NOT NULL,
    next_attempt_us     BIGINT NOT NULL,    -- due at (pending, retrying), or a claim's end
    delivered_at_us     BIGINT,
    created_at_us       BIGINT NOT NULL,
    PRIMARY KEY (request_id, recipient)
);

CREATE INDEX report_deliveries_due ON report_deliveries (status, next_attempt_us);
