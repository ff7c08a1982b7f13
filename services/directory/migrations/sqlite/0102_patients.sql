-- The patient register: patients, their identity-status history, shares and consents.
-- Every column named `*_sealed` holds a value sealed by the kit's `sealed` module (AES-256-GCM,
-- bound to its field and record): no plaintext identity trait, INS, contact or address is ever
-- stored. `*_digest` columns are keyed blind indexes (HMAC-SHA256) for exact-match search.
-- Instants are Unix microseconds (UTC).

CREATE TABLE patients (
    id                      TEXT PRIMARY KEY,
    org_id                  TEXT NOT NULL,
    merged_into             TEXT,               -- set: this id is an alias of that record
    status                  TEXT NOT NULL,      -- provisional, recovered, validated, qualified
    birth_name_sealed       TEXT NOT NULL,
    first_names_sealed      TEXT NOT NULL,
    used_first_name_sealed  TEXT NOT NULL,
    used_name_sealed        TEXT NOT NULL,
    sex_sealed              TEXT NOT NULL,
    birth_date_sealed       TEXT NOT NULL,
    birth_place_sealed      TEXT NOT NULL,
    ins_sealed              TEXT,
    contact_sealed          TEXT NOT NULL,
    address_sealed          TEXT,
    gp_sealed               TEXT,
    birth_date_digest       TEXT NOT NULL,
    ins_digest              TEXT,
    care_team               TEXT NOT NULL,      -- JSON array of member subjects
    objects_to_sharing      INTEGER NOT NULL,   -- 0 or 1
    objection_note_sealed   TEXT,
    created_us              INTEGER NOT NULL,
    created_by              TEXT NOT NULL,
    updated_us              INTEGER NOT NULL,
    version                 INTEGER NOT NULL
);
CREATE INDEX patients_by_org ON patients (org_id);
CREATE INDEX patients_by_birth_date ON patients (birth_date_digest);
CREATE UNIQUE INDEX patients_one_ins_per_org ON patients (org_id, ins_digest);
CREATE INDEX patients_by_ins ON patients (ins_digest);
CREATE INDEX patients_by_merged_into ON patients (merged_into);

-- Blind indexes of the birth name and the used name, in their search form.
CREATE TABLE patient_names (
    digest      TEXT NOT NULL,
    patient_id  TEXT NOT NULL,
    kind        TEXT NOT NULL,                  -- birth_name, used_name
    PRIMARY KEY (digest, patient_id, kind)
);
CREATE INDEX patient_names_by_patient ON patient_names (patient_id);

CREATE TABLE patient_status_changes (
    patient_id  TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    from_status TEXT NOT NULL,
    to_status   TEXT NOT NULL,
    proof       TEXT NOT NULL,
    note_sealed TEXT NOT NULL,
    changed_by  TEXT NOT NULL,                  -- JSON actor
    changed_us  INTEGER NOT NULL,
    PRIMARY KEY (patient_id, seq)
);

-- Organisations a patient's care is shared with (a hospital answering a request).
CREATE TABLE patient_shares (
    patient_id  TEXT NOT NULL,
    org_id      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    since_us    INTEGER NOT NULL,
    PRIMARY KEY (patient_id, org_id, reason)
);
CREATE INDEX patient_shares_by_org ON patient_shares (org_id);

CREATE TABLE consents (
    id              TEXT PRIMARY KEY,
    patient_id      TEXT NOT NULL,
    org_id          TEXT NOT NULL,
    act             TEXT NOT NULL,              -- teleconsultation, tele_expertise, wound_monitoring, sharing
    target_org_id   TEXT NOT NULL,              -- for sharing; empty otherwise
    decision        TEXT NOT NULL,              -- given, refused
    method          TEXT NOT NULL,              -- oral, written, scanned_document
    document_ref    TEXT NOT NULL,
    note_sealed     TEXT NOT NULL,
    recorded_by     TEXT NOT NULL,              -- JSON actor
    recorded_us     INTEGER NOT NULL,
    withdrawn_us    INTEGER,
    withdrawn_by    TEXT                        -- JSON actor
);
CREATE INDEX consents_by_patient ON consents (patient_id, act);

-- One row per organisation, written first by every change of the register: changes of one
-- organisation's patients queue (PostgreSQL row lock, SQLite write lock), so that two
-- registrations of the same person cannot both miss each other in the duplicate check, and a
-- SQLite transaction never has to upgrade a read to a write.
CREATE TABLE patient_org_locks (
    org_id      TEXT PRIMARY KEY,
    touched_us  INTEGER NOT NULL
);
