-- Human resources & social security (人社): a subscriber to enterprise registration.
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
