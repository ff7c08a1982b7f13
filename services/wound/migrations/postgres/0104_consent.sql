-- The patient's consent a wound follow-up was opened on (the patient register's consent id);
-- NULL for follow-ups opened before consents were checked.
ALTER TABLE wounds ADD COLUMN consent_id TEXT;
