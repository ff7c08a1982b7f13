-- Video signalling: rooms, their participants, live connections (across replicas), the room
-- log, technical incidents, and oversized relayed messages in transit.
-- Instants are Unix microseconds (UTC).

CREATE TABLE rooms (
    room_id             TEXT PRIMARY KEY,
    appointment_id      TEXT NOT NULL UNIQUE,
    org_id              TEXT NOT NULL,
    scheduled_start_us  BIGINT NOT NULL,
    scheduled_end_us    BIGINT NOT NULL,
    opens_at_us         BIGINT NOT NULL,
    closes_at_us        BIGINT NOT NULL,
    created_at_us       BIGINT NOT NULL,
    updated_at_us       BIGINT NOT NULL,
    closed_at_us        BIGINT,
    close_reason        BIGINT
);
CREATE INDEX rooms_open_by_close ON rooms (closes_at_us) WHERE closed_at_us IS NULL;

-- Who a room admits (by verified subject), with the participant id stable across reconnections.
CREATE TABLE room_participants (
    room_id         TEXT NOT NULL REFERENCES rooms (room_id),
    subject         TEXT NOT NULL,
    participant_id  TEXT NOT NULL UNIQUE,
    role            BIGINT NOT NULL,
    PRIMARY KEY (room_id, subject)
);

-- The current stream of each connected participant, whichever replica holds it. A replica
-- refreshes last_seen_at_us of its streams periodically, so the streams of a replica that died
-- stop counting as connected.
CREATE TABLE connections (
    room_id          TEXT NOT NULL REFERENCES rooms (room_id),
    participant_id   TEXT NOT NULL,
    connection_id    TEXT NOT NULL UNIQUE,
    instance_id      TEXT NOT NULL,
    client_platform  TEXT NOT NULL,
    joined_at_us     BIGINT NOT NULL,
    last_seen_at_us  BIGINT NOT NULL,
    PRIMARY KEY (room_id, participant_id)
);
CREATE INDEX connections_by_instance ON connections (instance_id);

-- Joins, leaves (with their reason), drops, replacements and closing, in order.
CREATE TABLE room_log (
    entry_id        TEXT PRIMARY KEY,
    room_id         TEXT NOT NULL REFERENCES rooms (room_id),
    at_us           BIGINT NOT NULL,
    kind            TEXT NOT NULL,
    participant_id  TEXT NOT NULL,
    connection_id   TEXT NOT NULL,
    detail          TEXT NOT NULL
);
CREATE INDEX room_log_by_room ON room_log (room_id, at_us);

CREATE TABLE incidents (
    incident_id          TEXT PRIMARY KEY,
    appointment_id       TEXT NOT NULL,
    room_id              TEXT NOT NULL REFERENCES rooms (room_id),
    participant_subject  TEXT NOT NULL,
    participant_role     BIGINT NOT NULL,
    source               BIGINT NOT NULL,
    kind                 BIGINT NOT NULL,
    occurred_at_us       BIGINT NOT NULL,
    recorded_at_us       BIGINT NOT NULL,
    duration_seconds     BIGINT NOT NULL,
    description          TEXT NOT NULL,
    network_type         BIGINT NOT NULL,
    client_platform      TEXT NOT NULL,
    client_incident_id   TEXT
);
-- A report retried (or sent both in the stream and by RPC) is recorded once.
CREATE UNIQUE INDEX incidents_client_id ON incidents (appointment_id, participant_subject, client_incident_id);
CREATE INDEX incidents_by_appointment ON incidents (appointment_id, occurred_at_us, incident_id);

-- Relayed messages too large for one event-bus notification, until the replica holding the
-- addressee picks them up.
CREATE TABLE relay_spill (
    spill_id       TEXT PRIMARY KEY,
    body           TEXT NOT NULL,
    created_at_us  BIGINT NOT NULL
);
