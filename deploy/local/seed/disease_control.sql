-- Disease control (疾控): vaccination cards (预防接种证) opened from birth certificates,
-- with the first doses due. Idempotent: applied on every `prepare`.

CREATE TABLE IF NOT EXISTS vaccination_card (
    certificate_no text        PRIMARY KEY,
    child_name     text,
    born_at        timestamptz NOT NULL,
    hospital       text,
    event_id       uuid,
    opened_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS vaccination_due (
    certificate_no text    NOT NULL REFERENCES vaccination_card (certificate_no),
    vaccine        text    NOT NULL,
    dose           integer NOT NULL,
    due_on         date    NOT NULL,
    PRIMARY KEY (certificate_no, vaccine, dose)
);
