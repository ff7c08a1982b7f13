-- Organisations as their administrators record them: name, kind, FINESS number.
CREATE TABLE organisations (
    org_id          TEXT PRIMARY KEY,
    display_name    TEXT NOT NULL,
    kind            TEXT NOT NULL,              -- health_centre, hospital
    finess          TEXT NOT NULL,
    updated_us      INTEGER NOT NULL,
    updated_by      TEXT NOT NULL,
    version         INTEGER NOT NULL
);
CREATE UNIQUE INDEX organisations_by_finess ON organisations (finess);
