-- Market regulation (市场监管): the authoritative source of enterprise registration.
-- Idempotent: applied on every `prepare`, so every statement must be safe to repeat.

CREATE TABLE IF NOT EXISTS reg_status_code (
    code  char(1) PRIMARY KEY,
    label text    NOT NULL
);

INSERT INTO reg_status_code (code, label) VALUES
    ('1', '存续'),
    ('2', '停业'),
    ('3', '吊销'),
    ('4', '注销')
ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS enterprise (
    id             bigserial     PRIMARY KEY,
    credit_code    char(18)      NOT NULL UNIQUE,
    ent_name       text          NOT NULL,
    reg_status     char(1)       NOT NULL REFERENCES reg_status_code (code),
    rep_name       text          NOT NULL,
    rep_id_no      varchar(18)   NOT NULL,
    reg_capital    numeric(18, 2),
    address        text,
    established_on date          NOT NULL,
    updated_at     timestamptz   NOT NULL DEFAULT now()
);

-- Debezium needs the full before-image to compute which fields changed.
ALTER TABLE enterprise REPLICA IDENTITY FULL;
