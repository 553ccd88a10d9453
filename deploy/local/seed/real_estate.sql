-- Real-estate registration (不动产登记): the authoritative source of property titles and
-- of the transfers it decides. Idempotent: applied on every `prepare`.

CREATE TABLE IF NOT EXISTS property_title (
    id             bigserial     PRIMARY KEY,
    title_no       text          NOT NULL UNIQUE,   -- 京(2020)海淀区不动产权第0001234号
    address        text          NOT NULL,
    area_m2        numeric(10, 2) NOT NULL,
    owner_id_no    char(18)      NOT NULL,
    owner_name     text          NOT NULL,
    version        integer       NOT NULL DEFAULT 1,
    -- the registry's clock (timestamp without time zone: a Beijing wall-clock reading)
    transferred_at timestamp(6),
    updated_at     timestamptz   NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS transfer_application (
    id               bigserial     PRIMARY KEY,
    application_no   text          NOT NULL UNIQUE,
    title_no         text          NOT NULL REFERENCES property_title (title_no),
    seller_id_no     char(18)      NOT NULL,
    buyer_id_no      char(18)      NOT NULL,
    price            numeric(14, 2) NOT NULL,
    expected_version integer       NOT NULL,
    outcome          char(1)       NOT NULL CHECK (outcome IN ('R', 'X')),  -- registered, refused
    reason           text,
    decided_at       timestamp(6)  NOT NULL DEFAULT (now() AT TIME ZONE 'Asia/Shanghai')
);

ALTER TABLE property_title REPLICA IDENTITY FULL;
ALTER TABLE transfer_application REPLICA IDENTITY FULL;

-- The owner's rule: a transfer is registered only against the title's current version,
-- in one transaction with the title's next version; against any other it is refused, and
-- the refusal is recorded (and so captured, delivered and traced) with its reason.
CREATE OR REPLACE FUNCTION transfer_title(
    p_application_no text,
    p_title_no text,
    p_expected_version integer,
    p_buyer_id_no char(18),
    p_buyer_name text,
    p_price numeric
) RETURNS char(1) LANGUAGE plpgsql AS $$
DECLARE
    current property_title%ROWTYPE;
BEGIN
    SELECT * INTO current FROM property_title WHERE title_no = p_title_no FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no property title %', p_title_no;
    END IF;
    IF current.version <> p_expected_version THEN
        INSERT INTO transfer_application (application_no, title_no, seller_id_no, buyer_id_no,
                                          price, expected_version, outcome, reason)
        VALUES (p_application_no, p_title_no, current.owner_id_no, p_buyer_id_no, p_price,
                p_expected_version, 'X',
                format('title %s is at version %s; this transfer was made against version %s',
                       p_title_no, current.version, p_expected_version));
        RETURN 'X';
    END IF;
    UPDATE property_title
       SET owner_id_no = p_buyer_id_no, owner_name = p_buyer_name, version = version + 1,
           transferred_at = now() AT TIME ZONE 'Asia/Shanghai', updated_at = now()
     WHERE id = current.id;
    INSERT INTO transfer_application (application_no, title_no, seller_id_no, buyer_id_no,
                                      price, expected_version, outcome)
    VALUES (p_application_no, p_title_no, current.owner_id_no, p_buyer_id_no, p_price,
            p_expected_version, 'R');
    RETURN 'R';
END
$$;
