-- Tele-expertise: requests, their events and messages, idempotency keys.
-- Instants are Unix microseconds (UTC). Content is JSON (the requester's whole text); the columns
-- beside it are what queries filter and sort on.

CREATE TABLE expertise_requests (
    request_id          TEXT PRIMARY KEY,
    status              TEXT NOT NULL,      -- draft, submitted, claimed, answered, closed, withdrawn, declined
    requester_subject   TEXT NOT NULL,
    requester_org       TEXT NOT NULL,
    requester_json      TEXT NOT NULL,
    target_org          TEXT NOT NULL,      -- empty while a draft does not name it
    specialty           TEXT NOT NULL,
    patient_pseudonym   TEXT NOT NULL,
    urgency             BIGINT NOT NULL,    -- contract number
    content_json        TEXT NOT NULL,
    created_at_us       BIGINT NOT NULL,
    updated_at_us       BIGINT NOT NULL,
    submitted_at_us     BIGINT,
    due_at_us           BIGINT,
    overdue_announced   BIGINT NOT NULL,    -- 1 once BECAME_OVERDUE was published (by one replica)
    claimed_by_subject  TEXT,
    claimed_by_json     TEXT,
    claimed_at_us       BIGINT,
    answer_json         TEXT,
    answered_at_us      BIGINT,
    decline_json        TEXT,
    declined_at_us      BIGINT,
    withdrawal_json     TEXT,
    withdrawn_at_us     BIGINT,
    closed_at_us        BIGINT,
    closed_by_json      TEXT,
    message_count       BIGINT NOT NULL,
    version             BIGINT NOT NULL
);
CREATE INDEX expertise_requests_inbox ON expertise_requests (target_org, specialty, status, due_at_us);
CREATE INDEX expertise_requests_by_requester ON expertise_requests (requester_org, created_at_us);
CREATE INDEX expertise_requests_answered ON expertise_requests (answered_at_us);
CREATE INDEX expertise_requests_submitted ON expertise_requests (submitted_at_us);

-- What happened to each request, in order; watchers read the event they are told about.
CREATE TABLE expertise_events (
    event_id        TEXT PRIMARY KEY,
    request_id      TEXT NOT NULL REFERENCES expertise_requests (request_id),
    kind            BIGINT NOT NULL,        -- ExpertiseEventKind number
    occurred_at_us  BIGINT NOT NULL,
    actor_json      TEXT NOT NULL,
    message_id      TEXT
);
CREATE INDEX expertise_events_by_request ON expertise_events (request_id, occurred_at_us);

-- Messages; the sequence is given under the request's row lock, so it has no gaps.
CREATE TABLE expertise_messages (
    message_id      TEXT PRIMARY KEY,
    request_id      TEXT NOT NULL REFERENCES expertise_requests (request_id),
    sequence        BIGINT NOT NULL,
    author_json     TEXT NOT NULL,
    text            TEXT NOT NULL,
    posted_at_us    BIGINT NOT NULL,
    UNIQUE (request_id, sequence)
);

CREATE TABLE expertise_idempotency_keys (
    caller          TEXT NOT NULL,
    operation       TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_hash    TEXT NOT NULL,
    result_id       TEXT NOT NULL,
    created_at_us   BIGINT NOT NULL,
    PRIMARY KEY (caller, operation, idempotency_key)
);

-- Billing rules are data with validity dates (YYYY-MM-DD, both included; valid_until NULL while
-- in force), read by the activity report. A new tariff is a new row, never an edited one.
CREATE TABLE billing_tariffs (
    tariff_id       TEXT PRIMARY KEY,
    act_code        TEXT NOT NULL,          -- RQD, TE2
    amount_cents    BIGINT NOT NULL,
    valid_from      TEXT NOT NULL,
    valid_until     TEXT,
    source          TEXT NOT NULL
);

-- Conditions of billing: annual_limit (value = billable acts per patient per practitioner per
-- calendar year), answer_deadline_days (routine requests answered later are not billable),
-- same_site (value 1: not billable when requester and expert work at one site).
CREATE TABLE billing_conditions (
    rule_id         TEXT PRIMARY KEY,
    act_code        TEXT NOT NULL,
    kind            TEXT NOT NULL,
    value           BIGINT NOT NULL,
    valid_from      TEXT NOT NULL,
    valid_until     TEXT,
    source          TEXT NOT NULL
);

INSERT INTO billing_tariffs (tariff_id, act_code, amount_cents, valid_from, valid_until, source) VALUES
    ('RQD-2022-04', 'RQD', 1000, '2022-04-01', NULL, 'Convention médicale, avenant 9: demande de télé-expertise, 10 €'),
    ('TE2-2022-04', 'TE2', 2000, '2022-04-01', '2025-12-31', 'Convention médicale, avenant 9: télé-expertise, 20 €'),
    ('TE2-2026-01', 'TE2', 2300, '2026-01-01', NULL, 'Convention médicale 2024: télé-expertise revalorisée à 23 € au 1er janvier 2026');

INSERT INTO billing_conditions (rule_id, act_code, kind, value, valid_from, valid_until, source) VALUES
    ('TE2-LIMIT-2022-04', 'TE2', 'annual_limit', 4, '2022-04-01', NULL, 'Convention médicale, avenant 9: 4 actes par an, par médecin requis, pour un même patient'),
    ('TE2-DEADLINE-2022-04', 'TE2', 'answer_deadline_days', 7, '2022-04-01', NULL, 'Réponse sous 7 jours aux demandes non urgentes'),
    ('TE2-SAME-SITE-2022-04', 'TE2', 'same_site', 1, '2022-04-01', NULL, 'Pas de télé-expertise entre praticiens d''un même site'),
    ('RQD-SAME-SITE-2022-04', 'RQD', 'same_site', 1, '2022-04-01', NULL, 'Pas de télé-expertise entre praticiens d''un même site');
