-- Health (卫生健康委员会): birth certificates (出生医学证明), in MariaDB.
-- Idempotent: applied on every `prepare`, so every statement must be safe to repeat.
-- born_at is the wall-clock moment of birth (DATETIME: no time zone); issued_at is an
-- instant (TIMESTAMP, shown in the server's time zone, China Standard Time).

CREATE TABLE IF NOT EXISTS birth_certificate (
    id             BIGINT       AUTO_INCREMENT PRIMARY KEY,
    certificate_no VARCHAR(20)  NOT NULL UNIQUE,
    child_name     VARCHAR(64),
    sex            CHAR(1),
    born_at        DATETIME(3)  NOT NULL,
    mother_id      CHAR(18),
    father_id      CHAR(18),
    hospital       VARCHAR(128),
    issued_at      TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
