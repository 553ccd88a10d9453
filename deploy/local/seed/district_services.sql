-- A district government service centre (区县政务服务): keeps its own copy of the companies
-- it serves, with the contact phone collected at its counter. Only the phone is its to
-- give; its names and addresses are checked against market regulation's.
-- Idempotent: applied on every `prepare`, so every statement must be safe to repeat.

CREATE TABLE IF NOT EXISTS enterprise_contact (
    id            bigserial   PRIMARY KEY,
    credit_code   char(18)    NOT NULL UNIQUE,
    company_name  text        NOT NULL,
    address       text,
    contact_phone varchar(20),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE enterprise_contact REPLICA IDENTITY FULL;
