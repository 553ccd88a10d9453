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

-- The legal form (1 有限责任公司, 2 股份有限公司, 3 合伙企业, 4 个人独资企业) and the
-- industry (GB/T 4754 section letter), from which the tax bureau's tax types follow.
-- Added after the first release, hence ALTER ... IF NOT EXISTS.
ALTER TABLE enterprise ADD COLUMN IF NOT EXISTS ent_type char(1) NOT NULL DEFAULT '1';
ALTER TABLE enterprise ADD COLUMN IF NOT EXISTS industry_code char(1) NOT NULL DEFAULT 'F';

-- Debezium needs the full before-image to compute which fields changed.
ALTER TABLE enterprise REPLICA IDENTITY FULL;
