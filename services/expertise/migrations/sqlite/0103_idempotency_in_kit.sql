-- Idempotency keys move to the kit's table (kit migration 0004, `telehealth_kit::idempotency`),
-- shared by every service and purged after `idempotency.retention_hours`. The keys recorded so
-- far keep answering retries; the per-caller lock rows (empty key) are not copied: the kit's
-- `idempotency::lock` creates them again when needed.
INSERT INTO idempotency_records (subject, operation, idempotency_key, request_hash, result_id, created_at_us)
SELECT caller, operation, idempotency_key, request_hash, result_id, created_at_us
FROM expertise_idempotency_keys WHERE idempotency_key <> '';
DROP TABLE expertise_idempotency_keys;
