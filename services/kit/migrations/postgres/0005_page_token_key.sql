-- The key that signs this service's page tokens (`telehealth_kit::paging`): one row, created
-- by the first replica that needs it, read by all (64 hex characters = 32 bytes).
CREATE TABLE page_token_key (
    id      INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    key_hex TEXT    NOT NULL
);
