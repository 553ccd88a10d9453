-- Public security (公安): household registration (户籍), the authoritative source of people.
-- Idempotent: applied on every `prepare`, so every statement must be safe to repeat.

CREATE TABLE IF NOT EXISTS hukou_status_code (
    code  char(1) PRIMARY KEY,
    label text    NOT NULL
);

INSERT INTO hukou_status_code (code, label) VALUES
    ('1', '正常'),
    ('2', '死亡注销'),
    ('3', '迁出注销')
ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS household_registration (
    id          bigserial   PRIMARY KEY,
    id_no       char(18)    NOT NULL UNIQUE,
    full_name   text        NOT NULL,
    birth_date  date        NOT NULL,
    death_date  date,
    domicile    text        NOT NULL,
    hukou_status char(1)    NOT NULL DEFAULT '1' REFERENCES hukou_status_code (code),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Debezium needs the full before-image to compute which fields changed.
ALTER TABLE household_registration REPLICA IDENTITY FULL;

-- 出生登记: a newborn registered from a birth certificate (govsync's public-security sink)
-- names it, so one certificate never registers two people. Added after the first release.
ALTER TABLE household_registration ADD COLUMN IF NOT EXISTS birth_certificate_no text UNIQUE;

-- When the registration was made, on the office's clock (timestamp without time zone:
-- a Beijing wall-clock reading, which govsync turns into UTC).
ALTER TABLE household_registration ADD COLUMN IF NOT EXISTS registered_at timestamp(6)
    NOT NULL DEFAULT (now() AT TIME ZONE 'Asia/Shanghai');

-- Titles held by residents (合法稳定住所 for 落户), kept at the title's version.
CREATE TABLE IF NOT EXISTS residence_property (
    title_no   text     PRIMARY KEY,
    owner_id   char(18) NOT NULL,
    owner_name text,
    address    text,
    version    integer  NOT NULL
);
