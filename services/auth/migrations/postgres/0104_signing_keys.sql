-- The ring of the access tokens' signing keys, shared by every replica of the service.
-- One key per generation: replicas rotating at the same moment insert the same generation and
-- only the first one lands.
CREATE TABLE auth_signing_keys (
    generation      BIGINT PRIMARY KEY,
    kid             TEXT NOT NULL UNIQUE,
    sealed_pkcs8    TEXT NOT NULL,      -- PKCS#8 (DER, base64) sealed with [sign_in] key_file
    signs_from_s    BIGINT NOT NULL       -- Unix seconds from which it signs
);
