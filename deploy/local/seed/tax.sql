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
