-- Partnerships between a centre and a hospital: proposed by the centre's administrator,
-- accepted by the hospital's, ended by either. Instants are Unix microseconds (UTC).
CREATE TABLE partnerships (
    centre_org_id   TEXT NOT NULL,
    hospital_org_id TEXT NOT NULL,
    proposed_by     TEXT NOT NULL,
    proposed_us     BIGINT NOT NULL,
    accepted_by     TEXT,
    accepted_us     BIGINT,
    ended_by        TEXT,
    ended_us        BIGINT,
    PRIMARY KEY (centre_org_id, hospital_org_id)
);
CREATE INDEX partnerships_by_hospital ON partnerships (hospital_org_id);
