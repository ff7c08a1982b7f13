-- Wound monitoring: wounds, their episodes and care teams, versioned assessments, photos,
-- alerts and idempotency keys. Instants are Unix microseconds (UTC); lengths are whole
-- millimetres (the contract's precision); enums are the contract's numbers.

CREATE TABLE wounds (
    wound_id                    TEXT PRIMARY KEY,
    org_id                      TEXT NOT NULL,
    patient_pseudonym           TEXT NOT NULL,
    body_region                 INTEGER NOT NULL,
    laterality                  INTEGER NOT NULL,
    body_site_description       TEXT NOT NULL,
    snomed_ct_code              TEXT NOT NULL,
    aetiology                   INTEGER NOT NULL,
    pressure_ulcer_stage        INTEGER NOT NULL,
    aetiology_details           TEXT NOT NULL,
    onset_date                  TEXT NOT NULL,      -- YYYY-MM-DD or empty
    interval_days               INTEGER NOT NULL,
    referring_doctor            TEXT NOT NULL,
    status                      TEXT NOT NULL,      -- open, closed
    closure_reason              INTEGER,
    closure_comment             TEXT,
    closed_by_json              TEXT,
    closed_at_us                INTEGER,
    episode                     INTEGER NOT NULL,
    episode_started_at_us       INTEGER NOT NULL,
    baseline_assessment_id      TEXT,
    last_assessment_id          TEXT,
    last_assessed_at_us         INTEGER,
    next_due_at_us              INTEGER,             -- NULL when closed
    latest_open_alert_at_us     INTEGER,             -- newest open alert, for the doctor's list
    registered_at_us            INTEGER NOT NULL,
    registered_by_json          TEXT NOT NULL,
    updated_at_us               INTEGER NOT NULL,
    version                     INTEGER NOT NULL
);
CREATE INDEX wounds_by_doctor ON wounds (referring_doctor, status);
CREATE INDEX wounds_by_org ON wounds (org_id, status);
CREATE INDEX wounds_due ON wounds (status, next_due_at_us);

CREATE TABLE care_team (
    wound_id        TEXT NOT NULL REFERENCES wounds (wound_id),
    nurse_subject   TEXT NOT NULL,
    PRIMARY KEY (wound_id, nurse_subject)
);
CREATE INDEX care_team_by_nurse ON care_team (nurse_subject);

CREATE TABLE episodes (
    wound_id        TEXT NOT NULL REFERENCES wounds (wound_id),
    episode         INTEGER NOT NULL,
    started_at_us   INTEGER NOT NULL,
    started_by_json TEXT NOT NULL,
    comment         TEXT NOT NULL,
    PRIMARY KEY (wound_id, episode)
);

-- Every version of every assessment; exactly one version per assessment has is_current = 1.
CREATE TABLE assessment_versions (
    assessment_id       TEXT NOT NULL,
    version             INTEGER NOT NULL,
    wound_id            TEXT NOT NULL REFERENCES wounds (wound_id),
    episode             INTEGER NOT NULL,
    is_current          INTEGER NOT NULL,
    assessed_at_us      INTEGER NOT NULL,
    length_mm           INTEGER NOT NULL,
    width_mm            INTEGER NOT NULL,
    depth_mm            INTEGER,
    tissue_type         INTEGER NOT NULL,
    exudate             INTEGER NOT NULL,
    pain_score          INTEGER,
    infection_signs     TEXT NOT NULL,      -- contract numbers, comma-separated
    notes               TEXT NOT NULL,
    recorded_at_us      INTEGER NOT NULL,
    recorded_by_json    TEXT NOT NULL,
    correction_reason   TEXT NOT NULL,
    PRIMARY KEY (assessment_id, version)
);
CREATE INDEX assessment_series ON assessment_versions (wound_id, is_current, assessed_at_us, assessment_id);

-- Photos of a wound (the image itself is in the shared image pipeline): pending until an
-- assessment references them, then attached from a version on.
CREATE TABLE wound_photos (
    image_id            TEXT PRIMARY KEY,
    wound_id            TEXT NOT NULL REFERENCES wounds (wound_id),
    assessment_id       TEXT,
    from_version        INTEGER,
    uploaded_by         TEXT NOT NULL,
    uploaded_at_us      INTEGER NOT NULL,
    pending_until_us    INTEGER
);
CREATE INDEX wound_photos_by_assessment ON wound_photos (assessment_id);

-- Alerts. dedupe_key names the cause and its occurrence (e.g. `area:<assessment id>`,
-- `overdue:<wound id>:<due at>`): the unique constraint is what raises each alert exactly once,
-- across corrections, concurrent requests and replicas.
CREATE TABLE alerts (
    alert_id                TEXT PRIMARY KEY,
    dedupe_key              TEXT NOT NULL UNIQUE,
    wound_id                TEXT NOT NULL REFERENCES wounds (wound_id),
    cause                   INTEGER NOT NULL,
    status                  TEXT NOT NULL,      -- open, acknowledged
    raised_at_us            INTEGER NOT NULL,
    recipient_doctor        TEXT NOT NULL,
    assessment_id           TEXT NOT NULL,
    compared_assessment_id  TEXT NOT NULL,
    -- Values in thousandths (integers: sqlx 0.8's Any driver mis-types NULL floats on PostgreSQL).
    previous_value_milli    INTEGER,
    current_value_milli     INTEGER,
    threshold_milli         INTEGER,
    due_at_us               INTEGER,
    summary                 TEXT NOT NULL,
    acknowledged_by_json    TEXT,
    acknowledged_at_us      INTEGER,
    acknowledgement_comment TEXT NOT NULL
);
CREATE INDEX alerts_by_wound ON alerts (wound_id, raised_at_us);
CREATE INDEX alerts_by_time ON alerts (raised_at_us, alert_id);
CREATE INDEX alerts_by_assessment ON alerts (assessment_id);

CREATE TABLE idempotency_keys (
    caller          TEXT NOT NULL,
    operation       TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_hash    TEXT NOT NULL,
    result_id       TEXT NOT NULL,
    created_at_us   INTEGER NOT NULL,
    PRIMARY KEY (caller, operation, idempotency_key)
);
