-- Tax (税务): a subscriber to enterprise registration. Reminders must stop when the
-- company is deregistered at market regulation.
-- Idempotent: applied on every `prepare`, so every statement must be safe to repeat.

CREATE TABLE IF NOT EXISTS taxpayer (
    uscc            char(18)    PRIMARY KEY,
    name            text        NOT NULL,
    status          text        NOT NULL DEFAULT 'active'
                                CHECK (status IN ('active', 'suspended', 'revoked', 'deregistered')),
    tax_office      text        NOT NULL,
    registered_on   date        NOT NULL,
    deregistered_at timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS tax_reminder (
    id               bigserial   PRIMARY KEY,
    uscc             char(18)    NOT NULL REFERENCES taxpayer (uscc),
    tax_type         text        NOT NULL,
    period           text        NOT NULL,
    due_date         date        NOT NULL,
    state            text        NOT NULL DEFAULT 'pending'
                                 CHECK (state IN ('pending', 'sent', 'cancelled')),
    cancelled_reason text,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- What the bureau learns of a company at registration: its legal form and industry
-- (GB/T 4754 section), from which its tax types follow. Added after the first release,
-- hence ALTER ... IF NOT EXISTS.
ALTER TABLE taxpayer ADD COLUMN IF NOT EXISTS enterprise_type text;
ALTER TABLE taxpayer ADD COLUMN IF NOT EXISTS industry text;

-- 税种认定: the taxes a taxpayer must file, assigned when it registers. `basis` says which
-- rule assigned it (every business, its legal form, or its industry).
CREATE TABLE IF NOT EXISTS taxpayer_tax_type (
    uscc     char(18) NOT NULL REFERENCES taxpayer (uscc),
    tax_type text     NOT NULL,
    basis    text     NOT NULL,
    since    date     NOT NULL,
    event_id uuid,
    PRIMARY KEY (uscc, tax_type)
);

-- 3岁以下婴幼儿照护专项附加扣除, pre-filled for both parents from a birth certificate.
CREATE TABLE IF NOT EXISTS infant_care_deduction (
    parent_id      char(18) NOT NULL,
    certificate_no text     NOT NULL,
    monthly_amount integer  NOT NULL,
    since          date     NOT NULL,
    event_id       uuid,
    PRIMARY KEY (parent_id, certificate_no)
);

-- Property tax sources (房产税源), kept at the title's version, and the deed tax (契税)
-- assessed on each registered transfer.
CREATE TABLE IF NOT EXISTS property_register (
    title_no text          PRIMARY KEY,
    owner_id char(18)      NOT NULL,
    address  text,
    area_m2  numeric(10, 2),
    version  integer       NOT NULL
);

CREATE TABLE IF NOT EXISTS deed_tax (
    application_no text          PRIMARY KEY,
    title_no       text          NOT NULL,
    buyer_id       char(18)      NOT NULL,
    price          numeric(14, 2) NOT NULL,
    rate           numeric(5, 4) NOT NULL,
    amount         numeric(14, 2) NOT NULL,
    event_id       uuid
);
