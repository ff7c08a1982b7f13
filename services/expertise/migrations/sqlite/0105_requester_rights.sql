-- Who may request a tele-expertise, and which act their request is billed as, by date: since the
-- décret n° 2021-707 of 3 June 2021 (Code de la santé publique R6316-1), any health professional
-- may request one; the request is billable (act RQD) by doctors since avenant 9 of the national
-- medical convention (NGAP from 1 April 2022) and by nurses since avenant 9 of the national
-- nurses' convention (from 23 March 2023: 10 €, 4 requests per patient per year per nurse).
CREATE TABLE requester_rights (
    right_id        TEXT PRIMARY KEY,
    profession      TEXT NOT NULL,          -- doctor, nurse
    act_code        TEXT NOT NULL,          -- the act the request is billed as
    valid_from      TEXT NOT NULL,          -- YYYY-MM-DD, Europe/Paris
    valid_until     TEXT,
    source          TEXT NOT NULL
);

INSERT INTO requester_rights (right_id, profession, act_code, valid_from, valid_until, source) VALUES
    ('DOCTOR-RQD-2022-04', 'doctor', 'RQD', '2022-04-01', NULL, 'Convention médicale, avenant 9 (décision UNCAM du 13 janvier 2022): demande de télé-expertise du médecin requérant, 10 €'),
    ('NURSE-RQD-2023-03', 'nurse', 'RQD', '2023-03-23', NULL, 'Convention nationale des infirmiers, avenant 9: demande de télé-expertise de l''infirmier requérant, 10 €, 4 par patient et par an');
