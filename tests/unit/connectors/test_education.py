"""A child six by 31 August starts school that September; born later, a year after."""

from __future__ import annotations

from datetime import date

from connectors.sinks.education import entry_year


def test_the_school_year_cutoff_is_the_31st_of_august() -> None:
    assert entry_year(date(2026, 8, 31)) == 2032
    assert entry_year(date(2026, 9, 1)) == 2033
    assert entry_year(date(2026, 1, 1)) == 2032
