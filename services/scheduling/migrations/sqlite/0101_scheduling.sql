-- Scheduling: availability, exceptions, holds, appointments and their history.
-- Instants are Unix microseconds (UTC); local dates and times are ISO text.

CREATE TABLE availability (
    practitioner    TEXT PRIMARY KEY,
    org_id          TEXT NOT NULL,
    time_zone       TEXT NOT NULL,
    ranges_json     TEXT NOT NULL,      -- [{"day":1,"start":"09:00","end":"12:00"}, ...]
    buffer_minutes  INTEGER NOT NULL,
    version         INTEGER NOT NULL,
    updated_at_us   INTEGER NOT NULL,
    updated_by      TEXT NOT NULL
);

CREATE TABLE availability_exceptions (
    exception_id    TEXT PRIMARY KEY,
    org_id          TEXT NOT NULL,
    practitioner    TEXT,               -- NULL for an org-wide closure
    kind            TEXT NOT NULL,      -- leave, closure, extra_hours
    start_date      TEXT NOT NULL,
    end_date        TEXT NOT NULL,
    start_local     TEXT,
    end_local       TEXT,
    time_zone       TEXT NOT NULL,
    note            TEXT NOT NULL,
    created_at_us   INTEGER NOT NULL,
    created_by      TEXT NOT NULL,
    removed_at_us   INTEGER
);
CREATE INDEX availability_exceptions_by_practitioner ON availability_exceptions (practitioner, start_date);
CREATE INDEX availability_exceptions_by_org ON availability_exceptions (org_id, start_date);

-- One row per practitioner, updated first in every transaction that books their time: the row
-- lock queues concurrent bookings of the same practitioner (across replicas), so the overlap
-- check that follows sees every committed booking. This is what prevents double booking.
CREATE TABLE practitioner_locks (
    practitioner    TEXT PRIMARY KEY,
    bookings        INTEGER NOT NULL
);

CREATE TABLE appointments (
    appointment_id      TEXT PRIMARY KEY,
    org_id              TEXT NOT NULL,
    status              TEXT NOT NULL,
    start_us            INTEGER NOT NULL,
    end_us              INTEGER NOT NULL,
    time_zone           TEXT NOT NULL,
    doctor_subject      TEXT NOT NULL,
    nurse_subject       TEXT,
    patient_pseudonym   TEXT NOT NULL,
    patient_subject     TEXT,
    reason              TEXT NOT NULL,
    room_id             TEXT,
    reschedule_count    INTEGER NOT NULL,
    cancelled_by_json   TEXT,
    cancelled_at_us     INTEGER,
    cancel_reason       INTEGER,
    cancel_comment      TEXT,
    arrived_at_us       INTEGER,
    started_at_us       INTEGER,
    finished_at_us      INTEGER,
    no_show_at_us       INTEGER,
    created_at_us       INTEGER NOT NULL,
    created_by_json     TEXT NOT NULL,
    updated_at_us       INTEGER NOT NULL,
    version             INTEGER NOT NULL
);
CREATE INDEX appointments_by_doctor ON appointments (doctor_subject, start_us);
CREATE INDEX appointments_by_nurse ON appointments (nurse_subject, start_us);
CREATE INDEX appointments_by_patient ON appointments (patient_pseudonym, start_us);
CREATE INDEX appointments_by_org ON appointments (org_id, start_us);

-- The time each practitioner is busy (doctor and nurse of active appointments, and holds).
CREATE TABLE busy_time (
    practitioner    TEXT NOT NULL,
    owner_id        TEXT NOT NULL,      -- appointment or hold id
    is_hold         INTEGER NOT NULL,
    start_us        INTEGER NOT NULL,
    end_us          INTEGER NOT NULL,
    expires_at_us   INTEGER,            -- holds only
    PRIMARY KEY (practitioner, owner_id)
);
CREATE INDEX busy_time_by_practitioner ON busy_time (practitioner, start_us);

CREATE TABLE holds (
    hold_id         TEXT PRIMARY KEY,
    org_id          TEXT NOT NULL,
    doctor_subject  TEXT NOT NULL,
    nurse_subject   TEXT,
    start_us        INTEGER NOT NULL,
    end_us          INTEGER NOT NULL,
    expires_at_us   INTEGER NOT NULL,
    created_by_json TEXT NOT NULL
);

CREATE TABLE appointment_events (
    event_id            TEXT PRIMARY KEY,
    appointment_id      TEXT NOT NULL,
    sequence            INTEGER NOT NULL,
    kind                INTEGER NOT NULL,
    occurred_at_us      INTEGER NOT NULL,
    actor_json          TEXT NOT NULL,
    previous_status     INTEGER NOT NULL,
    new_status          INTEGER NOT NULL,
    previous_start_us   INTEGER,
    previous_end_us     INTEGER,
    new_start_us        INTEGER,
    new_end_us          INTEGER,
    participant_subject TEXT NOT NULL,
    participant_role    INTEGER NOT NULL,
    comment             TEXT NOT NULL,
    UNIQUE (appointment_id, sequence)
);

CREATE TABLE idempotency_keys (
    caller          TEXT NOT NULL,
    operation       TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_hash    TEXT NOT NULL,
    result_id       TEXT NOT NULL,
    created_at_us   INTEGER NOT NULL,
    PRIMARY KEY (caller, operation, idempotency_key)
);
