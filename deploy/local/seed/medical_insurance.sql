-- Medical insurance (医保): a subscriber to people. A member's insurance relationship
-- ends when public security records the member's death.
-- Idempotent: applied on every `prepare`, so every statement must be safe to repeat.

CREATE TABLE IF NOT EXISTS insured_member (
    member_no        text     PRIMARY KEY,
    id_no            char(18) NOT NULL UNIQUE,
    name             text     NOT NULL,
    status           text     NOT NULL DEFAULT 'active'
                              CHECK (status IN ('active', 'terminated')),
    enrolled_on      date     NOT NULL,
    terminated_on    date,
    terminate_reason text
);
