-- The patient's consent a teleconsultation was started on (the patient register's consent id);
-- NULL until started, and for teleconsultations started before consents were checked.
ALTER TABLE appointments ADD COLUMN consent_id TEXT;
