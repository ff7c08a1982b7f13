-- Partnerships between a centre and a hospital: proposed by the centre's administrator,
-- accepted by the hospital's, ended by either. Instants are Unix microseconds (UTC).
CREATE TABLE partnerships (
    centre_org_id   TEXT NOT NULL,
    hospital_org_id TEXT NOT NULL,
    proposed_by     TEXT NOT NULL,
    proposed_us     INTEGER NOT NULL,
    accepted_by     TEXT,
    accepted_us     INTEGER,
    ended_by        TEXT,
    ended_us        INTEGER,
    PRIMARY KEY (centre_org_id, hospital_org_id)
);
CREATE INDEX partnerships_by_hospital ON partnerships (hospital_org_id);
