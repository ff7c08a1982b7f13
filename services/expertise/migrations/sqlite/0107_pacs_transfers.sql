-- A request's images filed in the answering hospital's PACS (DICOM C-STORE), one row per image,
-- recorded with the answer in the same transaction; replicas send what is due.
CREATE TABLE pacs_transfers (
    request_id          TEXT NOT NULL,
    image_id            TEXT NOT NULL,
    destination         TEXT NOT NULL,      -- AE_TITLE@host:port
    status              TEXT NOT NULL,      -- pending, retrying, delivered (stored), failed
    attempts            BIGINT NOT NULL,
    last_error          TEXT NOT NULL,
    next_attempt_us     BIGINT NOT NULL,    -- due at (pending, retrying), or a claim's end
    stored_at_us        BIGINT,
    created_at_us       BIGINT NOT NULL,
    sop_instance_uid    TEXT NOT NULL,
    PRIMARY KEY (request_id, image_id)
);

CREATE INDEX pacs_transfers_due ON pacs_transfers (status, next_attempt_us);
