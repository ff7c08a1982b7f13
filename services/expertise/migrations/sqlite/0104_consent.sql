-- The patient's consent a request was submitted on (the patient register's consent id); NULL
-- for drafts and for requests submitted before consents were checked.
ALTER TABLE expertise_requests ADD COLUMN consent_id TEXT;
