-- Education (教育局): pupils expected from births (govsync's sink), and the places each
-- school year needs. Idempotent: applied on every `prepare`.

CREATE TABLE IF NOT EXISTS expected_pupil (
    certificate_no text    PRIMARY KEY,
    entry_year     integer NOT NULL,
    sex            text,
    event_id       uuid
);

CREATE OR REPLACE VIEW school_place_forecast AS
    SELECT entry_year, count(*) AS pupils FROM expected_pupil GROUP BY entry_year;
