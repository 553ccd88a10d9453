-- Human resources & social security (人社): a subscriber to enterprise registration and
-- to people, and a (non-authoritative) source of people from its legacy register.
-- The employer account must close when the company is deregistered.
-- Idempotent: applied on every `prepare`, so every statement must be safe to repeat.

CREATE TABLE IF NOT EXISTS employer_account (
    account_no text PRIMARY KEY,
    uscc       char(18) NOT NULL UNIQUE,
    name       text     NOT NULL,
    status     text     NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    opened_on  date     NOT NULL,
    closed_on  date
);

-- The legacy social-insurance register (养老保险): people keyed by the 15-digit ID numbers
-- issued before 1999; govsync converts them to 18 digits (GB 11643) to match people.
CREATE TABLE IF NOT EXISTS insured_person (
    person_no          text        PRIMARY KEY,
    id_no              varchar(15) NOT NULL UNIQUE,
    name               text        NOT NULL,
    birth_date         date        NOT NULL,
    pension_status     text        NOT NULL
                                   CHECK (pension_status IN ('contributing', 'receiving', 'stopped')),
    pension_stopped_on date,
    stop_reason        text,
    updated_at         timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE insured_person REPLICA IDENTITY FULL;

-- Employer accounts opened from a company's registration (参保登记) are numbered here;
-- the prefix SBN never collides with the register's older SB + 10 digits.
CREATE SEQUENCE IF NOT EXISTS employer_account_no;

-- 社保卡申领: a card applied for on a resident's registration (govsync's sink).
CREATE TABLE IF NOT EXISTS card_application (
    id_no      char(18)    PRIMARY KEY,
    status     text        NOT NULL CHECK (status IN ('applied', 'issued')),
    applied_on date        NOT NULL,
    event_id   uuid,
    created_at timestamptz NOT NULL DEFAULT now()
);
