-- A member's RPPS number (Luhn key checked) and profession (physician, nurse, other).
ALTER TABLE members ADD COLUMN rpps TEXT;
ALTER TABLE members ADD COLUMN profession TEXT;
-- One RPPS number per person in an organisation.
CREATE UNIQUE INDEX members_one_rpps_per_org ON members (org_id, rpps);
