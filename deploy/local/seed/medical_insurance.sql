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

-- Enrolments of newly registered residents (govsync's sink), numbered apart from the
-- register's own; event_id names the household registration's change that caused it.
CREATE SEQUENCE IF NOT EXISTS insured_member_no;
ALTER TABLE insured_member ADD COLUMN IF NOT EXISTS event_id uuid;
ALTER TABLE insured_member ADD COLUMN IF NOT EXISTS enrolled_at timestamptz NOT NULL DEFAULT now();
