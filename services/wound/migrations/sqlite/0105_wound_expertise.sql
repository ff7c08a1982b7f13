-- Tele-expertise requests asked about a wound (WoundService/RequestWoundExpertise): the answer
-- is read from the tele-expertise service by the request id.
CREATE TABLE wound_expertise_requests (
    wound_id            TEXT NOT NULL,
    request_id          TEXT NOT NULL,
    requested_by_json   TEXT NOT NULL,
    requested_at_us     INTEGER NOT NULL,
    PRIMARY KEY (wound_id, request_id)
);
