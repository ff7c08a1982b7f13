-- The shared image pipeline (DESIGN §4 "Images"): upload sessions, their stored parts, and the
-- completed images. Created in every service's schema with the kit's migrations; only the
-- services that take images (expertise, wound) write to them. Instants are Unix microseconds.

-- One client-chosen upload session. A session is never visible as an image: only a completed
-- one gets a row in `images`. `state`: in_progress, completed, or discarded (refused or
-- expired; its bytes are being deleted and the row goes with them).
CREATE TABLE image_uploads (
    session_id      TEXT    PRIMARY KEY,
    owner_subject   TEXT    NOT NULL,          -- who may resume it and ask its status
    target_kind     TEXT    NOT NULL,          -- e.g. request, wound
    target_id       TEXT    NOT NULL,
    header_pb       BYTEA   NOT NULL,          -- the ImageUploadHeader (resume offset 0), protobuf
    total_size      BIGINT    NOT NULL,
    acknowledged    BIGINT    NOT NULL,          -- bytes durably stored, in parts
    state           TEXT    NOT NULL,
    image_id        TEXT,                      -- when completed
    created_at_us   BIGINT    NOT NULL,
    updated_at_us   BIGINT    NOT NULL,
    expires_at_us   BIGINT    NOT NULL           -- no progress until then: discarded
);
CREATE INDEX image_uploads_expiry ON image_uploads (state, expires_at_us);

-- The stored parts of a session, contiguous from offset 0. Each part is its own blob with a
-- unique key, so a stream that lost a race can never overwrite the winner's bytes.
CREATE TABLE image_upload_parts (
    session_id      TEXT    NOT NULL REFERENCES image_uploads (session_id) ON DELETE CASCADE,
    start_offset    BIGINT    NOT NULL,
    size            BIGINT    NOT NULL,
    blob_key        TEXT    NOT NULL,
    PRIMARY KEY (session_id, start_offset)
);

-- Completed images, attached to their target. `info_pb` is the ImageInfo returned to clients
-- (protobuf), so what was reported at upload is what every later read shows.
CREATE TABLE images (
    image_id        TEXT    PRIMARY KEY,
    session_id      TEXT    NOT NULL UNIQUE,
    target_kind     TEXT    NOT NULL,
    target_id       TEXT    NOT NULL,
    blob_key        TEXT    NOT NULL,
    size_bytes      BIGINT    NOT NULL,
    info_pb         BYTEA   NOT NULL,
    created_at_us   BIGINT    NOT NULL
);
CREATE INDEX images_target ON images (target_kind, target_id, created_at_us);

-- Blobs whose deletion is pending (a detached image, a discarded session's parts): deleted by
-- the sweeper, so a crash between the database change and the store call leaks nothing.
CREATE TABLE image_blob_garbage (
    blob_key        TEXT    PRIMARY KEY,
    since_us        BIGINT    NOT NULL
);
